"""What a bulk request may hold, turned into rows: a JSON array in the shape of
POST /v1/mailboxes, or a CSV file in Mailfleet's, Instantly's or Smartlead's
column layout (told apart by the header). Vendor dialects (compat/) build the
same rows from their own fields.

Every row becomes a `ParsedRow`: a valid `MailboxCreate`, or why the row is
invalid. A bad row never sinks the batch; only a request that is not a batch at
all (not an array, no recognisable header) is refused as a whole.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from mailfleet.kit.errors import ValidationFailed
from mailfleet.mailboxes.schemas import MailboxCreate
from mailfleet.platforms.csv_formats import Layout, header_of, headers

CsvLayout = Layout

# The documented columns of Mailfleet's own layout (provider and signature too).
NATIVE_COLUMNS: Final = tuple(headers("mailfleet"))
# Headers of Instantly's bulk upload file that only it spells this way; any one
# of them, spelt with its space, says the file is Instantly's.
_INSTANTLY_MARKERS: Final = frozenset(
    {"first name", "last name", "smtp host", "imap host", "smtp password", "daily limit"}
)
_TRUE: Final = frozenset({"true", "yes", "y", "1", "ssl", "tls", "starttls", "on"})
_FALSE: Final = frozenset({"false", "no", "n", "0", "none", "off", "plain"})
_MAX_EMAIL: Final = 320
_MAX_MESSAGE: Final = 1000


@dataclass(frozen=True, slots=True)
class ParsedRow:
    row: int
    """1-based position in the request (for CSV: the record after the header)."""
    email: str
    """The address the row names, lowercased, even when the row is invalid."""
    data: MailboxCreate | None
    error: str | None = None


def describe_validation_error(
    exc: ValidationError, field_names: Mapping[str, str] | None = None
) -> str:
    """`field: message; ...` for the first few problems. Inputs are never quoted:
    a password field's input is the password."""
    parts = []
    for error in exc.errors()[:5]:
        field = ".".join(str(part) for part in error.get("loc", ())) or "item"
        if field_names:
            field = field_names.get(field, field)
        parts.append(f"{field}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)[:_MAX_MESSAGE]


def _email_of(value: object) -> str:
    return value.strip().lower()[:_MAX_EMAIL] if isinstance(value, str) else ""


def parse_item(
    row: int,
    raw: object,
    *,
    email: object = None,
    field_names: Mapping[str, str] | None = None,
) -> ParsedRow:
    """Validate one item of POST /v1/mailboxes's shape. `field_names` renames
    fields in messages, for dialects whose clients know other names."""
    shown_email = _email_of(email if email is not None else _get(raw, "email"))
    if not isinstance(raw, dict):
        return ParsedRow(row, shown_email, None, "item: each item must be a JSON object")
    try:
        data = MailboxCreate.model_validate(raw)
    except ValidationError as exc:
        return ParsedRow(row, shown_email, None, describe_validation_error(exc, field_names))
    return ParsedRow(row, data.email, data)


def _get(raw: object, key: str) -> object:
    return raw.get(key) if isinstance(raw, dict) else None


def decode_text(data: bytes) -> str:
    """CSV bytes as text: UTF-8 (with or without a BOM), else Windows-1252, which is
    what spreadsheet programs on Windows save."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def _column_key(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lstrip("\ufeff").strip().lower())


def detect_layout(headers: list[str]) -> CsvLayout:
    keys = {_column_key(header) for header in headers}
    spelt = {" ".join(header.strip().lstrip("\ufeff").lower().split()) for header in headers}
    if "from_email" in keys:
        return "smartlead"
    if spelt & _INSTANTLY_MARKERS:
        return "instantly"
    if "email" in keys:
        return "mailfleet"
    raise ValidationFailed.for_field(
        "file",
        "Unrecognised CSV header: use Mailfleet's columns (email, smtp_host, smtp_port, "
        "smtp_password, ...), Instantly's (Email, SMTP Host, ...) or Smartlead's "
        "(from_email, smtp_host, ...)",
    )


def _delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    # Spreadsheets in locales with a decimal comma save with semicolons.
    return ";" if first_line.count(";") > first_line.count(",") else ","


def too_many_rows(field: str, max_rows: int) -> ValidationFailed:
    return ValidationFailed.for_field(
        field, f"At most {max_rows} mailboxes per job (MAILFLEET_BULK_MAX_ITEMS); split the file"
    )


def rows_from_json(payload: object, *, max_rows: int) -> list[ParsedRow]:
    if not isinstance(payload, list):
        raise ValidationFailed.for_field(
            "body", "Send a JSON array of mailboxes (each in the shape of POST /v1/mailboxes)"
        )
    if len(payload) > max_rows:
        raise too_many_rows("body", max_rows)
    return [parse_item(index, raw) for index, raw in enumerate(payload, start=1)]


def rows_from_csv(text: str, *, max_rows: int) -> tuple[CsvLayout, list[ParsedRow]]:
    """Parse a CSV file, refusing it once it holds more than `max_rows` mailboxes."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=_delimiter(text))
    try:
        headers = next(reader)
    except StopIteration:
        raise ValidationFailed.for_field("file", "The CSV file is empty") from None
    except csv.Error as exc:
        raise ValidationFailed.for_field("file", f"The CSV file cannot be read: {exc}") from None
    layout = detect_layout(headers)
    keys = [_column_key(header) for header in headers]
    if layout == "mailfleet":
        unknown = [h for h, k in zip(headers, keys, strict=True) if k and k not in NATIVE_COLUMNS]
        if unknown:
            raise ValidationFailed.for_field(
                "file",
                f"Unknown CSV column(s) {', '.join(repr(u[:40]) for u in unknown[:5])}; "
                f"the columns are {', '.join(NATIVE_COLUMNS)}",
            )
    convert = _CONVERTERS[layout]
    rows: list[ParsedRow] = []
    try:
        for number, record in enumerate(reader, start=1):
            if not any(cell.strip() for cell in record):
                continue
            if len(rows) >= max_rows:
                raise too_many_rows("file", max_rows)
            if len(record) > len(keys):
                rows.append(
                    ParsedRow(number, "", None, "row: more cells than the header has columns")
                )
                continue
            cells = {key: value.strip() for key, value in zip(keys, record, strict=False) if key}
            rows.append(convert(number, cells))
    except csv.Error as exc:
        raise ValidationFailed.for_field(
            "file", f"The CSV file cannot be read near record {len(rows) + 1}: {exc}"
        ) from None
    return layout, rows


def _port(value: str) -> int | str | None:
    if not value:
        return None
    return int(value) if value.isdigit() else value


def _secure(value: str, column: str) -> bool | str | None:
    lowered = value.lower()
    if not lowered:
        return None
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return f"invalid:{column}"


def _server(
    host: str, port: str, username: str, password: str, secure: bool | str | None
) -> dict[str, Any]:
    server: dict[str, Any] = {"host": host, "password": password}
    if (parsed_port := _port(port)) is not None:
        server["port"] = parsed_port
    if username:
        server["username"] = username
    if secure is not None:
        server["secure"] = secure
    return server


def _with_optional(item: dict[str, Any], **values: object) -> dict[str, Any]:
    for key, value in values.items():
        if value not in (None, ""):
            item[key] = value
    return item


def _by_field(layout: Layout, cells: dict[str, str]) -> Callable[[str], str]:
    """The row's cell for a field, found under the layout's header for it ("" when
    the layout has no column for the field)."""
    keys = {field: _column_key(header) for field, header in header_of(layout).items()}
    return lambda field: cells.get(keys.get(field, ""), "")


def _native(number: int, cells: dict[str, str]) -> ParsedRow:
    cell = _by_field("mailfleet", cells)
    email = cell("email")
    smtp_secure = _secure(cell("smtp.secure"), "smtp_secure")
    imap_secure = _secure(cell("imap.secure"), "imap_secure")
    for secure in (smtp_secure, imap_secure):
        if isinstance(secure, str):
            column = secure.split(":", 1)[1]
            return ParsedRow(
                number, _email_of(email), None, f"{column}: use true or false (or ssl, tls, none)"
            )
    item: dict[str, Any] = {
        "email": email,
        "smtp": _server(
            cell("smtp.host"),
            cell("smtp.port"),
            cell("smtp.username"),
            cell("smtp.password"),
            smtp_secure,
        ),
    }
    imap_fields = ("imap.host", "imap.port", "imap.username", "imap.password", "imap.secure")
    if any(cell(field) for field in imap_fields):
        # A partly filled IMAP block borrows what it lacks from SMTP, as an
        # omitted one does entirely.
        item["imap"] = _server(
            cell("imap.host") or cell("smtp.host"),
            cell("imap.port"),
            cell("imap.username") or cell("smtp.username"),
            cell("imap.password") or cell("smtp.password"),
            imap_secure if imap_secure is not None else smtp_secure,
        )
    tags = [tag.strip() for tag in re.split(r"[;,|]", cell("tags")) if tag.strip()]
    _with_optional(
        item,
        displayName=cell("displayName"),
        provider=cell("provider"),
        dailySendLimit=_port(cell("dailySendLimit")),
        signature=cell("signature"),
        tags=tags or None,
    )
    return parse_item(number, item, field_names=header_of("mailfleet"))


def _vendor_item(
    email: str,
    display_name: str,
    smtp: tuple[str, str, str, str],
    imap: tuple[str, str, str, str],
    daily_limit: str,
    signature: str = "",
) -> dict[str, Any]:
    # Neither vendor's file has an encryption column: implicit TLS on 465/993 and
    # STARTTLS elsewhere (secure=true), so a password never crosses in the clear.
    smtp_host, smtp_port, smtp_user, smtp_password = smtp
    imap_host, imap_port, imap_user, imap_password = imap
    item: dict[str, Any] = {
        "email": email,
        "smtp": _server(smtp_host, smtp_port, smtp_user, smtp_password or imap_password, True),
        "imap": _server(
            imap_host or smtp_host,
            imap_port,
            imap_user or smtp_user,
            imap_password or smtp_password,
            True,
        ),
    }
    return _with_optional(
        item,
        displayName=display_name,
        dailySendLimit=_port(daily_limit),
        signature=signature,
    )


def _vendor_row(cell: Callable[[str], str], name: str, imap_username: str) -> dict[str, Any]:
    return _vendor_item(
        cell("email"),
        name,
        (cell("smtp.host"), cell("smtp.port"), cell("smtp.username"), cell("smtp.password")),
        (cell("imap.host"), cell("imap.port"), imap_username, cell("imap.password")),
        cell("dailySendLimit"),
        cell("signature"),
    )


def _instantly(number: int, cells: dict[str, str]) -> ParsedRow:
    cell = _by_field("instantly", cells)
    name = " ".join(part for part in (cell("displayName"), cell("lastName")) if part)
    item = _vendor_row(cell, name, cell("imap.username"))
    return parse_item(number, item, field_names=header_of("instantly"))


def _smartlead(number: int, cells: dict[str, str]) -> ParsedRow:
    cell = _by_field("smartlead", cells)
    # Some exports of Smartlead's spell the IMAP login column without its underscore.
    imap_username = cell("imap.username") or cells.get("imap_username", "")
    item = _vendor_row(cell, cell("displayName"), imap_username)
    return parse_item(number, item, field_names=header_of("smartlead"))


_CONVERTERS: Final = {"mailfleet": _native, "instantly": _instantly, "smartlead": _smartlead}
