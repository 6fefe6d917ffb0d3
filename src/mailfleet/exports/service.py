"""Exports: platform accounts, connect-inbox, mailbox exports (CSV or a platform), history.

A request records what to export (a history row IN_PROGRESS and one item per
inbox) and enqueues one durable workflow after commit (`workflows.run_export`),
whose steps call the second half of this module. A sweeper re-enqueues exports
whose enqueue a crash lost, under the same workflow id.

Secrets: platform API keys and logins, and the passwords connect-inbox hands
over, are keyring ciphertext at rest. A connect-inbox password is kept on its
item only until that inbox's result is known. Workflow arguments and step
results never carry a secret: DBOS stores them in its database in the clear.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import httpx
from pydantic import ValidationError
from sqlalchemy import Select, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet import jobs
from mailfleet.config import Settings
from mailfleet.db import Database, after_commit
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
from mailfleet.kit.clock import isoformat, utcnow
from mailfleet.kit.crypto import Keyring, SecretDecryptError
from mailfleet.kit.errors import Conflict, Forbidden, MailfleetError, ValidationFailed
from mailfleet.kit.ids import new_id
from mailfleet.kit.netguard import NetguardError, guard_url
from mailfleet.kit.pagination import Page
from mailfleet.mail.discovery import Discoverer, apply_discovery
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailboxes.repository import MailboxFilters, MailboxRepository
from mailfleet.mailboxes.schemas import ImapIn, MailboxCreate, SmtpIn
from mailfleet.models import (
    EXPORT_STATUSES,
    ConnectInboxRecord,
    ExportHistory,
    ExportItem,
    ExportItemStatus,
    ExportStatus,
    Mailbox,
    PlatformAccount,
)
from mailfleet.platforms import ADAPTERS, adapter_for
from mailfleet.platforms.base import (
    AccountAccess,
    Inbox,
    InboxResult,
    PlatformAdapter,
    ServerLogin,
    Validation,
)
from mailfleet.platforms.csv_formats import Layout, MailboxRow, render_csv
from mailfleet.platforms.http import HttpPolicy
from mailfleet.webhooks import events
from mailfleet.webhooks import service as webhooks

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
    from mailfleet.exports.workflows import run_export

    await jobs.enqueue(
        EXPORT_QUEUE,
        run_export,
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


def require_account_manager(role: str) -> None:
    _require_privileged(role, "manage platform accounts")


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


def _connect_inbox_secret(item: ConnectInboxItem, inbox_type: str | None) -> dict[str, Any]:
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


def connect_inbox_answer(record: ConnectInboxRecord, history: ExportHistory) -> dict[str, Any]:
    """The seed's response, key for key."""
    return {
        "status": 200,
        "message": CONNECT_INBOX_MESSAGE,
        "data": {
            "record": {
                "id": record.id,
                "platform": record.platform,
                "email": record.platform_email,
                "workspaceName": record.workspace_name,
                "selectedMailboxes": record.selected_mailboxes,
            },
            "exportHistory": {
                "id": history.id,
                "jobId": history.job_id,
                "totalMailboxes": history.total,
                "platform": history.platform,
                "exportStatus": history.status,
                "createdAt": isoformat(history.created_at),
            },
        },
    }


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


async def select_mailboxes(
    session: AsyncSession, workspace_id: str, data: MailboxExportRequest
) -> list[Mailbox]:
    """The workspace's mailboxes matching every filter given, oldest first."""
    query = _selection_query(workspace_id, data)
    found: dict[str, Mailbox] = {}
    if data.mailbox_ids is not None:
        ids = list(dict.fromkeys(data.mailbox_ids))
        for start in range(0, len(ids), _IN_BATCH):
            rows = await session.scalars(
                query.where(Mailbox.id.in_(ids[start : start + _IN_BATCH]))
            )
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


def _csv_row(mailbox: Mailbox, keyring: Keyring | None) -> MailboxRow:
    smtp_password = imap_password = None
    if keyring is not None:
        credentials = mailboxes.mailbox_credentials(mailbox, keyring)
        smtp_password, imap_password = credentials.smtp.password, credentials.imap.password
    return MailboxRow(
        email=mailbox.email,
        display_name=mailbox.display_name,
        provider=mailbox.provider,
        daily_limit=mailbox.daily_send_limit,
        tags=tuple(tag.name for tag in mailbox.tags),
        signature=mailbox.signature,
        smtp_host=mailbox.smtp_host,
        smtp_port=mailbox.smtp_port,
        smtp_secure=mailbox.smtp_secure,
        smtp_username=mailbox.smtp_username,
        imap_host=mailbox.imap_host,
        imap_port=mailbox.imap_port,
        imap_secure=mailbox.imap_secure,
        imap_username=mailbox.imap_username,
        smtp_password=smtp_password,
        imap_password=imap_password,
    )


