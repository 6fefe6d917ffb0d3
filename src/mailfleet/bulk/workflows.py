"""The bulk connect job: one durable workflow per job, verifying mailboxes in chunks.

A chunk is a DBOS step covering a range of rows (MAILFLEET_BULK_CHUNK_SIZE). It
loads its pending items, logs every one in to SMTP and IMAP at once, and records
the results in one transaction: the checkpoint is per chunk, never per mailbox,
which at thousands of mailboxes would cost more than the logins.

Many chunks run at once. The workflow starts chunk after chunk, always in row
order (so a resumed workflow replays the same step for the same chunk), while
fewer than twice MAILFLEET_BULK_CONCURRENCY mailboxes are busy; a chunk whose
last mailbox waits out a timeout or a retry does not hold the others back. The
logins themselves are capped per process by `LoginLimiter`: in total, and per
mail host.

Crash safety: a chunk cut off by a crash runs again on resume and skips items
already recorded, so every mailbox ends in exactly one final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Final

from dbos import DBOS
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from mailfleet import metrics
from mailfleet.bulk import service
from mailfleet.bulk.service import ChunkItem, ItemResult
from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.mailboxes.service import LoginOutcome
from mailfleet.mailboxes.service import probe_credentials as probe_logins
from mailfleet.models import BulkJobStatus
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)

# How long the workflow waits for a chunk before it looks again at how busy the
# running chunks are (it may start more while one lingers on a slow mailbox).
_WINDOW_CHECK: Final = 0.2
_GIVE_UP_PAGE: Final = 500


class LoginLimiter:
    """Caps the mailboxes being logged in to: `total` across every bulk job of
    this process, and `per_host` for any one mail host name (SMTP or IMAP)."""

    def __init__(self, total: int, per_host: int) -> None:
        self.total = total
        self.per_host = per_host
        self._slots = asyncio.Semaphore(total)
        self._hosts: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    def _enter_host(self, host: str) -> asyncio.Semaphore:
        # Host semaphores live only while someone uses them: an import touching
        # thousands of hosts must not leave thousands behind.
        entry = self._hosts.get(host)
        if entry is None:
            entry = self._hosts[host] = (asyncio.Semaphore(self.per_host), [0])
        entry[1][0] += 1
        return entry[0]

    def _leave_host(self, host: str) -> None:
        entry = self._hosts[host]
        entry[1][0] -= 1
        if entry[1][0] == 0:
            del self._hosts[host]

    @contextlib.asynccontextmanager
    async def slot(self, hosts: Sequence[str]) -> AsyncIterator[None]:
        # Hosts first, in sorted order, and the global slot last: a mailbox waiting
        # for a busy host holds no global slot, and no two mailboxes can wait for
        # each other's hosts.
        names = sorted(set(hosts))
        held: list[asyncio.Semaphore] = []
        entries = [self._enter_host(host) for host in names]
        try:
            for semaphore in entries:
                await semaphore.acquire()
                held.append(semaphore)
            await self._slots.acquire()
            try:
                yield
            finally:
                self._slots.release()
        finally:
            for semaphore in held:
                semaphore.release()
            for host in names:
                self._leave_host(host)


_limiter: LoginLimiter | None = None


def login_limiter(settings: Settings) -> LoginLimiter:
    global _limiter
    if (
        _limiter is None
        or _limiter.total != settings.bulk_concurrency
        or _limiter.per_host != settings.bulk_per_host
    ):
        _limiter = LoginLimiter(settings.bulk_concurrency, settings.bulk_per_host)
    return _limiter


def worth_retrying(outcome: LoginOutcome) -> bool:
    """Retry only when every failure is transient (timeout, refused, SMTP 4xx...):
    a rejected password stays rejected."""
    results = [result for result in (outcome.get("smtp"), outcome.get("imap")) if result]
    failures = [result for result in results if not result["ok"]]
    return bool(failures) and all(failure.get("transient") for failure in failures)


_recorders: asyncio.Semaphore | None = None


def recorders(database: Database) -> asyncio.Semaphore:
    """How many chunks of this process record their results at once. SQLite takes
    one writer at a time: more would only wait on its lock while holding pool
    connections that requests need. PostgreSQL locks rows, so a few chunks record
    side by side (they share only the job's counters, updated last)."""
    global _recorders
    if _recorders is None:
        _recorders = asyncio.Semaphore(1 if database.is_sqlite else 4)
    return _recorders


# Mailboxes each running chunk still has busy (probing or waiting for a slot),
# by (job, chunk): how the workflow knows when to start another chunk.
_busy: dict[tuple[str, int], int] = {}


async def _attempt(
    job_id: str, chunk: int, item: ChunkItem, limiter: LoginLimiter, settings: Settings
) -> LoginOutcome:
    try:
        if item.credentials is None:
            return {"missing": True}
        async with limiter.slot(item.hosts):
            return await probe_logins(item.credentials, settings)
    finally:
        key = (job_id, chunk)
        if key in _busy:
            _busy[key] -= 1


def login_retry_policy(
    settings: Settings, before_sleep: Callable[[RetryCallState], None] | None = None
) -> AsyncRetrying:
    """The one retry policy of bulk logins. Each round logs in every mailbox of
    the chunk still to do and answers those worth another round (every failure
    transient: timeout, refused or dropped connection, SMTP 4xx; a rejected
    password never is). Up to MAILFLEET_BULK_MAX_ATTEMPTS rounds, waiting
    MAILFLEET_BULK_RETRY_DELAY before the second, doubled before each next one.
    A login changes nothing on the mail server, so a timed-out one is retried
    like any transient failure."""
    return AsyncRetrying(
        stop=stop_after_attempt(settings.bulk_max_attempts),
        wait=wait_exponential(multiplier=settings.bulk_retry_delay, exp_base=2),
        retry=retry_if_result(bool),
        before_sleep=before_sleep,
        # Out of rounds: nothing is left over (the last round made every result final).
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else [],
    )


async def run_chunk(job_id: str, chunk: int, chunk_size: int) -> dict[str, int]:
    """Verify the pending mailboxes of one chunk; retry transient failures with
    backoff (`login_retry_policy`); record results as they become final."""
    current = runtime()
    settings = current.settings
    limiter = login_limiter(settings)
    key = (job_id, chunk)
    first_row = chunk * chunk_size + 1
    last_row = first_row + chunk_size - 1
    totals = {"connected": 0, "failed": 0}

    async def login_round(work: list[ChunkItem], round_number: int) -> list[ChunkItem]:
        """Log in to each mailbox once; record the final results; answer the rest."""
        _busy[key] = len(work)
        outcomes = await asyncio.gather(
            *(_attempt(job_id, chunk, item, limiter, settings) for item in work)
        )
        last = round_number >= settings.bulk_max_attempts
        final: list[ItemResult] = []
        again: list[ChunkItem] = []
        for item, outcome in zip(work, outcomes, strict=True):
            if not last and worth_retrying(outcome):
                again.append(item)
            else:
                final.append(ItemResult(item.item_id, item.test_id, outcome, round_number))
        if final:
            async with recorders(current.database), current.database.transaction() as s:
                counts = await service.record_results(s, job_id, final)
            for name, count in counts.items():
                totals[name] += count
                metrics.BULK_ROWS.labels(name).inc(count)
        return again

    def waiting(state: RetryCallState) -> None:
        # Nothing of this chunk is busy while it waits: the workflow may start others.
        _busy[key] = 0

    try:
        async with current.database.transaction() as session:
            work = await service.load_chunk(session, current.keyring, job_id, first_row, last_row)
        if work:
            async for attempt in login_retry_policy(settings, before_sleep=waiting):
                with attempt:
                    # Credentials of finished mailboxes are not kept while the rest wait.
                    work = await login_round(work, attempt.retry_state.attempt_number)
                outcome = attempt.retry_state.outcome
                if outcome is not None and not outcome.failed:
                    attempt.retry_state.set_result(work)
    finally:
        _busy.pop(key, None)
    return totals


@DBOS.step()
async def begin_bulk_job(job_id: str) -> dict[str, int] | None:
    """Mark the job running and fix its chunking (kept, so a resume reuses it)."""
    current = runtime()
    async with current.database.transaction() as session:
        last_row = await service.begin_job(session, job_id)
    if last_row is None:
        return None
    size = current.settings.bulk_chunk_size
    return {"chunks": math.ceil(last_row / size), "chunkSize": size}


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=2.0)
async def verify_chunk(job_id: str, chunk: int, chunk_size: int) -> dict[str, int]:
    return await run_chunk(job_id, chunk, chunk_size)


