"""Placement tests on DBOS: one durable workflow per test (`placement-test-<id>`).

1. Send, over each sender's own SMTP (mail/sending.py): one step per sender, one
   after another (`one-by-one`), or one step sending from every sender at once
   (`together`, MAILFLEET_PLACEMENT_CONCURRENCY sessions). Each message is claimed
   (`planned` -> `sending`, committed) before SMTP and marked `sent` after.
2. Read: one step per pass over every seed still awaiting a message (that many
   seeds at once), then a durable sleep of
   MAILFLEET_PLACEMENT_POLL_INTERVAL, until every message is found, the timeout
   passes (one last pass then) or the test is canceled. A seed's folders are read
   over IMAP (mail/folders.py); a found message is recorded (committed) before it
   is deleted from the seed, so a crash in between loses nothing.
3. Finish: what was not found is `missing`; `placement_test.completed` is emitted.

Crash safety: a step cut off runs again. A message it finds still `sending` may or
may not have left, so its seed's folders are searched for its tracking code first
(reading has not started: it starts only once every send step has ended): found,
it is `sent`; not found, it goes again with the same Message-ID and code. Steps
take and return ids and counts; passwords are decrypted inside the step.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypedDict

from dbos import DBOS
from sqlalchemy import select, update

from mailfleet.kit.clock import utcnow
from mailfleet.kit.sql import claim
from mailfleet.mail.folders import Folder, ImapFolders
from mailfleet.mail.sending import SmtpSender
from mailfleet.mail.sessions import ConnectOptions, MailError, connect_options
from mailfleet.mailboxes.service import mailbox_credentials
from mailfleet.models import (
    DeliveryMode,
    Mailbox,
    MailboxStatus,
    PlacementFolder,
    PlacementResult,
    PlacementSendStatus,
    PlacementTest,
    PlacementTestStatus,
)
from mailfleet.placement import service
from mailfleet.placement.messages import (
    AUTH_HEADER,
    TRACKING_HEADER,
    build_message,
    parse_auth,
)
from mailfleet.placement.repository import UNFINISHED
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)

# Folders that never hold a received message, or hold every one (Gmail's All Mail).
_SKIPPED_FLAGS = frozenset({"\\sent", "\\drafts", "\\all", "\\flagged", "\\important"})
_KIND_ORDER = {"inbox": 0, "spam": 1, "promotions": 2, "other": 3}


class Outstanding(TypedDict):
    seeds: list[str]
    stop: bool
    expired: bool
    wait: float


def _options() -> ConnectOptions:
    return connect_options(runtime().settings)


def scanned_folders(folders: Sequence[Folder]) -> list[Folder]:
    """Every folder a received message can sit in, INBOX first, then spam, then
    categories, then the rest (a message found twice counts where it was first)."""
    kept = [
        folder for folder in folders if not {flag.lower() for flag in folder.flags} & _SKIPPED_FLAGS
    ]
    return sorted(kept, key=lambda folder: _KIND_ORDER.get(folder.kind or "other", 3))


def folder_class(folder: Folder) -> PlacementFolder:
    return PlacementFolder(folder.kind) if folder.kind else PlacementFolder.OTHER


async def _each(
    work: Callable[[str, str], Awaitable[dict[str, int]]], test_id: str, ids: Sequence[str]
) -> dict[str, int]:
    """`work` for every id, MAILFLEET_PLACEMENT_CONCURRENCY at once, inside one step:
    no batch waits for its slowest member, and the step, like `work`, may run again
    after a crash (what is done is skipped)."""
    gate = asyncio.Semaphore(runtime().settings.placement_concurrency)

    async def one(item: str) -> dict[str, int]:
        async with gate:
            return await work(test_id, item)

    total: dict[str, int] = {}
    for done in await asyncio.gather(*(one(item) for item in ids)):
        for key, value in done.items():
            total[key] = total.get(key, 0) + value
    return total


# ---------------------------------------------------------------- sending


@DBOS.step()
async def sending_plan(test_id: str) -> dict[str, Any]:
    async with runtime().database.transaction() as session:
        test = await session.get(PlacementTest, test_id)
        if test is None:
            return {"senders": [], "mode": DeliveryMode.TOGETHER, "stop": True}
        senders = list(
            await session.scalars(
                select(PlacementResult.sender_id)
                .where(PlacementResult.test_id == test_id)
                .group_by(PlacementResult.sender_id)
                .order_by(PlacementResult.sender_id)
            )
        )
        return {
            "senders": senders,
            "mode": test.delivery_mode,
            "stop": test.status == PlacementTestStatus.CANCELED,
        }


async def _fail_unsent(test_id: str, sender_id: str, error: str) -> None:
    async with runtime().database.transaction() as session:
        await session.execute(
            update(PlacementResult)
            .where(
                PlacementResult.test_id == test_id,
                PlacementResult.sender_id == sender_id,
                PlacementResult.status.in_(
                    (PlacementSendStatus.PLANNED, PlacementSendStatus.SENDING)
                ),
            )
            .values(status=PlacementSendStatus.FAILED, error=error[:1000])
            .execution_options(synchronize_session=False)
        )


async def _present(seed: Mailbox, header_value: str, codes: Sequence[str]) -> set[str]:
    """Which of `codes` already sit in the seed's folders."""
    credentials = mailbox_credentials(seed, runtime().keyring)
    found: set[str] = set()
    async with ImapFolders(credentials.imap, _options()) as imap:
        for folder in scanned_folders(await imap.list_folders()):
            held = await imap.find_by_header(folder, TRACKING_HEADER, header_value)
            found.update(code for code in held.values() if code in codes)
    return found


