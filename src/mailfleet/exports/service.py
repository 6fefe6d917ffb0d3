"""Exports: platform accounts, connect-inbox, mailbox exports (CSV or a platform), history.

A request records what to export (a history row IN_PROGRESS and one item per
inbox) and enqueues one durable workflow after commit (`workflows.run_export`),
whose steps are in `steps.py`. A sweeper re-enqueues exports
whose enqueue a crash lost, under the same workflow id.

Secrets: platform API keys and logins, and the passwords connect-inbox hands
over, are keyring ciphertext at rest. A connect-inbox password is kept on its
item only until that inbox's result is known. Workflow arguments and step
results never carry a secret: DBOS stores them in its database in the clear.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypedDict, TypeVar

import httpx
from sqlalchemy import Select, func, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet import jobs
from mailfleet.config import Settings
from mailfleet.db import after_commit
from mailfleet.exports.repository import ExportHistoryRepository, PlatformAccountRepository
from mailfleet.exports.schemas import (
    MAX_SELECTION,
    ConnectInboxItem,
    ConnectInboxRequest,
    ExportHistoryCreate,
    MailboxExportRequest,
    PlatformAccountCreate,
    PlatformAccountUpdate,
)
from mailfleet.kit.clock import utcnow
from mailfleet.kit.crypto import Keyring
from mailfleet.kit.errors import Conflict, Forbidden, ValidationFailed
from mailfleet.kit.ids import new_id
from mailfleet.kit.netguard import NetguardError, guard_url
from mailfleet.kit.pagination import Page
from mailfleet.mailboxes.repository import MailboxFilters, MailboxRepository
from mailfleet.mailboxes.service import LOGIN_COLUMNS
from mailfleet.models import (
    EXPORT_STATUSES,
    ConnectInboxRecord,
    ExportHistory,
    ExportItem,
    ExportItemStatus,
    ExportStatus,
    Mailbox,
    PlatformAccount,
    Tag,
    mailbox_tags,
)
from mailfleet.platforms import adapter_for
from mailfleet.platforms.base import (
    AccountAccess,
    PlatformAdapter,
    Validation,
)
from mailfleet.platforms.csv_formats import Layout, MailboxRow, render_csv
from mailfleet.platforms.http import HttpPolicy

log = logging.getLogger(__name__)

T = TypeVar("T")

EXPORT_QUEUE: Final = "platform_export"
CONNECT_INBOX_MESSAGE: Final = (
    "Inboxes will be connected within 24 hours based on the queue of inboxes."
)
PRIVILEGED_ROLES: Final = frozenset({"owner", "admin"})
# Unambiguous when read aloud or typed: no 0/O, 1/I.
_JOB_ID_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
_IN_BATCH: Final = 500
# Mailboxes read and written per piece of a streamed CSV file.
_CSV_BATCH: Final = 1000
_INSERT_BATCH: Final = 500
_STOPPED: Final = "The export stopped before this inbox was sent"


def new_job_id() -> str:
    """A short job id like the seed's "EXB3C4": EX and six characters (10^9 of them)."""
    return "EX" + "".join(secrets.choice(_JOB_ID_ALPHABET) for _ in range(6))


def export_workflow_id(history_id: str) -> str:
    return f"export-{history_id}"


async def enqueue_export(history_id: str, partition_key: str) -> None:
    """One export per platform account at a time (the queue's partitions), so two
    exports never share an account's rate limit."""
    await jobs.enqueue_named(
        EXPORT_QUEUE,
        "mailfleet.exports.workflows:run_export",
        history_id,
        workflow_id=export_workflow_id(history_id),
        partition_key=partition_key,
    )


async def _history_by_key(
    session: AsyncSession, workspace_id: str, key: str | None
) -> ExportHistory | None:
    if key is None:
        return None
    found: ExportHistory | None = await session.scalar(
        select(ExportHistory).where(
            ExportHistory.workspace_id == workspace_id, ExportHistory.idempotency_key == key
        )
    )
    return found


