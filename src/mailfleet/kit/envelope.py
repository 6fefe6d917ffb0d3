"""The response envelope of API.md: `{"success", "data", "message"}` and lists."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

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


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: str = Field(examples=["NOT_FOUND"])
    message: str


class ErrorEnvelope(BaseModel):
    success: bool = False
    error: ErrorBody


def ok(data: Any, message: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": True, "data": data}
    if message is not None:
        body["message"] = message
    return body


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorEnvelope, "description": description}
    for status, description in (
        (400, "Invalid input (VALIDATION_ERROR with per-field details)"),
        (401, "Missing, wrong or revoked credentials"),
        (403, "Not allowed in this workspace or role"),
        (404, "Not found"),
    )
}