async def _give_up_pending(job_id: str, code: str, message: str) -> None:
    """Fail whatever is still pending, a page at a time (tests and mailboxes too)."""
    database = runtime().database
    while True:
        async with database.transaction() as session:
            pending = await service.pending_items(session, job_id, _GIVE_UP_PAGE)
            if not pending:
                return
            outcome = service.failure_outcome(code, message)
            await service.record_results(
                session,
                job_id,
                [
                    ItemResult(item.item_id, item.test_id, outcome, item.attempts)
                    for item in pending
                ],
            )


@DBOS.step()
async def finish_bulk_job(job_id: str) -> str:
    # Every chunk ran to the end, so nothing should be pending; if something is,
    # say so per row rather than leave a mailbox waiting forever.
    await _give_up_pending(job_id, "NOT_VERIFIED", "The job ended before this mailbox was tested")
    async with runtime().database.transaction() as session:
        return await service.close_job(session, job_id, status=BulkJobStatus.COMPLETED)


async def fail_bulk_job(job_id: str, reason: str) -> str:
    """Not a step: how many chunks had started when one failed depends on timing,
    so its position among the steps could differ on replay. It is idempotent,
    and runs again harmlessly if the workflow is replayed."""
    await _give_up_pending(job_id, "JOB_FAILED", reason)
    async with runtime().database.transaction() as session:
        return await service.close_job(session, job_id, status=BulkJobStatus.FAILED, error=reason)