async def _add_history(session: AsyncSession, history: ExportHistory) -> None:
    session.add(history)
    try:
        await session.flush()
    except IntegrityError as exc:
        # A concurrent request with the same Idempotency-Key (or, once in a
        # billion, the same job id in this workspace) won the insert.
        raise Conflict("A request with this Idempotency-Key is being processed; retry") from exc


# Platform accounts


def http_policy(settings: Settings) -> HttpPolicy:
    return HttpPolicy.from_settings(settings)


def account_access(account: PlatformAccount, keyring: Keyring) -> AccountAccess:
    return AccountAccess(
        base_url=account.base_url,
        api_key=keyring.decrypt(account.api_key_enc) if account.api_key_enc else None,
        login_email=account.login_email,
        login_password=(
            keyring.decrypt(account.login_password_enc) if account.login_password_enc else None
        ),
    )


def adapter_of(account: PlatformAccount, keyring: Keyring, settings: Settings) -> PlatformAdapter:
    return adapter_for(account.platform, account_access(account, keyring), http_policy(settings))


async def check_base_url(url: str, settings: Settings) -> str:
    """The base URL, without a trailing slash, when outbound requests may use it."""
    try:
        await guard_url(
            url,
            allow_private=settings.allow_private_networks,
            require_https=settings.env not in ("development", "test"),
        )
    except NetguardError as exc:
        raise ValidationFailed.for_field("baseUrl", exc.message) from None
    parsed = httpx.URL(url)
    if parsed.query or parsed.fragment:
        raise ValidationFailed.for_field("baseUrl", "A base URL has no query or fragment")
    return url.rstrip("/")


async def _check_with_platform(
    platform: str, access: AccountAccess, settings: Settings, *, verify: bool
) -> Validation:
    """Ask the platform about the key before anything is written; a refused key is a 400."""
    if not verify:
        return Validation("unchecked", "Not checked (verify: false)")
    if not access.api_key:
        return Validation("unchecked", "No API key to check")
    validation = await adapter_for(platform, access, http_policy(settings)).validate()
    if validation.status == "invalid":
        raise ValidationFailed.for_field("apiKey", validation.message)
    return validation


def _apply_validation(account: PlatformAccount, validation: Validation) -> None:
    account.validation_status = validation.status
    account.validation_message = validation.message[:500]
    account.validated_at = utcnow() if validation.status != "unchecked" else None


async def create_account(
    session: AsyncSession,
    keyring: Keyring,
    settings: Settings,
    workspace_id: str,
    data: PlatformAccountCreate,
) -> PlatformAccount:
    base_url = await check_base_url(data.base_url, settings) if data.base_url else None
    access = AccountAccess(base_url, data.api_key, data.email, data.password)
    validation = await _check_with_platform(data.platform, access, settings, verify=data.verify)
    account = PlatformAccount(
        workspace_id=workspace_id,
        platform=data.platform,
        name=data.name.strip(),
        login_email=data.email,
        login_password_enc=keyring.encrypt(data.password) if data.password else None,
        api_key_enc=keyring.encrypt(data.api_key) if data.api_key else None,
        base_url=base_url,
    )
    _apply_validation(account, validation)
    session.add(account)
    await session.flush()
    return account


async def update_account(
    session: AsyncSession,
    keyring: Keyring,
    settings: Settings,
    account: PlatformAccount,
    data: PlatformAccountUpdate,
) -> PlatformAccount:
    given = data.model_fields_set
    if "base_url" in given:
        account.base_url = await check_base_url(data.base_url, settings) if data.base_url else None
    if "api_key" in given:
        account.api_key_enc = keyring.encrypt(data.api_key) if data.api_key else None
    if data.name is not None:
        account.name = data.name.strip()
    if data.email is not None:
        account.login_email = data.email
    if "password" in given:
        account.login_password_enc = keyring.encrypt(data.password) if data.password else None
    if account.api_key_enc is None and account.login_password_enc is None:
        raise ValidationFailed.for_field(
            "apiKey", "An account needs an API key or a login; delete it instead"
        )
    if given & {"api_key", "base_url"}:
        validation = await _check_with_platform(
            account.platform, account_access(account, keyring), settings, verify=data.verify
        )
        _apply_validation(account, validation)
    account.updated_at = utcnow()
    await session.flush()
    return account