async def export_csv(
    session: AsyncSession,
    keyring: Keyring,
    workspace_id: str,
    user_id: str,
    role: str,
    data: MailboxExportRequest,
) -> tuple[str, ExportHistory]:
    """The selection as CSV in `data.layout`, and the history row that records it.

    Passwords are decrypted only into this file, and only for owners and admins
    (by default for them; `includeCredentials: false` leaves them out)."""
    include = data.include_credentials
    if include is None:
        include = role in PRIVILEGED_ROLES
    elif include:
        _require_privileged(role, "export mailbox credentials")
    selected = await select_mailboxes(session, workspace_id, data)
    layout: Layout = data.layout
    text = render_csv(layout, (_csv_row(m, keyring if include else None) for m in selected))
    now = utcnow()
    history = ExportHistory(
        workspace_id=workspace_id,
        job_id=new_job_id(),
        platform=layout,
        source="csv",
        status=ExportStatus.COMPLETED,
        total=len(selected),
        connected_count=len(selected),
        failed_count=0,
        layout=layout,
        credentials_included=include,
        created_by=user_id,
        finished_at=now,
    )
    await _add_history(session, history)
    log.info(
        "CSV export %s of %d mailboxes (layout %s, credentials %s) by user %s",
        history.id,
        len(selected),
        layout,
        "included" if include else "left out",
        user_id,
    )
    return text, history


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


async def history_results(session: AsyncSession, history: ExportHistory) -> list[ExportItem]:
    rows = await session.scalars(
        select(ExportItem).where(ExportItem.history_id == history.id).order_by(ExportItem.position)
    )
    return list(rows)


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


async def _load_running(
    session: AsyncSession, history_id: str
) -> tuple[ExportHistory, PlatformAccount | None] | None:
    history = await session.get(ExportHistory, history_id)
    if history is None or history.status != ExportStatus.IN_PROGRESS:
        return None
    account = (
        await session.get(PlatformAccount, history.platform_account_id)
        if history.platform_account_id
        else None
    )
    return history, account


def _missing_account_reason(
    account: PlatformAccount | None, keyring: Keyring, settings: Settings
) -> str | None:
    if account is None:
        return "The platform account was deleted before the export ran"
    try:
        adapter = adapter_of(account, keyring, settings)
    except SecretDecryptError:
        return "The platform account's credentials cannot be decrypted (unknown key)"
    missing = adapter.missing_credentials()
    if missing is not None:
        return f"{missing}: add one with PUT /v1/exports/accounts/{account.id}"
    return None


async def plan_export(
    database: Database, keyring: Keyring, settings: Settings, history_id: str
) -> dict[str, Any]:
    """The batches to send, or why nothing can be sent; `skip` when already finished."""
    async with database.transaction() as session:
        loaded = await _load_running(session, history_id)
        if loaded is None:
            return {"skip": True}
        history, account = loaded
        reason = _missing_account_reason(account, keyring, settings)
        if reason is not None or account is None:
            return {"fatal": reason, "batches": []}
        adapter_class = ADAPTERS[account.platform]
        count = (
            await session.scalar(select(func.count()).where(ExportItem.history_id == history.id))
            or 0
        )
    size = adapter_class.batch_size
    return {
        "batches": [[start, min(start + size, count)] for start in range(0, count, size)],
        "label": adapter_class.label,
        "pollInterval": settings.export_poll_interval,
        "pollTimeout": settings.export_poll_timeout,
    }


def _pending_in(history_id: str, start: int, end: int) -> Select[ExportItem]:
    return (
        select(ExportItem)
        .where(
            ExportItem.history_id == history_id,
            ExportItem.position >= start,
            ExportItem.position < end,
            ExportItem.status == ExportItemStatus.PENDING,
        )
        .order_by(ExportItem.position)
    )


_discoverers: dict[int, Discoverer] = {}


def _discoverer(settings: Settings) -> Discoverer:
    # One per process (per settings object), so its cache serves every inbox of
    # every export: a batch of one domain looks its servers up once.
    key = id(settings)
    if key not in _discoverers:
        _discoverers[key] = Discoverer(
            nameservers=settings.dns_nameservers or None,
            allow_private=settings.allow_private_networks,
            tls_ca_file=settings.tls_ca_file,
        )
    return _discoverers[key]


_SERVER_KEYS: Final = ("smtpHost", "smtpPort", "imapHost", "imapPort")