async def _settle_ambiguous(test_id: str, code_prefix: str, rows: Sequence[str]) -> None:
    """Messages a crash left `sending`: `sent` when their seed holds them, else
    `planned` again (sent once more, the same message)."""
    async with runtime().database.transaction() as session:
        pending = list(
            await session.execute(
                select(PlacementResult.id, PlacementResult.tracking_code, Mailbox)
                .join(Mailbox, Mailbox.id == PlacementResult.seed_id)
                .where(PlacementResult.id.in_(rows))
            )
        )
    by_seed: dict[str, tuple[Mailbox, list[tuple[str, str]]]] = {}
    for result_id, code, seed in pending:
        by_seed.setdefault(seed.id, (seed, []))[1].append((result_id, code))
    for seed, messages in by_seed.values():
        try:
            present = await _present(seed, code_prefix, [code for _, code in messages])
        except MailError:
            # Unknown: better reported missing than sent twice.
            present = {code for _, code in messages}
        async with runtime().database.transaction() as session:
            for result_id, code in messages:
                result = await session.get(PlacementResult, result_id)
                if result is None or result.status != PlacementSendStatus.SENDING:
                    continue
                if code in present:
                    result.status = PlacementSendStatus.SENT
                    result.sent_at = result.sent_at or utcnow()
                else:
                    result.status = PlacementSendStatus.PLANNED


async def _send_one(smtp: SmtpSender, result_id: str, sender: Mailbox) -> str:
    """ "sent", "skipped" (not ours to send, or canceled) or "failed"."""
    database = runtime().database
    async with database.transaction() as session:
        result = await session.get(PlacementResult, result_id)
        test = await session.get(PlacementTest, result.test_id) if result else None
        if result is None or test is None or result.status != PlacementSendStatus.PLANNED:
            return "skipped"
        if test.status == PlacementTestStatus.CANCELED:
            return "skipped"
        # The claim: of two runs of this step at once, only one finds it `planned`.
        if not await claim(
            session,
            PlacementResult,
            result_id,
            expected=PlacementSendStatus.PLANNED,
            status=PlacementSendStatus.SENDING,
            attempts=PlacementResult.attempts + 1,
        ):
            return "skipped"
        email = build_message(
            test_code=test.code,
            code=result.tracking_code,
            message_id=result.message_id,
            subject=test.subject,
            text=test.text,
            html=test.html,
            sender_email=sender.email,
            sender_name=sender.display_name,
            seed_email=result.seed_email,
            at=utcnow(),
        )
        recipient = result.seed_email
    try:
        await smtp.send(email, recipients=[recipient], sender=sender.email)
    except MailError as error:
        async with database.transaction() as session:
            result = await session.get(PlacementResult, result_id)
            if result is not None:
                result.status = PlacementSendStatus.FAILED
                result.error = error.message[:1000]
        return "failed"
    async with database.transaction() as session:
        result = await session.get(PlacementResult, result_id)
        if result is not None:
            result.status = PlacementSendStatus.SENT
            result.sent_at = utcnow()
    return "sent"


@DBOS.step()
async def send_from(test_id: str, sender_id: str) -> dict[str, int]:
    """One sender's messages (`one-by-one`)."""
    return await _send_from(test_id, sender_id)


