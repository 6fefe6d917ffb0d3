"""The warmup engine on DBOS: one durable workflow per round.

A round (`warmup-round-<slot>`, every MAILFLEET_WARMUP_INTERVAL seconds) plans,
then sends what is due, then reads every warming mailbox's folders, then sends
the replies that reading decided. Each sender and each receiver is one step;
steps take and return ids and counts only: credentials are decrypted inside the
step that uses them and never enter a workflow's inputs or outputs.

Crash safety, per planned message: it is marked `sending` (committed) before
SMTP and `sent` right after. A step cut off by a crash runs again; a message it
finds still `sending` may or may not have left, so the receiver's folders are
searched for its tracking code first: found, it is marked sent; not found, it is
sent again with the same Message-ID and code. A planned send is neither lost
nor doubled.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from dbos import DBOS
from sqlalchemy import select

from mailfleet import jobs
from mailfleet.kit.clock import utcnow
from mailfleet.kit.sql import claim
from mailfleet.mail.folders import Folder, ImapFolders
from mailfleet.mail.sending import SmtpSender
from mailfleet.mail.sessions import ConnectOptions, MailError, connect_options
from mailfleet.mailboxes.service import mailbox_credentials
from mailfleet.models import Mailbox, WarmupMessage, WarmupMessageStatus, WarmupSettings
from mailfleet.models.warmup import ACTIVE_WARMUP_STATES, WarmupPlacement
from mailfleet.runtime import runtime
from mailfleet.warmup import planner, service
from mailfleet.warmup.templates import TRACKING_HEADER, Party, build_message

log = logging.getLogger(__name__)

WARMUP_QUEUE = "warmup"
SCANNED_KINDS = tuple(WarmupPlacement)

_UNSENT = (WarmupMessageStatus.PLANNED, WarmupMessageStatus.SENDING)
_SENT_OR_SENDING = (WarmupMessageStatus.SENT, WarmupMessageStatus.SENDING)


def _options() -> ConnectOptions:
    return connect_options(runtime().settings)


def _party(mailbox: Mailbox) -> Party:
    return Party(email=mailbox.email, name=mailbox.display_name)


async def _record_login_failure(mailbox_id: str, protocol: str, error: MailError) -> None:
    if not error.auth_failed:
        log.warning("warmup %s for mailbox %s failed: %s", protocol, mailbox_id, error.code)
        return
    async with runtime().database.transaction() as session:
        await service.mark_error(
            session, mailbox_id, f"{protocol.upper()} login failed: {error.message}"
        )


@DBOS.step()
async def plan_round(at_iso: str) -> dict[str, Any]:
    """Plan every workspace's sends; return which mailboxes send and which read."""
    at = datetime.fromisoformat(at_iso)
    planned = 0
    database = runtime().database
    async with database.transaction() as session:
        workspace_ids = await planner.workspaces_warming(session)
    for workspace_id in workspace_ids:
        # One transaction per workspace: a large one never holds the others up.
        async with database.transaction() as session:
            planned += await planner.plan_workspace(session, workspace_id, at)
    async with database.transaction() as session:
        senders = await _due_senders(session, at)
        receivers = list(
            await session.scalars(
                select(WarmupSettings.mailbox_id)
                .where(
                    WarmupSettings.enabled.is_(True),
                    WarmupSettings.state.in_(ACTIVE_WARMUP_STATES),
                )
                .order_by(WarmupSettings.mailbox_id)
            )
        )
    return {"planned": planned, "senders": senders, "receivers": receivers}


async def _due_senders(session: Any, at: datetime) -> list[str]:
    rows = await session.scalars(
        select(WarmupMessage.sender_id)
        .join(WarmupSettings, WarmupSettings.mailbox_id == WarmupMessage.sender_id)
        .where(
            WarmupMessage.status.in_(_UNSENT),
            WarmupMessage.planned_at <= planner.due_cutoff(at),
            WarmupSettings.enabled.is_(True),
            WarmupSettings.state.in_(ACTIVE_WARMUP_STATES),
        )
        .distinct()
        .order_by(WarmupMessage.sender_id)
    )
    return list(rows)


@DBOS.step()
async def due_senders(at_iso: str) -> list[str]:
    async with runtime().database.transaction() as session:
        return await _due_senders(session, datetime.fromisoformat(at_iso))