async def _mail_settings(settings: Settings, email: str, given: dict[str, Any]) -> dict[str, Any]:
    """SMTP/IMAP servers of an inbox: what the request gave, the rest discovered.
    Raises _Unexportable saying what is missing."""
    explicit: dict[str, Any] = {key: given.get(key) for key in _SERVER_KEYS}
    provider: str | None = given.get("provider")
    found_provider: str | None = None
    if not (explicit["smtpHost"] and explicit["imapHost"]):
        try:
            result = await _discoverer(settings).discover(email, provider)
        except ValueError as exc:
            raise _Unexportable(f"Cannot look up mail settings of {email}: {exc}") from None
        explicit, _ = apply_discovery(explicit, result)
        found_provider = result.provider
    # SendKit's defaults for a host given without its port.
    if explicit["smtpHost"] and not explicit["smtpPort"]:
        explicit["smtpPort"] = 587
    if explicit["imapHost"] and not explicit["imapPort"]:
        explicit["imapPort"] = 993
    missing = [key for key in _SERVER_KEYS if not explicit.get(key)]
    if missing:
        domain = email.rsplit("@", 1)[-1]
        raise _Unexportable(
            f"Could not find the mail servers of {domain} ({', '.join(missing)} missing): "
            "give inbox_type (google, microsoft, ...) or smtp_host and imap_host for it"
        )
    return {
        "provider": (found_provider or (provider or "custom")).lower()[:40],
        "smtp": {
            "host": explicit["smtpHost"],
            "port": int(explicit["smtpPort"]),
            "secure": bool(explicit.get("smtpSecure", True)),
        },
        "imap": {
            "host": explicit["imapHost"],
            "port": int(explicit["imapPort"]),
            "secure": bool(explicit.get("imapSecure", True)),
        },
    }


class _Unexportable(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


async def _fail_items(database: Database, item_ids: list[str], reasons: dict[str, str]) -> None:
    async with database.transaction() as session:
        now = utcnow()
        for item_id in item_ids:
            item = await session.get(ExportItem, item_id)
            if item is not None and item.status == ExportItemStatus.PENDING:
                item.status, item.message = "failed", reasons[item_id][:1000]
                item.connection_enc, item.finished_at = None, now


async def _create_inbox_mailbox(
    database: Database,
    keyring: Keyring,
    workspace_id: str,
    item_id: str,
    email: str,
    name: str | None,
    password: str,
    servers: dict[str, Any],
) -> None:
    """Make the inbox a Mailfleet mailbox (queued for its connection test as any new
    one) and keep the settings the export sends with on its item."""
    ready = json.dumps({"ready": True, **servers, "password": password})
    try:
        data = MailboxCreate(
            email=email,
            display_name=name,
            provider=servers["provider"],
            smtp=SmtpIn(**servers["smtp"], username=email, password=password),
            imap=ImapIn(**servers["imap"], username=email, password=password),
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:3]
        )
        await _fail_items(database, [item_id], {item_id: f"Invalid inbox settings: {problems}"})
        return
    try:
        async with database.transaction() as session:
            item = await session.get(ExportItem, item_id)
            if (
                item is None
                or item.status != ExportItemStatus.PENDING
                or item.mailbox_id is not None
            ):
                return
            mailbox = await mailboxes.create_mailbox(session, keyring, workspace_id, data)
            item.mailbox_id = mailbox.id
            item.connection_enc = keyring.encrypt(ready)
        return
    except Conflict:
        pass  # It became a mailbox since the request: export it with the password given.
    except MailfleetError as exc:
        await _fail_items(database, [item_id], {item_id: exc.message})
        return
    async with database.transaction() as session:
        item = await session.get(ExportItem, item_id)
        if item is None or item.status != ExportItemStatus.PENDING:
            return
        item.mailbox_id = await session.scalar(
            select(Mailbox.id).where(Mailbox.workspace_id == workspace_id, Mailbox.email == email)
        )
        item.connection_enc = keyring.encrypt(ready)