async def get_account(session: AsyncSession, workspace_id: str, account_id: str) -> PlatformAccount:
    return await PlatformAccountRepository(session).get(workspace_id, account_id)


async def list_accounts(session: AsyncSession, workspace_id: str) -> list[PlatformAccount]:
    rows = await session.scalars(
        select(PlatformAccount)
        .where(PlatformAccount.workspace_id == workspace_id)
        .order_by(PlatformAccount.created_at, PlatformAccount.id)
    )
    return list(rows)


async def delete_account(session: AsyncSession, account: PlatformAccount) -> None:
    """Delete the account and its credentials; its export history stays."""
    await session.delete(account)
    await session.flush()


def _require_privileged(role: str, what: str) -> None:
    if role not in PRIVILEGED_ROLES:
        raise Forbidden(f"Only workspace owners and admins may {what}")


# Connect-inbox


async def _login_account(
    session: AsyncSession,
    keyring: Keyring,
    workspace_id: str,
    platform: str,
    email: str,
    password: str | None,
) -> PlatformAccount:
    """The account this platform login belongs to: the one with this login, else the
    workspace's only account on the platform without a login (one added with just an
    API key), else a new one holding the login."""
    accounts = list(
        await session.scalars(
            select(PlatformAccount)
            .where(
                PlatformAccount.workspace_id == workspace_id, PlatformAccount.platform == platform
            )
            .order_by(PlatformAccount.created_at, PlatformAccount.id)
        )
    )
    matching = [a for a in accounts if a.login_email == email]
    account: PlatformAccount | None = None
    if matching:
        account = next((a for a in matching if a.api_key_enc), matching[0])
    elif len(accounts) == 1 and accounts[0].login_email is None:
        account = accounts[0]
        account.login_email = email
    if account is None:
        account = PlatformAccount(
            workspace_id=workspace_id,
            platform=platform,
            name="",
            login_email=email,
            validation_status="unchecked",
            validation_message="No API key to check",
        )
        session.add(account)
    if password is not None:
        account.login_password_enc = keyring.encrypt(password)
    await session.flush()
    return account


async def _existing_mailboxes(
    session: AsyncSession, workspace_id: str, emails: Sequence[str]
) -> dict[str, str]:
    found: dict[str, str] = {}
    for start in range(0, len(emails), _IN_BATCH):
        batch = list(emails[start : start + _IN_BATCH])
        rows = await session.execute(
            select(Mailbox.email, Mailbox.id).where(
                Mailbox.workspace_id == workspace_id, Mailbox.email.in_(batch)
            )
        )
        found.update({email: mailbox_id for email, mailbox_id in rows})
    return found


class ServerAddress(TypedDict):
    host: str
    port: int
    secure: bool


class InboxSecret(TypedDict, total=False):
    """The decrypted `connection_enc` of a connect-inbox item (keyring ciphertext at
    rest, erased once the inbox's result is known). First what the request gave;
    once `steps.prepare_inboxes` has found its servers, `ready` with the servers
    (`provider`, `smtp`, `imap`) the export sends."""

    password: str
    provider: str | None
    smtpHost: str | None
    smtpPort: int | None
    imapHost: str | None
    imapPort: int | None
    ready: bool
    smtp: ServerAddress
    imap: ServerAddress


def _connect_inbox_secret(item: ConnectInboxItem, inbox_type: str | None) -> InboxSecret:
    return {
        "password": item.secret,
        "provider": inbox_type,
        "smtpHost": item.smtp_host,
        "smtpPort": item.smtp_port,
        "imapHost": item.imap_host,
        "imapPort": item.imap_port,
    }