async def _scan_folders(imap: ImapFolders) -> tuple[Folder, list[Folder]]:
    folders = await imap.list_folders()
    inbox = next(f for f in folders if f.kind == "inbox")
    # INBOX first: what is rescued from spam into it later in the same scan must
    # not look like a second copy there.
    scanned = [inbox] + [f for f in folders if f.kind in SCANNED_KINDS and f is not inbox]
    return inbox, scanned


async def _delivered(receiver: Mailbox, codes: Sequence[str]) -> set[str]:
    """Which of `codes` already sit in the receiver's folders (a send a crash cut off)."""
    credentials = mailbox_credentials(receiver, runtime().keyring)
    found: set[str] = set()
    async with ImapFolders(credentials.imap, _options()) as imap:
        _, folders = await _scan_folders(imap)
        for folder in folders:
            for code in codes:
                if await imap.find_by_header(folder, TRACKING_HEADER, code):
                    found.add(code)
    return found


@DBOS.step()
async def send_due(mailbox_id: str, at_iso: str) -> dict[str, int]:
    """Send the sender's due messages, each marked `sending` then `sent`."""
    at = datetime.fromisoformat(at_iso)
    current = runtime()
    async with current.database.transaction() as session:
        sender = await session.get(Mailbox, mailbox_id)
        settings = await session.get(WarmupSettings, mailbox_id)
        if sender is None or settings is None or not settings.enabled:
            return {"sent": 0}
        if settings.state not in ACTIVE_WARMUP_STATES:
            return {"sent": 0}
        rows = await session.execute(
            select(WarmupMessage, Mailbox)
            .join(Mailbox, Mailbox.id == WarmupMessage.receiver_id)
            .where(
                WarmupMessage.sender_id == mailbox_id,
                WarmupMessage.status.in_(_UNSENT),
                WarmupMessage.planned_at <= planner.due_cutoff(at),
                # Only mailboxes of the sender's own workspace are ever addressed.
                Mailbox.workspace_id == sender.workspace_id,
            )
            .order_by(WarmupMessage.planned_at, WarmupMessage.id)
        )
        due = [(message.id, message.status) for message, receiver in rows]
        parents = await _parent_message_ids(session, [m for m, _ in due])
        credentials = mailbox_credentials(sender, current.keyring)
        signature = sender.signature
        sender_party = _party(sender)
    if not due:
        return {"sent": 0}
    sent = 0
    try:
        if any(status == WarmupMessageStatus.SENDING for _, status in due):
            await _resolve_ambiguous(mailbox_id)
        async with SmtpSender(credentials.smtp, _options()) as smtp:
            for message_id, _status in due:
                outcome = await _send_one(smtp, message_id, sender_party, signature, parents, at)
                if outcome == "stop":
                    break
                sent += outcome == "sent"
    except MailError as error:
        await _record_login_failure(mailbox_id, "smtp", error)
    return {"sent": sent}


async def _parent_message_ids(session: Any, message_ids: Sequence[str]) -> dict[str, str]:
    """{reply id: Message-ID of the message it answers}."""
    if not message_ids:
        return {}
    parent = WarmupMessage.__table__.alias("parent")
    rows = await session.execute(
        select(WarmupMessage.id, parent.c.message_id)
        .join(parent, parent.c.id == WarmupMessage.parent_id)
        .where(WarmupMessage.id.in_(message_ids))
    )
    return {reply_id: message_id for reply_id, message_id in rows}


async def _resolve_ambiguous(mailbox_id: str) -> None:
    """Settle messages left `sending` by a crash: sent if the receiver has them."""
    async with runtime().database.transaction() as session:
        rows = list(
            await session.execute(
                select(WarmupMessage.id, WarmupMessage.tracking_code, Mailbox)
                .join(Mailbox, Mailbox.id == WarmupMessage.receiver_id)
                .where(
                    WarmupMessage.sender_id == mailbox_id,
                    WarmupMessage.status == WarmupMessageStatus.SENDING,
                )
            )
        )
    by_receiver: dict[str, tuple[Mailbox, list[tuple[str, str]]]] = {}
    for message_id, code, receiver in rows:
        by_receiver.setdefault(receiver.id, (receiver, []))[1].append((message_id, code))
    for receiver, messages in by_receiver.values():
        try:
            found = await _delivered(receiver, [code for _, code in messages])
        except MailError:
            # Unknown: leave them `sending`; the next round asks again rather than guess.
            continue
        async with runtime().database.transaction() as session:
            for message_id, code in messages:
                message = await session.get(WarmupMessage, message_id)
                if message is None or message.status != WarmupMessageStatus.SENDING:
                    continue
                if code in found:
                    message.status = WarmupMessageStatus.SENT
                    message.sent_at = message.sent_at or utcnow()
                else:
                    # Never arrived: send it again (same Message-ID and code).
                    message.status = WarmupMessageStatus.PLANNED


