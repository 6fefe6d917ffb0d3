"""Reading a bulk request body: bounded in size, as JSON, CSV or a multipart upload."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Final, Literal

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from mailfleet.bulk import formats
from mailfleet.bulk.formats import ParsedRow
from mailfleet.kit.errors import MailfleetError, ValidationFailed

_CSV_TYPES: Final = frozenset(
    {"text/csv", "application/csv", "text/plain", "application/vnd.ms-excel"}
)
_READ_SIZE: Final = 64 * 1024
# Far deeper than any request (a bulk row is three levels), far below Python's
# recursion limit.
MAX_JSON_DEPTH: Final = 32


class PayloadTooLarge(MailfleetError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(MailfleetError):
    status_code = 415
    code = "UNSUPPORTED_MEDIA_TYPE"


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The upload is larger than {limit} bytes (MAILFLEET_BULK_MAX_UPLOAD_BYTES); split it"
    )


async def _capped(request: Request, limit: int) -> AsyncGenerator[bytes, None]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    return b"".join([chunk async for chunk in _capped(request, limit)])


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_json(request: Request, limit: int) -> object:
    body = await read_body(request, limit)
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValidationFailed.invalid_json(exc.msg, exc.doc, exc.pos) from None
    except UnicodeDecodeError:
        raise ValidationFailed.for_field("body", "The request body is not valid JSON") from None
    except RecursionError:
        raise _too_deep() from None
    check_json_values(payload)
    return payload


def _too_deep() -> ValidationFailed:
    return ValidationFailed.for_field(
        "body", f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} deep"
    )


def check_json_values(payload: object) -> None:
    """Refuse what json.loads accepts but nothing after it can take: nesting deeper
    than any request needs (code that walks it recursively would hit Python's
    recursion limit) and lone UTF-16 surrogates ("\\ud800"), which no database
    encoding can store. Walked with a stack, so it cannot recurse too deep itself.
    """
    stack: list[tuple[object, tuple[str, ...]]] = [(payload, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_JSON_DEPTH:
            raise _too_deep()
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, path)
                stack.append((item, (*path, key)))
        elif isinstance(value, list):
            stack.extend((item, (*path, str(index))) for index, item in enumerate(value))


def _check_text(text: str, path: tuple[str, ...]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationFailed.for_field(
            ".".join(path) or "body", "contains a lone UTF-16 surrogate, which is not Unicode text"
        ) from None


async def _uploaded_file(request: Request, limit: int) -> bytes:
    parser = MultiPartParser(
        request.headers, _capped(request, limit), max_files=1, max_fields=20, max_part_size=limit
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise ValidationFailed.for_field(
            "file", f"The upload cannot be read: {exc.message}"
        ) from None
    try:
        value = form.get("file")
        if isinstance(value, UploadFile):
            return await value.read()
        if isinstance(value, str):
            return value.encode()
        raise ValidationFailed.for_field(
            "file", "Send the CSV as the multipart form field named 'file'"
        )
    finally:
        await form.close()


async def read_bulk_rows(
    request: Request, *, max_bytes: int, max_rows: int
) -> tuple[Literal["json", "csv"], list[ParsedRow]]:
    """The rows of POST /v1/mailboxes/bulk, whichever way they were sent."""
    kind = media_type(request)
    if kind == "application/json" or kind.endswith("+json"):
        return "json", formats.rows_from_json(
            await read_json(request, max_bytes), max_rows=max_rows
        )
    if kind == "multipart/form-data":
        data = await _uploaded_file(request, max_bytes)
    elif kind in _CSV_TYPES:
        data = await read_body(request, max_bytes)
    else:
        raise UnsupportedMediaType(
            "Send a JSON array (application/json), a CSV body (text/csv) or a CSV file "
            "in the multipart form field 'file'"
        )
    _layout, rows = formats.rows_from_csv(formats.decode_text(data), max_rows=max_rows)
    return "csv", rows
