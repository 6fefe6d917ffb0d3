"""CSV layouts of a mailbox selection: Mailfleet's own, and the bulk-upload
templates of Instantly and Smartlead.

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
from typing import Final, Literal

Layout = Literal["mailfleet", "instantly", "smartlead"]
LAYOUTS: Final[tuple[Layout, ...]] = ("mailfleet", "instantly", "smartlead")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class MailboxRow:
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

    @property
    def first_name(self) -> str:
        parts = self.display_name.split(None, 1)
        return parts[0] if parts else self.email.split("@", 1)[0]

    @property
    def last_name(self) -> str:
        parts = self.display_name.split(None, 1)
        return parts[1] if len(parts) > 1 else ""


def _text(value: str | None) -> str:
    if value and value.startswith(_FORMULA_START):
        return "'" + value
    return value or ""


def _flag(value: bool) -> str:
    return "true" if value else "false"


Column = tuple[str, Callable[[MailboxRow], str]]

_COLUMNS: Final[dict[Layout, tuple[Column, ...]]] = {
    # Mailfleet's own, the columns its bulk import reads (POST /v1/mailboxes/bulk,
    # `mailfleet mailboxes import`), so an export connects again elsewhere as it is.
    "mailfleet": (
        ("email", lambda r: r.email),
        ("display_name", lambda r: _text(r.display_name)),
        ("provider", lambda r: r.provider),
        ("smtp_host", lambda r: r.smtp_host),
        ("smtp_port", lambda r: str(r.smtp_port)),
        ("smtp_username", lambda r: r.smtp_username),
        ("smtp_password", lambda r: r.smtp_password or ""),
        ("smtp_secure", lambda r: _flag(r.smtp_secure)),
        ("imap_host", lambda r: r.imap_host),
        ("imap_port", lambda r: str(r.imap_port)),
        ("imap_username", lambda r: r.imap_username),
        ("imap_password", lambda r: r.imap_password or ""),
        ("imap_secure", lambda r: _flag(r.imap_secure)),
        ("daily_limit", lambda r: str(r.daily_limit)),
        ("tags", lambda r: _text(";".join(r.tags))),
        ("signature", lambda r: _text(r.signature)),
    ),
    # Instantly's "bulk import from CSV" template (any provider, IMAP/SMTP);
    # warmup columns left empty take Instantly's defaults.
    "instantly": (
        ("Email", lambda r: r.email),
        ("First Name", lambda r: _text(r.first_name)),
        ("Last Name", lambda r: _text(r.last_name)),
        ("IMAP Username", lambda r: r.imap_username),
        ("IMAP Password", lambda r: r.imap_password or ""),
        ("IMAP Host", lambda r: r.imap_host),
        ("IMAP Port", lambda r: str(r.imap_port)),
        ("SMTP Username", lambda r: r.smtp_username),
        ("SMTP Password", lambda r: r.smtp_password or ""),
        ("SMTP Host", lambda r: r.smtp_host),
        ("SMTP Port", lambda r: str(r.smtp_port)),
        ("Daily Limit", lambda r: str(r.daily_limit)),
        ("Warmup Enabled", lambda r: ""),
        ("Warmup Limit", lambda r: ""),
        ("Warmup Increment", lambda r: ""),
    ),
    # Smartlead's "bulk upload SMTP accounts" template.
    "smartlead": (
        ("from_name", lambda r: _text(r.display_name)),
        ("from_email", lambda r: r.email),
        ("user_name", lambda r: r.smtp_username),
        ("password", lambda r: r.smtp_password or ""),
        ("smtp_host", lambda r: r.smtp_host),
        ("smtp_port", lambda r: str(r.smtp_port)),
        ("imap_host", lambda r: r.imap_host),
        ("imap_port", lambda r: str(r.imap_port)),
        ("max_email_per_day", lambda r: str(r.daily_limit)),
        ("custom_tracking_url", lambda r: ""),
        ("warmup_enabled", lambda r: ""),
        ("total_warmup_per_day", lambda r: ""),
        ("daily_rampup", lambda r: ""),
        ("reply_rate_percentage", lambda r: ""),
        ("bcc", lambda r: ""),
        ("signature", lambda r: _text(r.signature)),
        ("different_reply_to_address", lambda r: ""),
        ("imap_user_name", lambda r: r.imap_username),
        ("imap_password", lambda r: r.imap_password or ""),
    ),
}


def headers(layout: Layout) -> list[str]:
    return [name for name, _ in _COLUMNS[layout]]


def render_csv(layout: Layout, rows: Iterable[MailboxRow]) -> str:
    columns = _COLUMNS[layout]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([name for name, _ in columns])
    for row in rows:
        writer.writerow([cell(row) for _, cell in columns])
    return buffer.getvalue()