async def _send_one(
    smtp: SmtpSender,
    message_id: str,
    sender: Party,
    signature: str | None,
    parents: dict[str, str],
    at: datetime,
) -> str:
    database = runtime().database
    async with database.transaction() as session:
        message = await session.get(WarmupMessage, message_id)
        if message is None or message.status != WarmupMessageStatus.PLANNED:
            # Already sent, or left `sending` because its fate is unknown.
            return "skipped"
        receiver = await session.get(Mailbox, message.receiver_id)
        receiver_settings = await session.get(WarmupSettings, message.receiver_id)
        if (
            receiver is None
            or receiver.workspace_id != message.workspace_id
            or receiver_settings is None
            or not receiver_settings.enabled
        ):
            message.status = WarmupMessageStatus.FAILED
            message.error = "The receiver left the warmup network"
            return "skipped"
        # The claim: of two rounds sending at once (a recovered one and a new one),
        # only the one whose update finds the row still `planned` sends it.
        if not await claim(
            session,
            WarmupMessage,
            message_id,
            expected=WarmupMessageStatus.PLANNED,
            status=WarmupMessageStatus.SENDING,
            attempts=WarmupMessage.attempts + 1,
        ):
            return "skipped"
        email = build_message(
            code=message.tracking_code,
            message_id=message.message_id,
            subject=message.subject,
            sender=sender,
            receiver=_party(receiver),
            sent_at=at,
            signature=signature,
            in_reply_to=parents.get(message.id),
        )
        recipient = receiver.email
    try:
        await smtp.send(email, recipients=[recipient], sender=sender.email)
    except MailError as error:
        async with database.transaction() as session:
            message = await session.get(WarmupMessage, message_id)
            if message is not None:
                if error.temporary:
                    message.status = WarmupMessageStatus.PLANNED
                else:
                    message.status = WarmupMessageStatus.FAILED
                    message.error = error.message[:1000]
        return "stop" if error.temporary else "failed"
    async with database.transaction() as session:
        message = await session.get(WarmupMessage, message_id)
        if message is not None:
            message.status = WarmupMessageStatus.SENT
            message.sent_at = at
    return "sent"