async def _insert_items(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    now = utcnow()
    for row in rows:
        row.setdefault("id", new_id())
        row.setdefault("status", "pending")
        row["created_at"] = row["updated_at"] = now
    for start in range(0, len(rows), _INSERT_BATCH):
        await session.execute(insert(ExportItem), rows[start : start + _INSERT_BATCH])


async def connect_inbox(
    session: AsyncSession,
    keyring: Keyring,
    workspace_id: str,
    user_id: str,
    data: ConnectInboxRequest,
    *,
    idempotency_key: str | None = None,
) -> tuple[ConnectInboxRecord, ExportHistory]:
    """Upsert the connect_inbox record and the platform account of this login, and
    queue the export of the inboxes; those not yet in Mailfleet become mailboxes
    (verified as any new mailbox) when the export reaches them."""
    previous = await _history_by_key(session, workspace_id, idempotency_key)
    if previous is not None and previous.connect_inbox_id is not None:
        record = await session.get(ConnectInboxRecord, previous.connect_inbox_id)
        if record is not None:
            return record, previous
    platform = data.platform_type
    account = await _login_account(
        session, keyring, workspace_id, platform, data.platform_email, data.platform_pass
    )
    inboxes: dict[str, ConnectInboxItem] = {}
    for item in data.inboxes:
        inboxes.setdefault(item.email, item)
    selected = [{"email": email} for email in inboxes]

    record = await session.scalar(
        select(ConnectInboxRecord).where(
            ConnectInboxRecord.workspace_id == workspace_id,
            ConnectInboxRecord.platform == platform,
            ConnectInboxRecord.platform_email == data.platform_email,
        )
    )
    if record is None:
        record = ConnectInboxRecord(
            workspace_id=workspace_id, platform=platform, platform_email=data.platform_email
        )
        session.add(record)
    record.workspace_name = data.workspace_name
    record.platform_account_id = account.id
    record.selected_mailboxes = selected
    record.user_id = user_id
    record.updated_at = utcnow()
    await session.flush()

    history = ExportHistory(
        workspace_id=workspace_id,
        job_id=new_job_id(),
        platform=platform,
        source="connect-inbox",
        status=ExportStatus.IN_PROGRESS,
        total=len(inboxes),
        connected_count=0,
        failed_count=0,
        platform_account_id=account.id,
        connect_inbox_id=record.id,
        workspace_name=data.workspace_name,
        credentials_included=False,
        created_by=user_id,
        idempotency_key=idempotency_key,
    )
    await _add_history(session, history)
    known = await _existing_mailboxes(session, workspace_id, list(inboxes))
    rows = []
    for position, (email, item) in enumerate(inboxes.items()):
        mailbox_id = known.get(email)
        rows.append(
            {
                "history_id": history.id,
                "position": position,
                "email": email,
                "name": item.name,
                "mailbox_id": mailbox_id,
                # A mailbox Mailfleet has is exported with its own settings; the
                # password given is kept only for inboxes Mailfleet does not have.
                "connection_enc": None
                if mailbox_id
                else keyring.encrypt(json.dumps(_connect_inbox_secret(item, data.inbox_type))),
            }
        )
    await _insert_items(session, rows)
    history_id, partition = history.id, account.id
    after_commit(session, lambda: enqueue_export(history_id, partition))
    return record, history


# Mailbox selections: CSV files and pushes to a platform


def _selection_query(workspace_id: str, data: MailboxExportRequest) -> Select[Any]:
    filters = MailboxFilters(
        status=data.status,
        pool_id=data.pool_id,
        domain=data.domain.strip() if data.domain else None,
        search=data.search,
        tags=data.tags,
    )
    return MailboxRepository.filtered(workspace_id, filters)


def _named(query: Select[Any], mailbox_ids: Sequence[str]) -> Iterator[Select[Any]]:
    """`query` narrowed to the named mailboxes, a bounded IN list at a time."""
    ids = list(dict.fromkeys(mailbox_ids))
    for start in range(0, len(ids), _IN_BATCH):
        yield query.where(Mailbox.id.in_(ids[start : start + _IN_BATCH]))


async def select_mailboxes(
    session: AsyncSession, workspace_id: str, data: MailboxExportRequest
) -> list[Mailbox]:
    """The workspace's mailboxes matching every filter given, oldest first."""
    query = _selection_query(workspace_id, data)
    found: dict[str, Mailbox] = {}
    if data.mailbox_ids is not None:
        for named in _named(query, data.mailbox_ids):
            rows = await session.scalars(named)
            found.update({mailbox.id: mailbox for mailbox in rows})
    else:
        rows = await session.scalars(query.limit(MAX_SELECTION + 1))
        found = {mailbox.id: mailbox for mailbox in rows}
    if len(found) > MAX_SELECTION:
        raise ValidationFailed.for_field(
            "body", f"More than {MAX_SELECTION} mailboxes match; narrow the selection"
        )
    if not found:
        raise ValidationFailed.for_field("body", "No mailboxes match the selection")
    return sorted(found.values(), key=lambda mailbox: (mailbox.created_at, mailbox.id))


# What a CSV row is made of, read as plain rows: building (and dropping) a mapped
# Mailbox with all its columns for each took most of an export's time.
_CSV_COLUMNS: Final = (
    Mailbox.id,
    Mailbox.email,
    Mailbox.display_name,
    Mailbox.provider,
    Mailbox.daily_send_limit,
    Mailbox.signature,
    *LOGIN_COLUMNS,
)


def _csv_row(row: Any, tags: Sequence[str], keyring: Keyring | None) -> MailboxRow:
    # Unpacked by position (the order of _CSV_COLUMNS), not read by name: 16 named
    # reads of a Row per mailbox were a tenth of a 100,000-mailbox export.
    (
        _,
        email,
        display_name,
        provider,
        daily_send_limit,
        signature,
        smtp_host,
        smtp_port,
        smtp_secure,
        smtp_username,
        smtp_password_enc,
        imap_host,
        imap_port,
        imap_secure,
        imap_username,
        imap_password_enc,
    ) = row
    smtp_password = imap_password = None
    if keyring is not None:
        smtp_password = keyring.decrypt(smtp_password_enc)
        imap_password = keyring.decrypt(imap_password_enc)
    return MailboxRow(
        email=email,
        display_name=display_name,
        provider=provider,
        daily_limit=daily_send_limit,
        tags=tuple(tags),
        signature=signature,
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        smtp_secure=smtp_secure,
        smtp_username=smtp_username,
        imap_host=imap_host,
        imap_port=imap_port,
        imap_secure=imap_secure,
        imap_username=imap_username,
        smtp_password=smtp_password,
        imap_password=imap_password,
    )


@dataclass(frozen=True)
class CsvExport:
    """A CSV export recorded in the history, whose rows are still to be written."""

    history: ExportHistory
    workspace_id: str
    selection: MailboxExportRequest
    layout: Layout
    # None when the file leaves passwords out.
    keyring: Keyring | None


async def _count_selection(
    session: AsyncSession, workspace_id: str, data: MailboxExportRequest
) -> int:
    query = _selection_query(workspace_id, data)
    if data.mailbox_ids is None:
        return await MailboxRepository(session).count(query)
    repository = MailboxRepository(session)
    return sum([await repository.count(named) for named in _named(query, data.mailbox_ids)])


async def begin_csv_export(
    session: AsyncSession,
    keyring: Keyring,
    workspace_id: str,
    user_id: str,
    role: str,
    data: MailboxExportRequest,
) -> CsvExport:
    """Check the selection and record its export; `csv_chunks` then writes the file.

    Passwords are decrypted only into this file, and only for owners and admins
    (by default for them; `includeCredentials: false` leaves them out). The file is
    written as it is read, so it has no size cap: 100,000 mailboxes take the memory
    of one batch (bench/fleet.py)."""
    include = data.include_credentials
    if include is None:
        include = role in PRIVILEGED_ROLES
    elif include:
        _require_privileged(role, "export mailbox credentials")
    total = await _count_selection(session, workspace_id, data)
    if not total:
        raise ValidationFailed.for_field("body", "No mailboxes match the selection")
    layout: Layout = data.layout
    history = ExportHistory(
        workspace_id=workspace_id,
        job_id=new_job_id(),
        platform=layout,
        source="csv",
        status=ExportStatus.COMPLETED,
        total=total,
        connected_count=total,
        failed_count=0,
        layout=layout,
        credentials_included=include,
        created_by=user_id,
        finished_at=utcnow(),
    )
    await _add_history(session, history)
    log.info(
        "CSV export %s of %d mailboxes (layout %s, credentials %s) by user %s",
        history.id,
        total,
        layout,
        "included" if include else "left out",
        user_id,
    )
    return CsvExport(history, workspace_id, data, layout, keyring if include else None)


async def _selected_batches(
    session: AsyncSession, workspace_id: str, data: MailboxExportRequest
) -> AsyncIterator[Sequence[Any]]:
    """The selection oldest first, `_CSV_BATCH` rows at a time, never all at once."""
    query = _selection_query(workspace_id, data)
    columns = query.with_only_columns(*_CSV_COLUMNS)
    if data.mailbox_ids is None:
        ordered = columns.order_by(Mailbox.created_at, Mailbox.id)
        # A server-side cursor (PostgreSQL) or a stepped one (SQLite): rows arrive as
        # they are written out.
        result = await session.stream(ordered.execution_options(yield_per=_CSV_BATCH))
        async for batch in result.partitions():
            yield batch
        return
    # Named mailboxes: their order first (two short columns each), then the rows.
    keys: list[tuple[Any, str]] = []
    for named in _named(query, data.mailbox_ids):
        rows = await session.execute(named.with_only_columns(Mailbox.created_at, Mailbox.id))
        keys.extend((created_at, mailbox_id) for created_at, mailbox_id in rows)
    ordered_ids = [mailbox_id for _, mailbox_id in sorted(keys)]
    for start in range(0, len(ordered_ids), _CSV_BATCH):
        chunk = ordered_ids[start : start + _CSV_BATCH]
        found = {row.id: row for row in await session.execute(columns.where(Mailbox.id.in_(chunk)))}
        yield [found[mailbox_id] for mailbox_id in chunk if mailbox_id in found]


class _TagNames:
    """Each mailbox's tag names, sorted by name as the database sorts them, a batch at
    a time: the workspace's tags (a few dozen) are read once, in that order, and each
    batch reads only its mailbox_tags links (an index range per mailbox, no join, no
    sort). A tag the links name but the first read missed (created since) reads the
    tags again."""

    def __init__(self, session: AsyncSession, workspace_id: str) -> None:
        self.session = session
        self.workspace_id = workspace_id
        self.ranked: dict[str, tuple[int, str]] = {}

    async def _read_tags(self) -> None:
        rows = await self.session.execute(
            select(Tag.id, Tag.name).where(Tag.workspace_id == self.workspace_id).order_by(Tag.name)
        )
        self.ranked = {tag_id: (rank, name) for rank, (tag_id, name) in enumerate(rows)}

    async def of(self, mailbox_ids: Sequence[str]) -> dict[str, list[str]]:
        links = (
            await self.session.execute(
                select(mailbox_tags.c.mailbox_id, mailbox_tags.c.tag_id).where(
                    mailbox_tags.c.mailbox_id.in_(mailbox_ids)
                )
            )
        ).all()
        if any(tag_id not in self.ranked for _, tag_id in links):
            await self._read_tags()
        ranked: dict[str, list[tuple[int, str]]] = {}
        for mailbox_id, tag_id in links:
            if (tag := self.ranked.get(tag_id)) is not None:
                ranked.setdefault(mailbox_id, []).append(tag)
        return {
            mailbox_id: [name for _, name in sorted(tags)] for mailbox_id, tags in ranked.items()
        }


async def csv_chunks(session: AsyncSession, export: CsvExport) -> AsyncIterator[str]:
    """The export's CSV text: the header row, then one piece per batch of mailboxes."""
    yield render_csv(export.layout, [])
    tag_names = _TagNames(session, export.workspace_id)
    async for batch in _selected_batches(session, export.workspace_id, export.selection):
        tags = await tag_names.of([row[0] for row in batch])
        rows = (_csv_row(row, tags.get(row[0], ()), export.keyring) for row in batch)
        yield render_csv(export.layout, rows, header=False)


async def push_export(
    session: AsyncSession,
    workspace_id: str,
    user_id: str,
    data: MailboxExportRequest,
    *,
    idempotency_key: str | None = None,
) -> tuple[ExportHistory, bool]:
    """Queue the export of the selection to a platform account; the history row, and
    whether this call created it (False: an earlier one with the same key did)."""
    assert data.platform_account_id is not None
    if {"layout", "include_credentials"} & data.model_fields_set:
        raise ValidationFailed.for_field(
            "platformAccountId", "layout and includeCredentials are for CSV exports"
        )
    previous = await _history_by_key(session, workspace_id, idempotency_key)
    if previous is not None:
        return previous, False
    account = await get_account(session, workspace_id, data.platform_account_id)
    selected = await select_mailboxes(session, workspace_id, data)
    history = ExportHistory(
        workspace_id=workspace_id,
        job_id=new_job_id(),
        platform=account.platform,
        source="api",
        status=ExportStatus.IN_PROGRESS,
        total=len(selected),
        connected_count=0,
        failed_count=0,
        platform_account_id=account.id,
        credentials_included=False,
        created_by=user_id,
        idempotency_key=idempotency_key,
    )
    await _add_history(session, history)
    await _insert_items(
        session,
        [
            {
                "history_id": history.id,
                "position": position,
                "email": mailbox.email,
                "name": None,
                "mailbox_id": mailbox.id,
                "connection_enc": None,
            }
            for position, mailbox in enumerate(selected)
        ],
    )
    history_id, partition = history.id, account.id
    after_commit(session, lambda: enqueue_export(history_id, partition))
    return history, True


# Export history


@dataclass(frozen=True)
class HistoryFilters:
    platform: str | None = None
    status: str | None = None
    job_id: str | None = None
    source: str | None = None


async def list_histories(
    session: AsyncSession, workspace_id: str, filters: HistoryFilters, page: Page
) -> tuple[list[ExportHistory], int]:
    if filters.status is not None and filters.status not in EXPORT_STATUSES:
        raise ValidationFailed(
            f"status must be one of {', '.join(EXPORT_STATUSES)}",
            [{"field": "status", "in": "query", "message": "unknown status"}],
        )
    repository = ExportHistoryRepository(session)
    query = repository.owned_by(workspace_id)
    if filters.platform:
        query = query.where(ExportHistory.platform == filters.platform.strip().lower())
    if filters.status:
        query = query.where(ExportHistory.status == filters.status)
    if filters.job_id:
        query = query.where(ExportHistory.job_id == filters.job_id.strip().upper())
    if filters.source:
        query = query.where(ExportHistory.source == filters.source)
    return await repository.newest_first(query, page)


async def get_history(session: AsyncSession, workspace_id: str, history_id: str) -> ExportHistory:
    """By id, or by job id."""
    repository = ExportHistoryRepository(session)
    query = repository.owned_by(workspace_id).where(
        or_(ExportHistory.id == history_id, ExportHistory.job_id == history_id.upper())
    )
    return await repository.one(query, history_id)


def _results_of(history: ExportHistory) -> Select[ExportItem]:
    return (
        select(ExportItem).where(ExportItem.history_id == history.id).order_by(ExportItem.position)
    )


async def history_results(
    session: AsyncSession, history: ExportHistory, *, limit: int | None = None
) -> list[ExportItem]:
    """Each inbox's result in the export's order (the first `limit`, if given)."""
    return list(await session.scalars(_results_of(history).limit(limit)))


async def history_result_counts(session: AsyncSession, history: ExportHistory) -> tuple[int, int]:
    """How many inboxes the export holds, and how many of them are still pending."""
    pending = func.count().filter(ExportItem.status == ExportItemStatus.PENDING)
    row = (
        await session.execute(
            select(func.count(), pending).where(ExportItem.history_id == history.id)
        )
    ).one()
    return int(row[0]), int(row[1])


async def stream_history_results(
    session: AsyncSession, history: ExportHistory, batch: int = 1000
) -> AsyncIterator[Sequence[ExportItem]]:
    """Each inbox's result in the export's order, `batch` at a time, each batch
    expunged once yielded: however long the export, one batch in memory."""
    result = await session.stream_scalars(_results_of(history).execution_options(yield_per=batch))
    async for items in result.partitions():
        yield items
        for item in items:
            session.expunge(item)


async def record_external_export(
    session: AsyncSession,
    workspace_id: str,
    user_id: str,
    data: ExportHistoryCreate,
    *,
    idempotency_key: str | None = None,
) -> tuple[ExportHistory, bool]:
    previous = await _history_by_key(session, workspace_id, idempotency_key)
    if previous is not None:
        return previous, False
    job_id = data.job_id.upper() if data.job_id else new_job_id()
    if await session.scalar(
        select(ExportHistory.id).where(
            ExportHistory.workspace_id == workspace_id, ExportHistory.job_id == job_id
        )
    ):
        raise Conflict(f"An export with jobId {job_id} already exists")
    listed = list({item.email: item for item in data.mailboxes or []}.values())
    total = data.total_mailboxes if data.total_mailboxes is not None else len(listed)
    if listed:
        connected = sum(1 for item in listed if item.status == "connected")
        failed = len(listed) - connected
    else:
        connected = total if data.export_status == "COMPLETED" else 0
        failed = total if data.export_status == "FAILED" else 0
    now = utcnow()
    history = ExportHistory(
        workspace_id=workspace_id,
        job_id=job_id,
        platform=data.platform,
        source="external",
        status=data.export_status,
        total=total,
        connected_count=connected,
        failed_count=failed,
        workspace_name=data.workspace_name,
        note=data.note,
        credentials_included=False,
        created_by=user_id,
        idempotency_key=idempotency_key,
        finished_at=now,
    )
    await _add_history(session, history)
    known = await _existing_mailboxes(session, workspace_id, [item.email for item in listed])
    await _insert_items(
        session,
        [
            {
                "history_id": history.id,
                "position": position,
                "email": item.email,
                "mailbox_id": known.get(item.email),
                "status": item.status,
                "message": item.message,
                "finished_at": now,
            }
            for position, item in enumerate(listed)
        ],
    )
    return history, True


# The export workflow's work (called from job steps; each opens its own transactions)


async def unfinished_exports(session: AsyncSession, limit: int = 500) -> list[tuple[str, str]]:
    """(history id, partition key) of exports Mailfleet runs that have not finished."""
    rows = await session.execute(
        select(ExportHistory.id, ExportHistory.platform_account_id)
        .where(
            ExportHistory.status == ExportStatus.IN_PROGRESS,
            ExportHistory.source.in_(("connect-inbox", "api")),
        )
        .order_by(ExportHistory.created_at)
        .limit(limit)
    )
    return [(history_id, account_id or history_id) for history_id, account_id in rows]