async def prepare_inboxes(
    database: Database, keyring: Keyring, settings: Settings, history_id: str, start: int, end: int
) -> None:
    """Connect-inbox inboxes of this batch that Mailfleet does not have: find their
    servers, make them mailboxes. Idempotent: an item done before is skipped."""
    async with database.transaction() as session:
        loaded = await _load_running(session, history_id)
        if loaded is None:
            return
        workspace_id = loaded[0].workspace_id
        todo: list[tuple[str, str, str | None, dict[str, Any]]] = []
        for item in await session.scalars(_pending_in(history_id, start, end)):
            if item.connection_enc is None:
                continue
            given = json.loads(keyring.decrypt(item.connection_enc))
            if not given.get("ready"):
                todo.append((item.id, item.email, item.name, given))
    if not todo:
        return

    async def settings_of(email: str, given: dict[str, Any]) -> dict[str, Any] | str:
        try:
            return await _mail_settings(settings, email, given)
        except _Unexportable as exc:
            return exc.message

    found = await asyncio.gather(*(settings_of(email, given) for _, email, _, given in todo))
    failures = {
        item_id: f for (item_id, *_), f in zip(todo, found, strict=True) if isinstance(f, str)
    }
    if failures:
        await _fail_items(database, list(failures), failures)

    async def create_all() -> None:
        for (item_id, email, name, given), servers in zip(todo, found, strict=True):
            if isinstance(servers, dict):
                await _create_inbox_mailbox(
                    database,
                    keyring,
                    workspace_id,
                    item_id,
                    email,
                    name,
                    given["password"],
                    servers,
                )

    await create_all()


def _login(server: dict[str, Any], username: str, password: str) -> ServerLogin:
    return ServerLogin(
        server["host"], int(server["port"]), bool(server["secure"]), username, password
    )


async def _inbox_of(session: AsyncSession, keyring: Keyring, item: ExportItem) -> Inbox:
    mailbox = await session.get(Mailbox, item.mailbox_id) if item.mailbox_id else None
    try:
        if item.connection_enc is not None:
            given = json.loads(keyring.decrypt(item.connection_enc))
            if not given.get("ready"):
                raise _Unexportable("Its mail servers were not found")
            password = given["password"]
            return Inbox(
                email=item.email,
                display_name=item.name or item.email.split("@", 1)[0],
                provider=given["provider"],
                daily_limit=mailbox.daily_send_limit if mailbox else 15,
                smtp=_login(given["smtp"], item.email, password),
                imap=_login(given["imap"], item.email, password),
            )
        if mailbox is None:
            raise _Unexportable("The mailbox was deleted before it was exported")
        credentials = mailboxes.mailbox_credentials(mailbox, keyring)
    except SecretDecryptError:
        raise _Unexportable("Its stored password cannot be decrypted (unknown key)") from None
    return Inbox(
        email=mailbox.email,
        display_name=item.name or mailbox.display_name,
        provider=mailbox.provider,
        daily_limit=mailbox.daily_send_limit,
        smtp=ServerLogin(
            mailbox.smtp_host,
            mailbox.smtp_port,
            mailbox.smtp_secure,
            mailbox.smtp_username,
            credentials.smtp.password,
        ),
        imap=ServerLogin(
            mailbox.imap_host,
            mailbox.imap_port,
            mailbox.imap_secure,
            mailbox.imap_username,
            credentials.imap.password,
        ),
        signature=mailbox.signature,
        tags=tuple(tag.name for tag in mailbox.tags),
    )


async def _record_results(
    session: AsyncSession, history_id: str, start: int, end: int, results: list[InboxResult]
) -> None:
    """Settle pending items of the batch with their results (a settled one stays)."""
    by_email = {result.email.lower(): result for result in results}
    now = utcnow()
    for item in await session.scalars(_pending_in(history_id, start, end)):
        result = by_email.get(item.email.lower())
        if result is None:
            continue
        item.status = ExportItemStatus.CONNECTED if result.connected else ExportItemStatus.FAILED
        item.message = result.message[:1000]
        item.remote_id = result.remote_id[:200] if result.remote_id else None
        item.connection_enc = None
        item.finished_at = now
    await session.flush()
    await _refresh_counts(session, history_id)


async def _refresh_counts(session: AsyncSession, history_id: str) -> ExportHistory | None:
    history = await session.get(ExportHistory, history_id)
    if history is None:
        return None
    rows = await session.execute(
        select(ExportItem.status, func.count())
        .where(ExportItem.history_id == history_id)
        .group_by(ExportItem.status)
    )
    counts: dict[str, int] = {status: count for status, count in rows}
    history.connected_count = counts.get("connected", 0)
    history.failed_count = counts.get("failed", 0)
    history.updated_at = utcnow()
    return history