@DBOS.step()
async def scan_folders(mailbox_id: str, at_iso: str) -> dict[str, int]:
    """Find this receiver's warmup messages in INBOX, spam and category folders:
    record where each landed, move spam to INBOX flagged, plan replies, and
    delete what is past retention."""
    at = datetime.fromisoformat(at_iso)
    current = runtime()
    retention = timedelta(seconds=current.settings.warmup_retention)
    async with current.database.transaction() as session:
        receiver = await session.get(Mailbox, mailbox_id)
        settings = await session.get(WarmupSettings, mailbox_id)
        if receiver is None or settings is None:
            return {"seen": 0}
        expected = {
            m.tracking_code: m.id
            for m in await session.scalars(
                select(WarmupMessage).where(
                    WarmupMessage.receiver_id == mailbox_id,
                    WarmupMessage.status.in_(_SENT_OR_SENDING),
                    WarmupMessage.seen_at.is_(None),
                )
            )
        }
        expired = {
            m.tracking_code: m.id
            for m in await session.scalars(
                select(WarmupMessage).where(
                    WarmupMessage.receiver_id == mailbox_id,
                    WarmupMessage.seen_at.is_not(None),
                    WarmupMessage.deleted_at.is_(None),
                    WarmupMessage.seen_at <= at - retention,
                )
            )
        }
        known = set(
            await session.scalars(
                select(WarmupMessage.tracking_code).where(
                    WarmupMessage.receiver_id == mailbox_id, WarmupMessage.seen_at.is_not(None)
                )
            )
        )
        credentials = mailbox_credentials(receiver, current.keyring)
        reply_rate = settings.reply_rate
    if not expected and not expired:
        return {"seen": 0}
    seen: dict[str, tuple[str, str]] = {}
    try:
        async with ImapFolders(credentials.imap, _options()) as imap:
            inbox, folders = await _scan_folders(imap)
            for folder in folders:
                found = await imap.find_by_header(folder, TRACKING_HEADER)
                rescue: list[int] = []
                keep: list[int] = []
                remove: list[int] = []
                for uid, code in found.items():
                    if code in expired:
                        remove.append(uid)
                    elif code in expected and code not in seen:
                        seen[code] = (folder.kind or "other", folder.name)
                        (rescue if folder.kind == "spam" else keep).append(uid)
                    elif code in seen or (code in known and folder.kind == "spam"):
                        # A second copy (a send retried after a crash): keep one.
                        remove.append(uid)
                await imap.add_flags(folder, keep, "\\Seen")
                if rescue:
                    # Flag first: the flags travel with the message.
                    await imap.add_flags(folder, rescue, "\\Seen \\Flagged")
                    await imap.move(folder, rescue, inbox)
                await imap.delete(folder, remove)
    except MailError as error:
        await _record_login_failure(mailbox_id, "imap", error)
        return {"seen": 0}
    replies = 0
    async with current.database.transaction() as session:
        replier = await session.get(Mailbox, mailbox_id)
        for code, (placement, folder_name) in seen.items():
            message = await session.get(WarmupMessage, expected[code])
            if message is None or message.seen_at is not None:
                continue
            if message.status == WarmupMessageStatus.SENDING:
                message.status = WarmupMessageStatus.SENT
                message.sent_at = message.sent_at or at
            message.placement = placement
            message.folder = folder_name
            message.seen_at = at
            message.saved_from_spam = placement == "spam"
            if message.kind == "reply" and message.parent_id:
                parent = await session.get(WarmupMessage, message.parent_id)
                if parent is not None:
                    parent.replied = True
            elif replier is not None and planner.wants_reply(code, reply_rate):
                replies += await planner.plan_reply(session, message, replier, at) is not None
        for message_pk in expired.values():
            message = await session.get(WarmupMessage, message_pk)
            if message is not None:
                message.deleted_at = at
    return {"seen": len(seen), "replies": replies, "deleted": len(expired)}


async def _for_each(
    step: Callable[[str, str], Awaitable[dict[str, int]]], mailbox_ids: Sequence[str], at_iso: str
) -> list[dict[str, int]]:
    """Run `step` for each mailbox, a batch at a time. Steps start in list order, so a
    replay maps each recorded step to the same mailbox."""
    size = runtime().settings.warmup_concurrency
    results: list[dict[str, int]] = []
    for start in range(0, len(mailbox_ids), size):
        batch = mailbox_ids[start : start + size]
        results.extend(await asyncio.gather(*(step(mailbox_id, at_iso) for mailbox_id in batch)))
    return results


@DBOS.workflow()
async def warmup_round(at_iso: str) -> dict[str, int]:
    plan = await plan_round(at_iso)
    sent = await _for_each(send_due, plan["senders"], at_iso)
    seen = await _for_each(scan_folders, plan["receivers"], at_iso)
    repliers = await due_senders(at_iso)
    replied = await _for_each(send_due, repliers, at_iso)
    return {
        "planned": plan["planned"],
        "sent": sum(r["sent"] for r in sent) + sum(r["sent"] for r in replied),
        "seen": sum(r["seen"] for r in seen),
        "replies": sum(r.get("replies", 0) for r in seen),
    }


def round_workflow_id(slot: int) -> str:
    return f"warmup-round-{slot}"


_last_slot: int | None = None


async def enqueue_due_round() -> str | None:
    """Enqueue this interval's round, once: its id is the interval's number, so
    every worker enqueueing it at once starts one round."""
    global _last_slot
    interval = runtime().settings.warmup_interval
    if interval <= 0:
        return None
    slot = math.floor(utcnow().timestamp() / interval)
    if slot == _last_slot:
        return None
    at = datetime.fromtimestamp(slot * interval, tz=utcnow().tzinfo)
    workflow_id = await jobs.enqueue(
        WARMUP_QUEUE, warmup_round, at.isoformat(), workflow_id=round_workflow_id(slot)
    )
    _last_slot = slot
    return workflow_id
