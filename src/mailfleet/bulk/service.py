"""Bulk connect jobs: accept a batch of mailboxes, verify it in chunks, report per row.

Accepting happens in the request's transaction: every valid, new row becomes a
mailbox (status "inactive") with a connection test owned by the job, and every
row gets an item saying what became of it. Duplicates (inside the request or of
a mailbox the workspace already has) and invalid rows are decided here, once.
The job's workflow is enqueued after commit; a sweeper re-enqueues any job left
queued or running, under the same workflow id.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet import jobs
from mailfleet.billing import seats as billing
from mailfleet.bulk.formats import ParsedRow
from mailfleet.bulk.repository import BulkJobRepository
from mailfleet.config import Settings
from mailfleet.db import Database, after_commit
from mailfleet.kit.clock import utcnow
from mailfleet.kit.crypto import Keyring
from mailfleet.kit.errors import Conflict, LimitReached, NotFound, ValidationFailed
from mailfleet.kit.ids import new_id
from mailfleet.kit.sql import insert_ignoring_conflict
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailboxes.schemas import MailboxCreate
from mailfleet.models import (
    BulkJob,
    BulkJobItem,
    BulkJobStatus,
    ConnectionTest,
    ConnectionTestStatus,
    Mailbox,
)
from mailfleet.webhooks import events
from mailfleet.webhooks import service as webhooks

log = logging.getLogger(__name__)

BULK_QUEUE: Final = "bulk_connect"
FINAL_JOB_STATUSES: Final = frozenset({BulkJobStatus.COMPLETED, BulkJobStatus.FAILED})
_INSERT_BATCH: Final = 500
_IN_BATCH: Final = 500
CONNECTED_MESSAGE: Final = "SMTP and IMAP logins succeeded"


def job_workflow_id(job_id: str) -> str:
    return f"bulk-job-{job_id}"


async def enqueue_job(job_id: str) -> None:
    await jobs.enqueue_named(
        BULK_QUEUE,
        "mailfleet.bulk.workflows:run_bulk_job",
        job_id,
        workflow_id=job_workflow_id(job_id),
    )


async def find_job_by_key(session: AsyncSession, workspace_id: str, key: str) -> BulkJob | None:
    return await BulkJobRepository(session).one_or_none(
        BulkJobRepository.owned_by(workspace_id).where(BulkJob.idempotency_key == key)
    )


async def get_job(session: AsyncSession, workspace_id: str, job_id: str) -> BulkJob:
    return await BulkJobRepository(session).get(workspace_id, job_id)


async def _insert_job(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert unless the workspace already has a job under this Idempotency-Key; on
    PostgreSQL a concurrent request with the same key waits for the other to
    commit, then yields to its job."""
    inserted: bool = await insert_ignoring_conflict(
        session,
        BulkJob,
        values,
        index_elements=[BulkJob.workspace_id, BulkJob.idempotency_key],
    )
    return inserted


async def _existing_emails(
    session: AsyncSession, workspace_id: str, emails: Iterable[str]
) -> set[str]:
    wanted = sorted(set(emails))
    found: set[str] = set()
    for start in range(0, len(wanted), _IN_BATCH):
        batch = wanted[start : start + _IN_BATCH]
        found.update(
            await session.scalars(
                select(Mailbox.email).where(
                    Mailbox.workspace_id == workspace_id, Mailbox.email.in_(batch)
                )
            )
        )
    return found