async def export_batch(
    database: Database,
    keyring: Keyring,
    settings: Settings,
    history_id: str,
    start: int,
    end: int,
    carry: dict[str, str],
) -> dict[str, Any]:
    """Send one batch; `requestId` when the platform answers it in the background,
    `fatal` when the account itself was refused."""
    await prepare_inboxes(database, keyring, settings, history_id, start, end)
    inboxes: list[Inbox] = []
    failures: list[InboxResult] = []
    async with database.transaction() as session:
        loaded = await _load_running(session, history_id)
        if loaded is None:
            return {"carry": carry}
        _, account = loaded
        reason = _missing_account_reason(account, keyring, settings)
        if reason is not None or account is None:
            return {"carry": carry, "fatal": reason}
        adapter = adapter_of(account, keyring, settings)
        for item in await session.scalars(_pending_in(history_id, start, end)):
            if item.request_id:
                # Submitted by an earlier run of this step: wait for that request.
                return {"carry": carry, "requestId": item.request_id}
            try:
                inboxes.append(await _inbox_of(session, keyring, item))
            except _Unexportable as exc:
                failures.append(InboxResult(item.email, False, exc.message))
        if failures:
            await _record_results(session, history_id, start, end, failures)
    if not inboxes:
        return {"carry": carry}
    submission = await adapter.submit(inboxes, carry)
    async with database.transaction() as session:
        await _record_results(session, history_id, start, end, submission.results)
        if submission.request_id:
            waiting = [inbox.email for inbox in inboxes]
            await session.execute(
                update(ExportItem)
                .where(
                    ExportItem.history_id == history_id,
                    ExportItem.position >= start,
                    ExportItem.position < end,
                    ExportItem.status == ExportItemStatus.PENDING,
                    ExportItem.email.in_(waiting),
                )
                .values(request_id=submission.request_id[:200])
            )
    log.info(
        "export %s batch %d-%d: %d sent, %d settled%s",
        history_id,
        start,
        end,
        len(inboxes),
        len(submission.results),
        f", waiting for request {submission.request_id}" if submission.request_id else "",
    )
    return {
        "carry": submission.carry,
        "requestId": submission.request_id,
        "fatal": submission.fatal,
    }


async def poll_batch(
    database: Database,
    keyring: Keyring,
    settings: Settings,
    history_id: str,
    start: int,
    end: int,
    request_id: str,
) -> bool:
    """Ask the platform about a batch it connects in the background; True once settled."""
    async with database.transaction() as session:
        loaded = await _load_running(session, history_id)
        if loaded is None or loaded[1] is None:
            return True
        adapter = adapter_of(loaded[1], keyring, settings)
        emails = [
            item.email
            for item in await session.scalars(_pending_in(history_id, start, end))
            if item.request_id == request_id
        ]
    if not emails:
        return True
    poll = await adapter.poll(request_id, emails)
    if not poll.done:
        return False
    answered = {result.email.lower() for result in poll.results}
    unanswered = [
        InboxResult(email, False, f"{adapter.label} did not report on it")
        for email in emails
        if email.lower() not in answered
    ]
    async with database.transaction() as session:
        await _record_results(session, history_id, start, end, [*poll.results, *unanswered])
    return True


async def fail_batch(
    database: Database, history_id: str, start: int, end: int, reason: str
) -> None:
    async with database.transaction() as session:
        pending = list(await session.scalars(_pending_in(history_id, start, end)))
        await _record_results(
            session,
            history_id,
            start,
            end,
            [InboxResult(item.email, False, reason) for item in pending],
        )


def final_status(total: int, connected: int) -> str:
    if total > 0 and connected == total:
        return "COMPLETED"
    if connected == 0:
        return "FAILED"
    return "PARTIAL"


async def finish_export(database: Database, history_id: str, reason: str | None) -> str:
    """Settle what is left (failed, with `reason`), erase the passwords connect-inbox
    handed over, and set the final status. Idempotent."""
    async with database.transaction() as session:
        history = await session.get(ExportHistory, history_id)
        if history is None:
            return "missing"
        if history.status != ExportStatus.IN_PROGRESS:
            return history.status
        now = utcnow()
        await session.execute(
            update(ExportItem)
            .where(
                ExportItem.history_id == history_id, ExportItem.status == ExportItemStatus.PENDING
            )
            .values(
                status=ExportItemStatus.FAILED, message=(reason or _STOPPED)[:1000], finished_at=now
            )
        )
        await session.execute(
            update(ExportItem)
            .where(ExportItem.history_id == history_id, ExportItem.connection_enc.is_not(None))
            .values(connection_enc=None)
        )
        await _refresh_counts(session, history_id)
        history.status = final_status(history.total, history.connected_count)
        history.error = reason[:1000] if reason else None
        history.finished_at = now
        await webhooks.emit(
            session,
            history.workspace_id,
            events.EXPORT_COMPLETED,
            {
                "exportId": history.id,
                "jobId": history.job_id,
                "platform": history.platform,
                "status": history.status,
                "total": history.total,
                "succeeded": history.connected_count,
                "failed": history.failed_count,
            },
        )
        status = history.status
    log.info("export %s finished: %s", history_id, status)
    return status


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