@DBOS.step()
async def send_all(test_id: str, sender_ids: list[str]) -> dict[str, int]:
    """Every sender's messages at once (`together`)."""
    return await _each(_send_from, test_id, sender_ids)


async def _send_from(test_id: str, sender_id: str) -> dict[str, int]:
    """Send this sender's messages of the test, each claimed first."""
    current = runtime()
    async with current.database.transaction() as session:
        test = await session.get(PlacementTest, test_id)
        sender = await session.get(Mailbox, sender_id)
        if test is None or test.status == PlacementTestStatus.CANCELED:
            return {"sent": 0}
        rows = list(
            await session.execute(
                select(PlacementResult.id, PlacementResult.status)
                .where(
                    PlacementResult.test_id == test_id,
                    PlacementResult.sender_id == sender_id,
                    PlacementResult.status.in_(
                        (PlacementSendStatus.PLANNED, PlacementSendStatus.SENDING)
                    ),
                )
                .order_by(PlacementResult.seq)
            )
        )
        code = test.code
        usable = sender is not None and sender.status == MailboxStatus.ACTIVE
        credentials = mailbox_credentials(sender, current.keyring) if usable and sender else None
    if not rows:
        return {"sent": 0}
    if credentials is None or sender is None:
        await _fail_unsent(test_id, sender_id, "The sender was removed or is no longer active")
        return {"sent": 0}
    ambiguous = [row_id for row_id, status in rows if status == PlacementSendStatus.SENDING]
    if ambiguous:
        await _settle_ambiguous(test_id, code, ambiguous)
    sent = 0
    try:
        async with SmtpSender(credentials.smtp, _options()) as smtp:
            for row_id, _status in rows:
                sent += await _send_one(smtp, row_id, sender) == "sent"
    except MailError as error:
        log.warning("placement test %s: sender %s failed: %s", test_id, sender_id, error.code)
        await _fail_unsent(test_id, sender_id, error.message)
    return {"sent": sent}


@DBOS.step()
async def mark_sent(test_id: str) -> None:
    """Every send step has ended: the timeout counts from now."""
    async with runtime().database.transaction() as session:
        test = await session.get(PlacementTest, test_id)
        if test is None:
            return
        if test.sent_at is None:
            test.sent_at = utcnow()
        if test.status == PlacementTestStatus.SENDING:
            test.status = PlacementTestStatus.WAITING


# ---------------------------------------------------------------- reading


@DBOS.step()
async def outstanding(test_id: str) -> Outstanding:
    """Seeds still awaiting a message; whether to stop, and how long to sleep."""
    current = runtime()
    async with current.database.transaction() as session:
        test = await session.get(PlacementTest, test_id)
        if test is None or test.status != PlacementTestStatus.WAITING:
            return Outstanding(seeds=[], stop=True, expired=False, wait=0.0)
        seeds = list(
            await session.scalars(
                select(PlacementResult.seed_id)
                .where(
                    PlacementResult.test_id == test_id,
                    PlacementResult.folder.is_(None),
                    PlacementResult.status.in_(
                        (PlacementSendStatus.SENT, PlacementSendStatus.SENDING)
                    ),
                )
                .group_by(PlacementResult.seed_id)
                .order_by(PlacementResult.seed_id)
            )
        )
        deadline = service.deadline_of(test, current.settings)
    left = (deadline - utcnow()).total_seconds() if deadline else 0.0
    return Outstanding(
        seeds=seeds,
        stop=not seeds,
        expired=left <= 0,
        wait=max(0.0, min(current.settings.placement_poll_interval, left)),
    )


def _arrived_after(sent_at: datetime | None, arrived: datetime | None) -> float | None:
    if sent_at is None or arrived is None:
        return None
    # INTERNALDATE has whole seconds: a message can look older than its send.
    return round(max(0.0, (arrived - sent_at).total_seconds()), 1)


@DBOS.step()
async def read_seeds(test_id: str, seed_ids: list[str]) -> dict[str, int]:
    """One pass over the seeds still awaiting a message."""
    return await _each(_read_seed, test_id, seed_ids)