async def accept_job(
    session: AsyncSession,
    keyring: Keyring,
    workspace_id: str,
    rows: list[ParsedRow],
    *,
    source: str,
    idempotency_key: str | None,
    created_by: str | None,
    settings: Settings,
    field: str = "body",
) -> tuple[BulkJob, bool]:
    """The job for these rows, and whether this call created it (False: an earlier
    request with the same Idempotency-Key did, and its job is returned)."""
    if not rows:
        raise ValidationFailed.for_field(field, "No mailboxes in the request")
    now = utcnow()
    job_id = new_id()
    created = await _insert_job(
        session,
        {
            "id": job_id,
            "workspace_id": workspace_id,
            "created_by": created_by,
            "status": BulkJobStatus.QUEUED,
            "source": source,
            "idempotency_key": idempotency_key,
            "total": len(rows),
            "connected_count": 0,
            "failed_count": 0,
            "duplicate_count": 0,
            "invalid_count": 0,
            "created_at": now,
            "updated_at": now,
        },
    )
    if not created:
        assert idempotency_key is not None
        existing = await find_job_by_key(session, workspace_id, idempotency_key)
        if existing is None:
            raise Conflict("A request with this Idempotency-Key is still being accepted; retry")
        return existing, False

    # Plan seats, when billing is on: SUBSCRIPTION_REQUIRED refuses the request;
    # rows past the last seat are reported as LIMIT_REACHED, the others go ahead.
    seats = await billing.reserve_seat_batch(session, workspace_id, settings=settings)
    first_row_of: dict[str, int] = {}
    tally: Counter[str] = Counter()
    for start in range(0, len(rows), _INSERT_BATCH):
        items = await _accept_batch(
            session,
            keyring,
            workspace_id,
            job_id,
            rows[start : start + _INSERT_BATCH],
            seats=seats,
            first_row_of=first_row_of,
        )
        for item in items:
            tally[item["outcome"]] += 1
            if item["outcome"] != "pending":
                item["finished_at"] = now
        await session.execute(insert(BulkJobItem), items)
    pending, duplicates = tally["pending"], tally["duplicate"]
    invalid, failed = tally["invalid"], tally["failed"]

    job = await session.get(BulkJob, job_id)
    assert job is not None
    job.duplicate_count = duplicates
    job.invalid_count = invalid
    job.failed_count = failed
    if pending == 0:
        job.status = BulkJobStatus.COMPLETED
        job.started_at = job.finished_at = now
        await _announce_finished(session, job)
    else:
        after_commit(session, lambda: enqueue_job(job_id))
    await session.flush()
    log.info(
        "bulk job %s accepted: %d rows, %d to verify, %d duplicate, %d invalid, %d over quota",
        job_id,
        len(rows),
        pending,
        duplicates,
        invalid,
        failed,
    )
    return job, True


async def _accept_batch(
    session: AsyncSession,
    keyring: Keyring,
    workspace_id: str,
    job_id: str,
    batch: list[ParsedRow],
    *,
    seats: billing.SeatBatch,
    first_row_of: dict[str, int],
) -> list[dict[str, Any]]:
    """Judge a batch of rows and create its new mailboxes with one insert per
    table: the batch's items, in row order. `first_row_of` (email: row) carries
    the mailboxes earlier batches created, for duplicates inside the request."""
    valid = [parsed for parsed in batch if parsed.data is not None]
    existing_emails = await _existing_emails(session, workspace_id, (r.email for r in valid))
    pools = await mailboxes.existing_pool_ids(
        session, workspace_id, (r.data.pool_id for r in valid if r.data and r.data.pool_id)
    )
    items: list[dict[str, Any]] = []
    created: list[tuple[dict[str, Any], MailboxCreate]] = []
    for parsed in batch:
        item: dict[str, Any] = {
            "id": new_id(),
            "job_id": job_id,
            "row": parsed.row,
            "email": parsed.email,
            "outcome": "pending",
            "attempts": 0,
        }
        items.append(item)
        data = parsed.data
        if data is None:
            item.update(outcome="invalid", error_code="VALIDATION_ERROR", message=parsed.error)
        elif parsed.email in first_row_of:
            item.update(
                outcome="duplicate",
                error_code="DUPLICATE",
                message=f"Same email as row {first_row_of[parsed.email]} of this request",
            )
        elif parsed.email in existing_emails:
            item.update(
                outcome="duplicate",
                error_code="DUPLICATE",
                message="A mailbox with this email already exists in the workspace",
            )
        elif data.pool_id is not None and data.pool_id not in pools:
            missing = NotFound(f"Pool {data.pool_id} not found")
            item.update(outcome="invalid", error_code=missing.code, message=missing.message)
        else:
            try:
                seats.take()
            except LimitReached as exc:
                item.update(outcome="failed", error_code=exc.code, message=exc.message)
            else:
                first_row_of[parsed.email] = parsed.row
                created.append((item, data))
    mailbox_ids = await mailboxes.create_mailbox_batch(
        session, keyring, workspace_id, [data for _, data in created], job_id=job_id
    )
    for (item, _), mailbox_id in zip(created, mailbox_ids, strict=True):
        item["mailbox_id"] = mailbox_id
    return items


# Verification, called by the job's workflow.


@dataclass(frozen=True, slots=True)
class ChunkItem:
    """One mailbox to verify, with its decrypted credentials: lives in one step only."""

    item_id: str
    test_id: str | None
    hosts: tuple[str, ...]
    credentials: mailboxes.MailboxCredentials | None
    """None when the mailbox (or its test) is gone: recorded as such, not probed."""


