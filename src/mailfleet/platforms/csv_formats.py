"""CSV layouts of mailboxes: Mailfleet's own, and the bulk-upload templates of
Instantly and Smartlead. Defined once, here: exports write them, and the bulk
import (bulk/formats.py) reads the same columns into the same fields.

Password columns are always present, so a layout's header never changes; they
are empty unless the caller may see credentials. Free-text cells (names, tags,
signatures) that a spreadsheet would run as a formula get a leading apostrophe;
credentials and hosts are written as they are, since platforms read the file
as data and a changed password would not log in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

from mailfleet.platforms.base import SplitName

Layout = Literal["mailfleet", "instantly", "smartlead"]
LAYOUTS: Final[tuple[Layout, ...]] = ("mailfleet", "instantly", "smartlead")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class MailboxRow(SplitName):
    email: str
    display_name: str
    provider: str
    daily_limit: int
    tags: tuple[str, ...]
    signature: str | None
    smtp_host: str
    smtp_port: int
    smtp_secure: bool
    smtp_username: str
    imap_host: str
    imap_port: int
    imap_secure: bool
    imap_username: str
    # None unless credentials go in this export.
    smtp_password: str | None = None
    imap_password: str | None = None


def _text(value: str | None) -> str:
    if value and value.startswith(_FORMULA_START):
        return "'" + value
    return value or ""


def _flag(value: bool) -> str:
    return "true" if value else "false"


class Column(NamedTuple):
    header: str
    # What the column holds, named as in POST /v1/mailboxes ("smtp.host"); the
    # bulk import reads the column into it. None: a column the import ignores.
    field: str | None
    cell: Callable[[MailboxRow], str]


_COLUMNS: Final[dict[Layout, tuple[Column, ...]]] = {
    # Mailfleet's own, the columns its bulk import reads (POST /v1/mailboxes/bulk,
    # `mailfleet mailboxes import`), so an export connects again elsewhere as it is.
    "mailfleet": (
        Column("email", "email", lambda r: r.email),
        Column("display_name", "displayName", lambda r: _text(r.display_name)),
        Column("provider", "provider", lambda r: r.provider),
        Column("smtp_host", "smtp.host", lambda r: r.smtp_host),
        Column("smtp_port", "smtp.port", lambda r: str(r.smtp_port)),
        Column("smtp_username", "smtp.username", lambda r: r.smtp_username),
        Column("smtp_password", "smtp.password", lambda r: r.smtp_password or ""),
        Column("smtp_secure", "smtp.secure", lambda r: _flag(r.smtp_secure)),
        Column("imap_host", "imap.host", lambda r: r.imap_host),
        Column("imap_port", "imap.port", lambda r: str(r.imap_port)),
        Column("imap_username", "imap.username", lambda r: r.imap_username),
        Column("imap_password", "imap.password", lambda r: r.imap_password or ""),
        Column("imap_secure", "imap.secure", lambda r: _flag(r.imap_secure)),
        Column("daily_limit", "dailySendLimit", lambda r: str(r.daily_limit)),
        Column("tags", "tags", lambda r: _text(";".join(r.tags))),
        Column("signature", "signature", lambda r: _text(r.signature)),
    ),
    # Instantly's "bulk import from CSV" template (any provider, IMAP/SMTP);
    # warmup columns left empty take Instantly's defaults.
    "instantly": (
        Column("Email", "email", lambda r: r.email),
        Column("First Name", "displayName", lambda r: _text(r.first_name)),
        Column("Last Name", "lastName", lambda r: _text(r.last_name)),
        Column("IMAP Username", "imap.username", lambda r: r.imap_username),
        Column("IMAP Password", "imap.password", lambda r: r.imap_password or ""),
        Column("IMAP Host", "imap.host", lambda r: r.imap_host),
        Column("IMAP Port", "imap.port", lambda r: str(r.imap_port)),
        Column("SMTP Username", "smtp.username", lambda r: r.smtp_username),
        Column("SMTP Password", "smtp.password", lambda r: r.smtp_password or ""),
        Column("SMTP Host", "smtp.host", lambda r: r.smtp_host),
        Column("SMTP Port", "smtp.port", lambda r: str(r.smtp_port)),
        Column("Daily Limit", "dailySendLimit", lambda r: str(r.daily_limit)),
        Column("Warmup Enabled", None, lambda r: ""),
        Column("Warmup Limit", None, lambda r: ""),
        Column("Warmup Increment", None, lambda r: ""),
    ),
    # Smartlead's "bulk upload SMTP accounts" template.
    "smartlead": (
        Column("from_name", "displayName", lambda r: _text(r.display_name)),
        Column("from_email", "email", lambda r: r.email),
        Column("user_name", "smtp.username", lambda r: r.smtp_username),
        Column("password", "smtp.password", lambda r: r.smtp_password or ""),
        Column("smtp_host", "smtp.host", lambda r: r.smtp_host),
        Column("smtp_port", "smtp.port", lambda r: str(r.smtp_port)),
        Column("imap_host", "imap.host", lambda r: r.imap_host),
        Column("imap_port", "imap.port", lambda r: str(r.imap_port)),
        Column("max_email_per_day", "dailySendLimit", lambda r: str(r.daily_limit)),
        Column("custom_tracking_url", None, lambda r: ""),
        Column("warmup_enabled", None, lambda r: ""),
        Column("total_warmup_per_day", None, lambda r: ""),
        Column("daily_rampup", None, lambda r: ""),
        Column("reply_rate_percentage", None, lambda r: ""),
        Column("bcc", None, lambda r: ""),
        Column("signature", "signature", lambda r: _text(r.signature)),
        Column("different_reply_to_address", None, lambda r: ""),
        Column("imap_user_name", "imap.username", lambda r: r.imap_username),
        Column("imap_password", "imap.password", lambda r: r.imap_password or ""),
    ),
}


def headers(layout: Layout) -> list[str]:
    return [column.header for column in _COLUMNS[layout]]


def header_of(layout: Layout) -> dict[str, str]:
    """Each field the layout holds -> its column header."""
    return {column.field: column.header for column in _COLUMNS[layout] if column.field}


def render_csv(layout: Layout, rows: Iterable[MailboxRow], *, header: bool = True) -> str:
    """The rows as CSV in `layout`; without the header row for a later piece of a file."""
    columns = _COLUMNS[layout]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if header:
        writer.writerow([column.header for column in columns])
    for row in rows:
        writer.writerow([column.cell(row) for column in columns])
    return buffer.getvalue()