async def _read_seed(test_id: str, seed_id: str) -> dict[str, int]:
    """Find the test's messages in the seed's folders: record each one's folder,
    arrival and authentication results, then delete it from the seed."""
    current = runtime()
    async with current.database.transaction() as session:
        test = await session.get(PlacementTest, test_id)
        seed = await session.get(Mailbox, seed_id)
        if test is None or seed is None or test.status != PlacementTestStatus.WAITING:
            return {"found": 0}
        rows = list(
            await session.scalars(
                select(PlacementResult).where(
                    PlacementResult.test_id == test_id, PlacementResult.seed_id == seed_id
                )
            )
        )
        code = test.code
        credentials = mailbox_credentials(seed, current.keyring)
    awaited = {r.tracking_code: (r.id, r.sent_at) for r in rows if r.folder is None}
    recorded = {r.tracking_code for r in rows if r.folder is not None}
    if not awaited:
        return {"found": 0}
    found = 0
    try:
        async with ImapFolders(credentials.imap, _options()) as imap:
            for folder in scanned_folders(await imap.list_folders()):
                uids = await imap.search_header(folder, TRACKING_HEADER, code)
                if not uids:
                    continue
                fetched = await imap.fetch_headers(folder, uids, (TRACKING_HEADER, AUTH_HEADER))
                arrivals: dict[str, tuple[str, Any]] = {}
                remove: list[int] = []
                for uid, message in fetched.items():
                    codes = message.values(TRACKING_HEADER)
                    tracking = codes[0] if codes else ""
                    if tracking in awaited and tracking not in arrivals:
                        arrivals[tracking] = (awaited.pop(tracking)[0], message)
                        remove.append(uid)
                    elif tracking in recorded or tracking in arrivals:
                        remove.append(uid)  # a second copy: the first one counted
                if arrivals:
                    # Recorded (committed) before deleted: a crash in between keeps it.
                    async with current.database.transaction() as session:
                        loaded = {
                            row.id: row
                            for row in await session.scalars(
                                select(PlacementResult).where(
                                    PlacementResult.id.in_([i for i, _ in arrivals.values()])
                                )
                            )
                        }
                        for tracking, (result_id, message) in arrivals.items():
                            result = loaded.get(result_id)
                            if result is None or result.folder is not None:
                                continue
                            auth = parse_auth(message.values(AUTH_HEADER))
                            if result.status == PlacementSendStatus.SENDING:
                                result.status = PlacementSendStatus.SENT
                                result.sent_at = result.sent_at or message.internal_date
                            result.folder = folder_class(folder)
                            result.folder_name = folder.name[:200]
                            result.found_at = utcnow()
                            result.arrived_after_seconds = _arrived_after(
                                result.sent_at, message.internal_date
                            )
                            result.auth_spf = auth["spf"]
                            result.auth_dkim = auth["dkim"]
                            result.auth_dmarc = auth["dmarc"]
                            recorded.add(tracking)
                            found += 1
                await imap.delete(folder, remove)
                if not awaited:
                    break
    except MailError as error:
        # The next pass tries again; the timeout decides when to give up.
        log.warning("placement test %s: reading seed %s failed: %s", test_id, seed_id, error.code)
    return {"found": found}


@DBOS.step()
async def finish(test_id: str) -> dict[str, int]:
    async with runtime().database.transaction() as session:
        test = await session.get(PlacementTest, test_id)
        if test is None or test.status == PlacementTestStatus.CANCELED:
            return {"messages": 0}
        summary = await service.complete_test(session, test)
    return {key: int(value) for key, value in summary.items() if isinstance(value, int)}


@DBOS.workflow()
async def run_placement_test(test_id: str) -> dict[str, int]:
    plan = await sending_plan(test_id)
    if not plan["stop"]:
        if plan["mode"] == DeliveryMode.ONE_BY_ONE:
            for sender_id in plan["senders"]:
                await send_from(test_id, sender_id)
        else:
            await send_all(test_id, plan["senders"])
        await mark_sent(test_id)
    state = await outstanding(test_id)
    while not state["stop"]:
        await read_seeds(test_id, state["seeds"])
        if state["expired"]:
            break  # that was the last read, after the timeout
        # Asked again before sleeping: a pass that found everything ends the test now.
        state = await outstanding(test_id)
        if state["stop"]:
            break
        await DBOS.sleep_async(state["wait"])
        state = await outstanding(test_id)
    return await finish(test_id)


async def requeue_unfinished_tests() -> int:
    """Enqueue every unfinished test again (a no-op for those queued or running):
    what a crash between a test's commit and its enqueue left behind."""
    async with runtime().database.transaction() as session:
        test_ids = list(
            await session.scalars(
                select(PlacementTest.id).where(PlacementTest.status.in_(UNFINISHED))
            )
        )
    for test_id in test_ids:
        await service.enqueue_test(test_id)
    return len(test_ids)
