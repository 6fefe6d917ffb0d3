"""The response envelope of API.md: `{"success", "data", "message"}` and lists.

Endpoints return `Envelope[XOut]` or `ListEnvelope[XOut]` and say so in their
return annotation, from which FastAPI takes the documented response model: the
code and the contract are one thing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields as dataclass_fields
from dataclasses import is_dataclass
from datetime import datetime
from operator import attrgetter
from typing import Annotated, Any, Final, Generic, TypeVar, get_args

import pydantic_core
from fastapi import Response
from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

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


class RowRenderer:
    """Rows the database gave, rendered straight to the wire as `model` renders
    them, for a large list page.

    Building 100 validated models and then serializing them cost a list page of
    mailboxes about 3 ms, more than its queries: a row read from typed columns
    needs no validating. A renderer reads each field of `model` from a `row_type`
    row (the attribute of the field's name, or what `sources` computes; a field the
    row lacks is its default), renders a `Timestamp` as the API does, and keys it
    by the field's wire name. The route still declares the model as its
    `response_model`, so the docs are the model's, and a test holds the renderer's
    output to the model's own dump. Flat models only: a field that is a model
    itself is refused when the renderer is built.
    """

    def __init__(
        self,
        model: type[BaseModel],
        row_type: type,
        sources: Mapping[str, Callable[[Any], Any]] | None = None,
    ) -> None:
        sources = dict(sources or {})
        attributes = (
            {f.name for f in dataclass_fields(row_type)}
            if is_dataclass(row_type)
            else {name for name in dir(row_type) if not name.startswith("_")}
        )
        names: list[str] = []
        self.wires: list[str] = []  # of the fields read as attributes, in order
        self.computed: list[tuple[str, Callable[[Any], Any]]] = []
        self.constants: dict[str, Any] = {}
        self.timestamps: list[str] = []
        # Fields left out when their value says so (Field(exclude_if=...)).
        self.optional: list[tuple[str, Callable[[Any], Any], Callable[[Any], bool]]] = []
        for name, field in model.model_fields.items():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                raise TypeError(f"{model.__name__}.{name} is a model: not a flat row")
            source = sources.pop(name, None)
            if field.exclude:
                continue
            wire = field.serialization_alias or field.alias or name
            if _renders_timestamp(field.metadata) or any(
                _renders_timestamp(getattr(arg, "__metadata__", ()))
                for arg in get_args(field.annotation)  # Timestamp | None
            ):
                if field.exclude_if is not None:
                    raise TypeError(f"{model.__name__}.{name}: a Timestamp left out by value")
                self.timestamps.append(wire)
            if field.exclude_if is not None:
                read = source or _attribute(name, field.get_default())
                self.optional.append((wire, read, field.exclude_if))
            elif source is not None:
                self.computed.append((wire, source))
            elif name in attributes:
                names.append(name)
                self.wires.append(wire)
            else:
                self.constants[wire] = field.get_default()
        if sources:
            raise TypeError(f"{model.__name__} has no field {', '.join(sources)}")
        # One C call reads every attribute of a row (as a tuple: two names or more).
        self.read = attrgetter(*names, *["__class__"] * max(0, 2 - len(names)))

    def __call__(self, row: Any) -> dict[str, Any]:
        rendered = dict(zip(self.wires, self.read(row), strict=False))
        for wire, source in self.computed:
            rendered[wire] = source(row)
        for wire in self.timestamps:
            rendered[wire] = isoformat(rendered[wire])
        rendered.update(self.constants)
        for wire, read, excluded in self.optional:
            value = read(row)
            if not excluded(value):
                rendered[wire] = value
        return rendered


def _renders_timestamp(metadata: Any) -> bool:
    return any(isinstance(meta, PlainSerializer) and meta.func is isoformat for meta in metadata)


def _attribute(name: str, default: Any) -> Callable[[Any], Any]:
    return lambda row: getattr(row, name, default)


def json_response(body: Any) -> Response:
    """`body` (plain JSON values, as a `RowRenderer` gives) as the response, without
    FastAPI validating it against the route's model again."""
    return Response(pydantic_core.to_json(body), media_type="application/json")


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
