"""Read and tidy a mailbox's folders over IMAP (aioimaplib).

    async with ImapFolders(settings, options) as imap:
        folders = await imap.list_folders()          # with SPECIAL-USE flags and a class
        found = await imap.find_by_header(spam, "X-Mailfleet-Warmup")   # {uid: value}
        await imap.add_flags(spam, found, "\\Flagged \\Seen")
        await imap.move(spam, found, inbox)
        await imap.delete(inbox, uids)

Folders are classed as `inbox`, `spam` (SPECIAL-USE \\Junk, or a name providers
use for it), `promotions` or `other` (Gmail's categories where the server shows
them as folders), or None for the rest. Commands use the folder's name exactly
as the server sent it (modified UTF-7, quoted), so any name round-trips.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from typing import Any, Final

import aioimaplib

from mailfleet.mail.probes import PROTOCOL_ERROR, ImapSettings, _ImapProbe, list_entries
from mailfleet.mail.sessions import (
    ConnectOptions,
    LoggedInSession,
    MailError,
    open_imap_probe,
    scrubbed,
)

__all__ = [
    "FetchedHeaders",
    "Folder",
    "ImapFolders",
    "classify_folder",
    "parse_fetch",
    "parse_folders",
]

# Names providers give their spam folder when they do not flag it \Junk.
SPAM_NAMES: Final = frozenset(
    {
        "junk",
        "spam",
        "junk e-mail",
        "junk email",
        "junk mail",
        "bulk mail",
        "bulk",
        "[gmail]/spam",
        "[google mail]/spam",
        "courrier indésirable",
        "spam-verdacht",
        "posta indesiderata",
        "correo no deseado",
    }
)
PROMOTION_NAMES: Final = frozenset({"promotions", "[gmail]/promotions", "categories/promotions"})
OTHER_CATEGORY_NAMES: Final = frozenset(
    {
        "[gmail]/updates",
        "[gmail]/social",
        "[gmail]/forums",
        "categories/updates",
        "categories/social",
        "categories/forums",
    }
)

_FETCH_START_RE: Final = re.compile(rb"^\d+ FETCH \(")
_UID_RE: Final = re.compile(rb"UID (\d+)")
_INTERNALDATE_RE: Final = re.compile(rb'INTERNALDATE "([^"]+)"')


@dataclass(frozen=True)
class Folder:
    name: str
    """Decoded, for people and for storing."""
    wire: str
    """As the server sent it, quoted: what commands send back."""
    flags: frozenset[str]
    kind: str | None


def classify_folder(name: str, flags: Iterable[str], delimiter: str | None = "/") -> str | None:
    lowered = {flag.lower() for flag in flags}
    if name.upper() == "INBOX":
        return "inbox"
    if "\\junk" in lowered:
        return "spam"
    low = name.lower()
    if delimiter and delimiter != "/":
        low = low.replace(delimiter, "/")
    last = low.rsplit("/", 1)[-1]
    if low in SPAM_NAMES or last in SPAM_NAMES or low.startswith("inbox/spam"):
        return "spam"
    if low in PROMOTION_NAMES:
        return "promotions"
    if low in OTHER_CATEGORY_NAMES:
        return "other"
    return None


def _quote(raw: str) -> str:
    quoted: str = aioimaplib.quoted(raw)
    return quoted


def parse_folders(lines: Sequence[bytes | bytearray]) -> list[Folder]:
    """Folders from LIST lines (``(flags) "delim" name``; a literal name on the next line)."""
    return [
        Folder(
            entry.name,
            _quote(entry.raw),
            entry.flags,
            classify_folder(entry.name, entry.flags, entry.delimiter),
        )
        for entry in list_entries(lines)
    ]


@dataclass(frozen=True)
class FetchedHeaders:
    """One message of a UID FETCH of some header fields (and INTERNALDATE)."""

    uid: int
    headers: EmailMessage
    internal_date: datetime | None = None

    def values(self, name: str) -> list[str]:
        """Every value of header `name`, unfolded, in the message's order."""
        return [" ".join(str(value).split()) for value in self.headers.get_all(name, [])]


def _internal_date(meta: bytes) -> datetime | None:
    match = _INTERNALDATE_RE.search(meta)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1).decode().strip(), "%d-%b-%Y %H:%M:%S %z")
    except ValueError:
        return None


def parse_fetch(lines: Sequence[bytes | bytearray]) -> dict[int, FetchedHeaders]:
    """{uid: headers} from a UID FETCH answer: each record is a `n FETCH (` line, the
    header literal (a bytearray) and the rest; the UID may come on either side."""
    records: list[list[bytes | bytearray]] = []
    for line in lines:
        if isinstance(line, bytes) and _FETCH_START_RE.match(line):
            records.append([line])
        elif records:
            records[-1].append(line)
    parser = BytesHeaderParser(policy=default_policy)
    found: dict[int, FetchedHeaders] = {}
    for record in records:
        meta = b" ".join(bytes(part) for part in record if isinstance(part, bytes))
        literal = b"".join(bytes(part) for part in record if isinstance(part, bytearray))
        match = _UID_RE.search(meta)
        if match is None:
            continue
        uid = int(match.group(1))
        headers = parser.parsebytes(literal)
        assert isinstance(headers, EmailMessage)
        found[uid] = FetchedHeaders(uid, headers, _internal_date(meta))
    return found


def parse_header_fetch(lines: Sequence[bytes | bytearray], header: str) -> dict[int, str]:
    """{uid: header value} from a UID FETCH of one header field."""
    return _first_values(parse_fetch(lines), header)