async def _run_chunks(job_id: str, chunks: int, chunk_size: int) -> None:
    settings = runtime().settings
    target = 2 * settings.bulk_concurrency
    # Bounds what the chunks hold in memory when many linger on slow mailboxes.
    max_running = 4 * math.ceil(target / chunk_size)
    running: dict[asyncio.Future[dict[str, int]], int] = {}
    next_chunk = 0

    def busy() -> int:
        return sum(_busy.get((job_id, chunk), chunk_size) for chunk in running.values())

    try:
        while next_chunk < chunks or running:
            while next_chunk < chunks and len(running) < max_running and busy() < target:
                # Chunk k is always the k-th step started, whatever the timing: a
                # replay after a crash maps each recorded step to the same chunk.
                started = asyncio.ensure_future(verify_chunk(job_id, next_chunk, chunk_size))
                running[started] = next_chunk
                next_chunk += 1
            done, _ = await asyncio.wait(
                running, timeout=_WINDOW_CHECK, return_when=asyncio.FIRST_COMPLETED
            )
            for finished in done:
                running.pop(finished)
                finished.result()
    finally:
        for unfinished in running:
            unfinished.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


@DBOS.workflow()
async def run_bulk_job(job_id: str) -> str:
    plan = await begin_bulk_job(job_id)
    if plan is None:
        return "skipped"
    try:
        await _run_chunks(job_id, plan["chunks"], plan["chunkSize"])
    except Exception as exc:
        log.exception("bulk job %s failed", job_id)
        return await fail_bulk_job(
            job_id, f"The job stopped on an internal error ({type(exc).__name__})"
        )
    return await finish_bulk_job(job_id)


async def requeue_unfinished_jobs() -> int:
    """Re-enqueue jobs left queued or running (their enqueue lost to a crash right
    after commit). Enqueueing an existing workflow id is a no-op, so every process
    may run this periodically."""
    async with runtime().database.transaction() as session:
        job_ids = await service.unfinished_job_ids(session)
    for job_id in job_ids:
        await service.enqueue_job(job_id)
    return len(job_ids)