@dataclass(frozen=True, slots=True)
class ItemResult:
    item_id: str
    test_id: str | None
    outcome: mailboxes.LoginOutcome
    attempts: int


async def begin_job(session: AsyncSession, job_id: str) -> int | None:
    """Mark the job running; the highest row number to cover, or None when there
    is nothing to do (no such job, or it already ended)."""
    job = await session.get(BulkJob, job_id)
    if job is None or job.status in FINAL_JOB_STATUSES:
        return None
    if job.status == BulkJobStatus.QUEUED:
        job.status = BulkJobStatus.RUNNING
        job.started_at = utcnow()
    last_row: int | None = await session.scalar(
        select(func.max(BulkJobItem.row)).where(BulkJobItem.job_id == job_id)
    )
    return last_row or 0


async def load_chunk(
    session: AsyncSession, keyring: Keyring, job_id: str, first_row: int, last_row: int
) -> list[ChunkItem]:
    """The pending items of rows first_row..last_row: what a chunk still has to do
    (a re-run after a crash skips what was recorded)."""
    rows = await session.execute(
        select(BulkJobItem.id, ConnectionTest.id, Mailbox.id, *mailboxes.LOGIN_COLUMNS)
        .outerjoin(
            ConnectionTest,
            (ConnectionTest.job_id == BulkJobItem.job_id)
            & (ConnectionTest.mailbox_id == BulkJobItem.mailbox_id),
        )
        .outerjoin(Mailbox, Mailbox.id == BulkJobItem.mailbox_id)
        .where(
            BulkJobItem.job_id == job_id,
            BulkJobItem.outcome == "pending",
            BulkJobItem.row >= first_row,
            BulkJobItem.row <= last_row,
        )
        .order_by(BulkJobItem.row)
    )
    work = []
    for row in rows:
        item_id, test_id, mailbox_id = row[:3]
        if mailbox_id is None or test_id is None:
            work.append(ChunkItem(item_id, test_id, (), None))
            continue
        hosts = tuple(sorted({row.smtp_host.lower(), row.imap_host.lower()}))
        work.append(ChunkItem(item_id, test_id, hosts, mailboxes.mailbox_credentials(row, keyring)))
    return work


async def record_results(
    session: AsyncSession, job_id: str, results: list[ItemResult]
) -> dict[str, int]:
    """Finish the items and their connection tests, and move the job's counters, in
    one transaction: a crash leaves either all of it or none. Items no longer
    pending (a chunk run again after a crash) are left as they are. One statement
    per table (`mailboxes.record_test_outcomes`), however many results."""
    workspace_id = await session.scalar(select(BulkJob.workspace_id).where(BulkJob.id == job_id))
    pending = set(
        await session.scalars(
            select(BulkJobItem.id).where(
                BulkJobItem.id.in_([result.item_id for result in results]),
                BulkJobItem.outcome == "pending",
            )
        )
    )
    todo = [result for result in results if result.item_id in pending]
    verdicts: dict[str, mailboxes.TestVerdict] = {}
    if workspace_id is not None:
        verdicts = await mailboxes.record_test_outcomes(
            session,
            workspace_id,
            {result.test_id: result.outcome for result in todo if result.test_id},
        )
    now = utcnow()
    connected = failed = 0
    updates: list[dict[str, Any]] = []
    for result in todo:
        if result.item_id not in pending:
            continue
        pending.discard(result.item_id)
        verdict = verdicts.get(result.test_id) if result.test_id else None
        values: dict[str, Any] = {
            "id": result.item_id,
            "attempts": result.attempts,
            "finished_at": now,
        }
        if verdict is None:
            values.update(
                outcome="failed",
                error_code="MAILBOX_DELETED",
                message="The mailbox was deleted before it was verified",
            )
        elif verdict.status == ConnectionTestStatus.SUCCESS:
            values.update(outcome="connected", error_code=None, message=CONNECTED_MESSAGE)
        else:
            values.update(
                outcome="failed", error_code=verdict.error_code, message=verdict.error_message
            )
        if values["outcome"] == "connected":
            connected += 1
        else:
            failed += 1
        updates.append(values)
    if updates:
        # One executemany by primary key, not an UPDATE per item.
        await session.execute(update(BulkJobItem), updates)
        await session.execute(
            update(BulkJob)
            .where(BulkJob.id == job_id)
            .values(
                connected_count=BulkJob.connected_count + connected,
                failed_count=BulkJob.failed_count + failed,
                updated_at=now,
            )
        )
    await session.flush()
    return {"connected": connected, "failed": failed}