def _first_values(fetched: dict[int, FetchedHeaders], header: str) -> dict[int, str]:
    """{uid: the first value of `header`} for the messages that carry it."""
    found: dict[int, str] = {}
    for uid, message in fetched.items():
        values = message.values(header)
        if values and values[0]:
            found[uid] = values[0]
    return found


def _uid_set(uids: Iterable[int]) -> str:
    return ",".join(str(uid) for uid in sorted(set(uids)))


class ImapFolders(LoggedInSession[ImapSettings, _ImapProbe]):
    def __init__(self, settings: ImapSettings, options: ConnectOptions) -> None:
        super().__init__(settings, options)
        self._selected: str | None = None

    async def _open(self) -> _ImapProbe:
        self._selected = None
        return await open_imap_probe(self.settings, self.options)

    @property
    def _protocol(self) -> Any:
        probe = self._probe
        if probe is None or probe.tap is None:
            raise RuntimeError("ImapFolders used outside its `async with`")
        return probe.tap.inner

    @property
    def capabilities(self) -> set[str]:
        return set(self._protocol.capabilities)

    async def _run(self, what: str, awaitable: Any) -> Any:
        assert self._probe is not None
        self._probe.phase = what
        try:
            response = await self._probe._step(awaitable)
        except MailError:
            raise
        except Exception as exc:
            failure = self._probe.classify(exc)
            raise MailError(
                failure.code, scrubbed(self._probe, failure.message), temporary=True
            ) from None
        if response.result != "OK":
            last = bytes(response.lines[-1]).decode("utf-8", "replace") if response.lines else ""
            raise MailError(
                PROTOCOL_ERROR, scrubbed(self._probe, f"{what} failed: {response.result} {last}")
            )
        return response

    async def list_folders(self) -> list[Folder]:
        response = await self._run(
            "listing folders", self._protocol.simple_command("LIST", '""', '"*"')
        )
        return parse_folders(response.lines[:-1])

    async def select(self, folder: Folder) -> None:
        if self._selected == folder.wire:
            return
        self._selected = None
        await self._run(f"selecting {folder.name}", self._protocol.select(folder.wire))
        self._selected = folder.wire

    async def search_header(self, folder: Folder, header: str, value: str = "") -> list[int]:
        """UIDs of the messages in `folder` that carry `header` (containing `value`)."""
        await self.select(folder)
        response = await self._run(
            f"searching {folder.name}",
            self._protocol.search("HEADER", header, _quote(value), charset=None, by_uid=True),
        )
        uids: list[int] = []
        for line in response.lines[:-1]:
            text = bytes(line).decode("ascii", "replace").split()
            if text and text[0].upper() == "SEARCH":
                text = text[1:]
            uids.extend(int(token) for token in text if token.isdigit())
        return uids

    async def fetch_headers(
        self, folder: Folder, uids: Iterable[int], fields: Sequence[str]
    ) -> dict[int, FetchedHeaders]:
        """These header fields and the arrival time (INTERNALDATE) of each message."""
        uid_set = _uid_set(uids)
        if not uid_set:
            return {}
        await self.select(folder)
        fetched = await self._run(
            f"reading headers in {folder.name}",
            self._protocol.fetch(
                uid_set,
                f"(UID INTERNALDATE BODY.PEEK[HEADER.FIELDS ({' '.join(fields)})])",
                by_uid=True,
            ),
        )
        return parse_fetch(fetched.lines)

    async def find_by_header(self, folder: Folder, header: str, value: str = "") -> dict[int, str]:
        """{uid: value of `header`} for the messages in `folder` that carry it
        (containing `value`, when given)."""
        uids = await self.search_header(folder, header, value)
        return _first_values(await self.fetch_headers(folder, uids, (header,)), header)

    async def add_flags(self, folder: Folder, uids: Iterable[int], flags: str) -> None:
        uid_set = _uid_set(uids)
        if not uid_set:
            return
        await self.select(folder)
        await self._run(
            f"flagging in {folder.name}",
            self._protocol.store(uid_set, "+FLAGS.SILENT", f"({flags})", by_uid=True),
        )

    async def move(self, folder: Folder, uids: Iterable[int], target: Folder) -> None:
        """Move messages (MOVE, or COPY then delete where the server lacks it)."""
        uid_set = _uid_set(uids)
        if not uid_set:
            return
        await self.select(folder)
        if "MOVE" in self.capabilities:
            await self._run(
                f"moving from {folder.name}",
                self._protocol.move(uid_set, target.wire, by_uid=True),
            )
            return
        await self._run(
            f"copying from {folder.name}",
            self._protocol.copy(uid_set, target.wire, by_uid=True),
        )
        await self._expunge(folder, uid_set)

    async def delete(self, folder: Folder, uids: Iterable[int]) -> None:
        uid_set = _uid_set(uids)
        if not uid_set:
            return
        await self.select(folder)
        await self._expunge(folder, uid_set)

    async def _expunge(self, folder: Folder, uid_set: str) -> None:
        await self._run(
            f"deleting in {folder.name}",
            self._protocol.store(uid_set, "+FLAGS.SILENT", "(\\Deleted)", by_uid=True),
        )
        if "UIDPLUS" in self.capabilities:
            # Only these messages: others marked \Deleted by a mail client stay.
            await self._run(
                f"expunging {folder.name}", self._protocol.expunge(uid_set, by_uid=True)
            )
        else:
            await self._run(f"expunging {folder.name}", self._protocol.expunge())
