"""The response envelope of API.md: `{"success", "data", "message"}` and lists.

Endpoints return `Envelope[XOut]` or `ListEnvelope[XOut]` and say so in their
return annotation, from which FastAPI takes the documented response model: the
code and the contract are one thing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Generic, TypeVar, get_args

from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo

from mailfleet.kit.clock import isoformat

T = TypeVar("T")

# ISO 8601 UTC with milliseconds and Z, as API.md fixes for every timestamp.
Timestamp = Annotated[datetime, PlainSerializer(isoformat, return_type=str)]


class ApiModel(BaseModel):
    """Base of every native request and response model: camelCase on the wire.

    Requests reject unknown fields (`extra="forbid"`), so a typo is a 400 that
    names the field instead of a silently ignored setting.
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", from_attributes=True
    )


class ApiOut(BaseModel):
    """Base of native response models: camelCase out, read from ORM objects."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, from_attributes=True, extra="ignore"
    )


class Pagination(ApiOut):
    total: int
    limit: int
    skip: int
    has_more: bool


class Envelope(ApiOut, Generic[T]):
    success: bool = True
    data: T
    message: str | None = Field(default=None, exclude_if=lambda value: value is None)


class ListEnvelope(ApiOut, Generic[T]):
    success: bool = True
    data: list[T]
    pagination: Pagination


class CursorPagination(Pagination):
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the page after this one; null on the last page"
    )


class CursorListEnvelope(ApiOut, Generic[T]):
    """A list that can also be paged by keyset (`cursor`), for lists that grow large."""

    success: bool = True
    data: list[T]
    pagination: CursorPagination


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(examples=["NOT_FOUND"])
    message: str


class ErrorEnvelope(BaseModel):
    success: bool = False
    error: ErrorBody


def ok(data: T, message: str | None = None) -> Envelope[T]:
    return Envelope(data=data, message=message)


def renders_timestamp(field: FieldInfo) -> bool:
    """Whether `field` is a `Timestamp` (or `Timestamp | None`)."""
    return _renders_timestamp(field.metadata) or any(
        _renders_timestamp(getattr(arg, "__metadata__", ()))
        for arg in get_args(field.annotation)  # Timestamp | None
    )


def _renders_timestamp(metadata: Any) -> bool:
    return any(isinstance(meta, PlainSerializer) and meta.func is isoformat for meta in metadata)


def json_list_response(rows: list[str], pagination: BaseModel) -> Response:
    """A list envelope whose rows are JSON texts already (`kit.sqljson`), joined into
    the body as they are."""
    body = (
        '{"success":true,"data":['
        + ",".join(rows)
        + '],"pagination":'
        + pagination.model_dump_json(by_alias=True)
        + "}"
    )
    return Response(body.encode(), media_type="application/json")


# What each error status means on this API, with an example body for the docs.
ERROR_STATUSES: Final[dict[int, tuple[str, str, str]]] = {
    400: (
        "Invalid input: VALIDATION_ERROR with one entry per field in `details`",
        "VALIDATION_ERROR",
        "Invalid request: smtp.port: Input should be a valid integer",
    ),
    401: ("Missing, wrong or revoked credentials", "UNAUTHORIZED", "Invalid or revoked API key"),
    402: (
        "The wallet cannot pay for this; top it up first",
        "INSUFFICIENT_FUNDS",
        "The wallet holds 0.00 USD; this needs 10.00 USD",
    ),
    403: (
        "Not allowed in this workspace or for this role",
        "FORBIDDEN",
        "Viewers have read-only access to this workspace",
    ),
    404: ("Not found (or not in this workspace)", "NOT_FOUND", "Mailbox not found"),
    409: (
        "Conflicts with what exists (a duplicate, a resource in use, a setting this server lacks)",
        "CONFLICT",
        "Mailbox already exists",
    ),
    413: (
        "The body is larger than this server accepts",
        "PAYLOAD_TOO_LARGE",
        "The upload is larger than 10485760 bytes",
    ),
    415: (
        "The body is in a format this route does not take",
        "UNSUPPORTED_MEDIA_TYPE",
        "Send JSON, a CSV file or a text/csv body",
    ),
    429: (
        "Too many attempts: retry after Retry-After seconds",
        "RATE_LIMITED",
        "Too many attempts",
    ),
}


def errors(*statuses: int, model: type[BaseModel] = ErrorEnvelope) -> dict[int | str, Any]:
    """OpenAPI `responses` for the error statuses a route really gives.

    A 400 is added to every operation that takes input when the schema is built
    (kit/openapi.py), so routes list the others.
    """
    responses: dict[int | str, Any] = {}
    for status in statuses:
        description, code, message = ERROR_STATUSES[status]
        responses[status] = {"model": model, "description": description}
        if model is ErrorEnvelope:
            example = {"success": False, "error": {"code": code, "message": message}}
            responses[status]["content"] = {"application/json": {"example": example}}
    return responses


# Every route that needs a credential can answer these.
AUTH_ERRORS: Final = errors(401, 403)
# Every route acting in a workspace: a workspace the caller is not a member of is a 404.
WORKSPACE_ERRORS: Final = errors(401, 403, 404)


def example(body: dict[str, Any]) -> ConfigDict:
    """A request model's example body, as /docs shows it and clients copy it."""
    return ConfigDict(json_schema_extra={"examples": [body]})