def failure_outcome(code: str, message: str) -> mailboxes.LoginOutcome:
    """A probe-shaped failure for mailboxes a job gives up on without a login."""
    result = {
        "ok": False,
        "code": code,
        "message": message,
        "latencyMs": 0,
        "folders": [],
        "replyCode": None,
        "transient": False,
    }
    return {"smtp": {"protocol": "smtp", **result}, "imap": {"protocol": "imap", **result}}


async def pending_items(session: AsyncSession, job_id: str, limit: int) -> list[ItemResult]:
    rows = await session.execute(
        select(BulkJobItem.id, ConnectionTest.id)
        .outerjoin(
            ConnectionTest,
            (ConnectionTest.job_id == BulkJobItem.job_id)
            & (ConnectionTest.mailbox_id == BulkJobItem.mailbox_id),
        )
        .where(BulkJobItem.job_id == job_id, BulkJobItem.outcome == "pending")
        .order_by(BulkJobItem.row)
        .limit(limit)
    )
    return [ItemResult(item_id, test_id, {}, 0) for item_id, test_id in rows]


async def close_job(
    session: AsyncSession, job_id: str, *, status: str, error: str | None = None
) -> str:
    """End the job: counters recounted from the items, which are the truth."""
    job = await session.get(BulkJob, job_id)
    if job is None:
        return "missing"
    if job.status in FINAL_JOB_STATUSES:
        return job.status
    counts: dict[str, int] = {
        outcome: count
        for outcome, count in await session.execute(
            select(BulkJobItem.outcome, func.count())
            .where(BulkJobItem.job_id == job_id)
            .group_by(BulkJobItem.outcome)
        )
    }
    now = utcnow()
    job.connected_count = counts.get("connected", 0)
    job.failed_count = counts.get("failed", 0)
    job.duplicate_count = counts.get("duplicate", 0)
    job.invalid_count = counts.get("invalid", 0)
    job.status = status
    job.error = error[:1000] if error else None
    job.started_at = job.started_at or now
    job.finished_at = now
    await session.flush()
    await _announce_finished(session, job)
    log.info("bulk job %s %s: %s", job_id, status, counts)
    return status


async def _announce_finished(session: AsyncSession, job: BulkJob) -> None:
    """`bulk_job.completed` for a job that just ended (completed or failed), in the
    transaction that ended it."""
    data = {
        "jobId": job.id,
        "status": job.status,
        "total": job.total,
        "succeeded": job.connected_count or 0,
        "failed": (job.failed_count or 0) + (job.invalid_count or 0),
        "duplicates": job.duplicate_count or 0,
    }
    if job.error:
        data["error"] = job.error
    await webhooks.emit(session, job.workspace_id, events.BULK_JOB_COMPLETED, data)


async def unfinished_job_ids(session: AsyncSession, limit: int = 100) -> list[str]:
    """Jobs queued or running: what the sweeper re-enqueues."""
    rows = await session.scalars(
        select(BulkJob.id)
        .where(BulkJob.status.in_(("queued", "running")))
        .order_by(BulkJob.created_at)
        .limit(limit)
    )
    return list(rows)


# Reports


REPORT_COLUMNS: Final = ("row", "email", "outcome", "error_code", "message", "mailbox_id")
# Spreadsheets run a cell that starts with one of these as a formula; a server's
# reply quoted in a message must stay text.
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


def report_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


async def report_rows(
    database: Database, job_id: str, page_size: int = 1000
) -> AsyncIterator[list[tuple[Any, ...]]]:
    """The items in row order, a page at a time, each page from a short read of
    its own: a report of 10,000 rows holds neither the whole list nor a long
    transaction."""
    after = 0
    while True:
        async with database.sessionmaker() as session:
            page = list(
                await session.execute(
                    select(
                        BulkJobItem.row,
                        BulkJobItem.email,
                        BulkJobItem.outcome,
                        BulkJobItem.error_code,
                        BulkJobItem.message,
                        BulkJobItem.mailbox_id,
                    )
                    .where(BulkJobItem.job_id == job_id, BulkJobItem.row > after)
                    .order_by(BulkJobItem.row)
                    .limit(page_size)
                )
            )
        if not page:
            return
        yield [tuple(row) for row in page]
        after = page[-1][0]
