"""The export workflow's steps: plan, prepare and send batches, poll, finish.

Each opens its own transactions (a step commits what it did before the next
one runs) and is idempotent: it re-reads the export and its items and does
nothing for an inbox already settled. Step results are JSON that DBOS stores in
the clear: never a secret.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Final, TypedDict

from pydantic import ValidationError
from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.exports.service import (
    _STOPPED,
    InboxSecret,
    ServerAddress,
    adapter_of,
)
from mailfleet.kit.clock import utcnow
from mailfleet.kit.crypto import Keyring, SecretDecryptError
from mailfleet.kit.errors import Conflict, MailfleetError
from mailfleet.mail.discovery import Discoverer, apply_discovery
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailboxes.schemas import ImapIn, MailboxCreate, SmtpIn
from mailfleet.models import (
    ExportHistory,
    ExportItem,
    ExportItemStatus,
    ExportStatus,
    Mailbox,
    PlatformAccount,
)
from mailfleet.platforms import ADAPTERS
from mailfleet.platforms.base import (
    Inbox,
    InboxResult,
    ServerLogin,
)
from mailfleet.webhooks import events
from mailfleet.webhooks import service as webhooks

log = logging.getLogger(__name__)


class ExportPlan(TypedDict, total=False):
    """`plan_export`'s result: the batches ([start, end) item positions) and how to
    poll a platform that connects in the background; `skip` when the export had
    already finished, `fatal` when nothing can be sent."""

    skip: bool
    fatal: str | None
    batches: list[list[int]]
    label: str
    pollInterval: float
    pollTimeout: float


class BatchOutcome(TypedDict, total=False):
    """`export_batch`'s result: what the platform carries to the next batch,
    `requestId` when it answers in the background, `fatal` when it refused the
    account itself."""

    carry: dict[str, str]
    fatal: str | None
    requestId: str | None


class FoundServers(TypedDict):
    provider: str
    smtp: ServerAddress
    imap: ServerAddress


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
) -> ExportPlan:
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


async def _mail_settings(settings: Settings, email: str, given: InboxSecret) -> FoundServers:
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
    servers: FoundServers,
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


def _inbox_secret(keyring: Keyring, ciphertext: str) -> InboxSecret:
    secret: InboxSecret = json.loads(keyring.decrypt(ciphertext))
    return secret


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
        todo: list[tuple[str, str, str | None, InboxSecret]] = []
        for item in await session.scalars(_pending_in(history_id, start, end)):
            if item.connection_enc is None:
                continue
            given = _inbox_secret(keyring, item.connection_enc)
            if not given.get("ready"):
                todo.append((item.id, item.email, item.name, given))
    if not todo:
        return

    async def settings_of(email: str, given: InboxSecret) -> FoundServers | str:
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


def _login(server: ServerAddress, username: str, password: str) -> ServerLogin:
    return ServerLogin(
        server["host"], int(server["port"]), bool(server["secure"]), username, password
    )


async def _inbox_of(session: AsyncSession, keyring: Keyring, item: ExportItem) -> Inbox:
    mailbox = await session.get(Mailbox, item.mailbox_id) if item.mailbox_id else None
    try:
        if item.connection_enc is not None:
            given = _inbox_secret(keyring, item.connection_enc)
            if not given.get("ready"):
                raise _Unexportable("Its mail servers were not found")
            password = given["password"]
            return Inbox(
                email=item.email,
                display_name=item.name or item.email.split("@", 1)[0],
                provider=given["provider"] or "custom",  # set with `ready`
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
    history.connected_count = counts.get(ExportItemStatus.CONNECTED, 0)
    history.failed_count = counts.get(ExportItemStatus.FAILED, 0)
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
) -> BatchOutcome:
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


def final_status(total: int, connected: int) -> ExportStatus:
    if total > 0 and connected == total:
        return ExportStatus.COMPLETED
    if connected == 0:
        return ExportStatus.FAILED
    return ExportStatus.PARTIAL


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
