"""The bulk connect job: one durable workflow per job, verifying mailboxes in chunks.

A chunk covers a range of rows (MAILFLEET_BULK_CHUNK_SIZE). On PostgreSQL it is a
workflow of its own on the chunk queue (`run_bulk_chunk`), so whichever worker
dequeues it runs it: one job's chunks spread over every worker. On SQLite (one
process) it is a step of the job's workflow, which spares it a workflow's writes.
Its one step loads the chunk's pending
items, logs every one in to SMTP and IMAP at once, and records the results in one
transaction: the checkpoint is per chunk, never per mailbox, which at thousands of
mailboxes would cost more than the logins.

The job's workflow enqueues its chunks in row order, under ids made of the job id
and the chunk number, keeping enough unfinished to feed every living worker, and
waits for them (on SQLite it starts the steps itself, in row order). A worker
takes several chunks at once, and starts one while fewer
than twice MAILFLEET_BULK_CONCURRENCY of its mailboxes are busy: a chunk whose last
mailbox waits out a timeout or a retry does not hold the others back. The logins
themselves are capped by `LoginLimiter`: per process in total, and per mail host
(on PostgreSQL across every process: `host_slots`).

Crash safety: a chunk cut off by a crash runs again on resume and skips items
already recorded, so every mailbox ends in exactly one final state; a replayed job
workflow enqueues the same chunk ids again, which changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Final, cast

from dbos import DBOS
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_result,
    stop_after_attempt,
    wait_exponential,
)

from mailfleet import jobs, liveness, metrics
from mailfleet.bulk import service
from mailfleet.bulk.host_slots import SharedHostSlots
from mailfleet.bulk.service import ChunkItem, ItemResult
from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.mail.login_process import shared as shared_login_process
from mailfleet.mailboxes.service import (
    LoginOutcome,
    MailboxCredentials,
    probe_credentials,
    probe_options,
)
from mailfleet.models import BulkJobStatus
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)

# How long the workflow waits for a chunk before it looks again at how busy the
# running chunks are (it may start more while one lingers on a slow mailbox).
_WINDOW_CHECK: Final = 0.2
_GIVE_UP_PAGE: Final = 500
# A chunk records its final results this many at a time as they come in: a short
# transaction each (the requests of a one-process server wait less behind it) while
# the chunk, one checkpoint of the job, stays large enough that the job engine's
# bookkeeping per chunk costs little per mailbox. 50 rather than 25: half the
# transactions, 0.5 ms less CPU per mailbox, and status polls no slower (bench/
# bulk_connect.py, 10,000 mailboxes: p95 42 ms against 46 and 50).
_RECORD_BATCH: Final = 50


class LoginLimiter:
    """Caps the mailboxes being logged in to: `total` across every bulk job of
    this process, and `per_host` for any one mail host name (SMTP or IMAP): in
    this process, or with `shared` (PostgreSQL) across every process."""

    def __init__(self, total: int, per_host: int, shared: SharedHostSlots | None = None) -> None:
        self.total = total
        self.per_host = per_host
        self.shared = shared
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
        # Hosts first, in sorted order (in every process alike), and the global
        # slot last: a mailbox waiting for a busy host holds no global slot, and no
        # two mailboxes can wait for each other's hosts.
        names = sorted(set(hosts))
        async with contextlib.AsyncExitStack() as stack:
            if self.shared is not None:
                for host in names:
                    await stack.enter_async_context(self.shared.slot(host))
            else:
                await stack.enter_async_context(self._local_hosts(names))
            async with self._slots:
                yield

    @contextlib.asynccontextmanager
    async def _local_hosts(self, names: list[str]) -> AsyncIterator[None]:
        held: list[asyncio.Semaphore] = []
        entries = [self._enter_host(host) for host in names]
        try:
            for semaphore in entries:
                await semaphore.acquire()
                held.append(semaphore)
            yield
        finally:
            for semaphore in held:
                semaphore.release()
            for host in names:
                self._leave_host(host)


_limiter: LoginLimiter | None = None


def login_limiter(settings: Settings) -> LoginLimiter:
    """This process's limiter. On PostgreSQL the per-host cap is held in the
    database (`SharedHostSlots`): it holds across every worker."""
    global _limiter
    url = None if settings.is_sqlite else settings.app_database_url
    current = _limiter
    if (
        current is None
        or current.total != settings.bulk_concurrency
        or current.per_host != settings.bulk_per_host
        or (current.shared.url if current.shared else None) != url
    ):
        if current is not None and current.shared is not None:
            current.shared.close()
        shared = SharedHostSlots(url, settings.bulk_per_host) if url else None
        _limiter = current = LoginLimiter(settings.bulk_concurrency, settings.bulk_per_host, shared)
    return current


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


async def probe_mailbox(credentials: MailboxCredentials, settings: Settings) -> LoginOutcome:
    """One bulk mailbox's SMTP and IMAP logins: in the bulk login process
    (MAILFLEET_BULK_LOGIN_PROCESS, the default), or in this process."""
    if not settings.bulk_login_process:
        return await probe_credentials(credentials, settings)
    login_process = shared_login_process(probe_options(settings))
    return cast(LoginOutcome, await login_process.probe(credentials.smtp, credentials.imap))


async def _attempt(
    job_id: str, chunk: int, item: ChunkItem, limiter: LoginLimiter, settings: Settings
) -> LoginOutcome:
    try:
        if item.credentials is None:
            return {"missing": True}
        async with limiter.slot(item.hosts):
            return await probe_mailbox(item.credentials, settings)
    finally:
        key = (job_id, chunk)
        if key in _busy:
            _busy[key] -= 1
            _room_freed()


async def _as_finished(
    work: Sequence[ChunkItem], attempt: Callable[[ChunkItem], Awaitable[LoginOutcome]]
) -> AsyncGenerator[tuple[ChunkItem, LoginOutcome], None]:
    """Each item with its outcome, in the order the logins finish. If one raises
    (the login process died), the others are cancelled and the error goes on."""
    tasks = {asyncio.ensure_future(attempt(item)): item for item in work}
    try:
        pending = set(tasks)
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                yield tasks[task], task.result()
    finally:
        unfinished = [task for task in tasks if not task.done()]
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.gather(*unfinished, return_exceptions=True)


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

    async def record(final: list[ItemResult]) -> None:
        async with recorders(current.database), current.database.transaction() as s:
            counts = await service.record_results(s, job_id, final)
        for name, count in counts.items():
            totals[name] += count
            metrics.BULK_ROWS.labels(name).inc(count)

    async def login_round(work: list[ChunkItem], round_number: int) -> list[ChunkItem]:
        """Log in to each mailbox once; record the final results as they come, a
        batch at a time; answer the rest."""
        _busy[key] = len(work)
        last = round_number >= settings.bulk_max_attempts
        final: list[ItemResult] = []
        again: list[ChunkItem] = []
        finishing = _as_finished(
            work, lambda item: _attempt(job_id, chunk, item, limiter, settings)
        )
        async with contextlib.aclosing(finishing):
            async for item, outcome in finishing:
                if not last and worth_retrying(outcome):
                    again.append(item)
                    continue
                final.append(ItemResult(item.item_id, item.test_id, outcome, round_number))
                if len(final) >= _RECORD_BATCH:
                    await record(final)
                    final = []
        if final:
            await record(final)
        return again

    def waiting(state: RetryCallState) -> None:
        # Nothing of this chunk is busy while it waits: this process may start others.
        _busy[key] = 0
        _room_freed()

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


def chunk_workflow_id(job_id: str, chunk: int) -> str:
    return f"{service.job_workflow_id(job_id)}-chunk-{chunk}"


class _Signals:
    """This process's chunks waiting for room among the busy mailboxes (first come,
    first woken), and an event for a chunk workflow that ended; bound to the running
    event loop (made again for a new one, as tests run several)."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.chunk_ended = asyncio.Event()

    def current(self) -> _Signals:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.loop, self.waiting, self.chunk_ended = loop, deque(), asyncio.Event()
        return self


_signals = _Signals()


def _has_room() -> bool:
    return sum(_busy.values()) < 2 * runtime().settings.bulk_concurrency


def _room_freed() -> None:
    """Wake the next waiting chunk if there is room now: one, not all (a login
    ending frees room for a mailbox, not for every chunk waiting)."""
    waiting = _signals.waiting
    while waiting and _has_room():
        waiter = waiting.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


async def _wait_for_room(key: tuple[str, int], chunk_size: int) -> None:
    """A chunk starts (loads its mailboxes) only while this process has fewer than
    twice MAILFLEET_BULK_CONCURRENCY mailboxes busy: the queue hands a worker more
    chunks than that, so one lingering on a slow mailbox does not hold others back."""
    signals = _signals.current()
    while signals.waiting and signals.waiting[0].done():
        signals.waiting.popleft()
    if signals.waiting or not _has_room():
        while True:
            waiter = asyncio.get_running_loop().create_future()
            signals.waiting.append(waiter)
            # The timeout only guards against a wake-up lost to a cancelled waiter.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, _WINDOW_CHECK * 5)
            if _has_room():
                break
    _busy[key] = chunk_size
    # Room for more than this one: pass it on.
    _room_freed()


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=2.0)
async def verify_chunk(job_id: str, chunk: int, chunk_size: int) -> dict[str, int]:
    return await run_chunk(job_id, chunk, chunk_size)


@DBOS.workflow()
async def run_bulk_chunk(job_id: str, chunk: int, chunk_size: int) -> dict[str, int]:
    """One chunk of a bulk job, on the chunk queue: whichever worker dequeues it
    runs it, so one job's chunks spread over every worker."""
    key = (job_id, chunk)
    await _wait_for_room(key, chunk_size)
    try:
        return await verify_chunk(job_id, chunk, chunk_size)
    finally:
        _busy.pop(key, None)
        _room_freed()
        _signals.current().chunk_ended.set()


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


class ChunkFailed(Exception):
    pass


_CHUNK_FAILED: Final = frozenset({"ERROR", "CANCELLED", "MAX_RECOVERY_ATTEMPTS_EXCEEDED"})


async def _bulk_workers() -> int:
    """Processes alive by their heartbeats (at least this one)."""
    settings = runtime().settings
    async with runtime().database.transaction() as session:
        return max(1, await liveness.living_count(session, settings.worker_dead_after))


async def _run_chunks_here(job_id: str, chunks: int, chunk_size: int) -> None:
    """The job's chunks as steps of its own workflow, in this process: on SQLite,
    where there is one process, this spares each chunk a workflow of its own."""
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


async def _run_chunks_on_queue(job_id: str, chunks: int, chunk_size: int) -> None:
    """Enqueue the job's chunks on the chunk queue, in row order, keeping a window
    of unfinished ones (enough to fill every living worker's share,
    `jobs.bulk_chunks_per_worker`), and wait for them all.

    The chunk workflows have deterministic ids and are enqueued outside this
    workflow's context (not as recorded children): a replay enqueues them again,
    a no-op for those that exist, and waits for the same ones."""
    settings = runtime().settings
    per_worker = jobs.bulk_chunks_per_worker(settings)
    outstanding: dict[str, int] = {}
    next_chunk = 0
    window = 0
    counted_at = -math.inf
    check_every = 0.5
    loop = asyncio.get_running_loop()
    try:
        while next_chunk < chunks or outstanding:
            if loop.time() - counted_at > 5.0:
                window = per_worker * await jobs.detached(_bulk_workers)
                counted_at = loop.time()
            while next_chunk < chunks and len(outstanding) < window:
                workflow_id = chunk_workflow_id(job_id, next_chunk)
                await jobs.enqueue(
                    jobs.BULK_CHUNK_QUEUE,
                    run_bulk_chunk,
                    job_id,
                    next_chunk,
                    chunk_size,
                    workflow_id=workflow_id,
                )
                outstanding[workflow_id] = next_chunk
                next_chunk += 1
            # A chunk ending here says so at once; one ending on another worker is
            # seen at the next look.
            ended = _signals.current().chunk_ended
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), check_every)
            ended.clear()
            statuses = await jobs.detached(
                lambda: DBOS.list_workflows_async(
                    workflow_ids=list(outstanding), load_input=False, load_output=False
                )
            )
            for status in statuses:
                if status.status == "SUCCESS":
                    outstanding.pop(status.workflow_id, None)
                elif status.status in _CHUNK_FAILED:
                    raise ChunkFailed(
                        f"chunk {outstanding[status.workflow_id]} ended {status.status}"
                    )
    except BaseException:
        # The job ends here: chunks not yet run need not run.
        if outstanding:
            with contextlib.suppress(Exception):
                await jobs.detached(lambda: DBOS.cancel_workflows_async(list(outstanding)))
        raise


@DBOS.workflow()
async def run_bulk_job(job_id: str) -> str:
    plan = await begin_bulk_job(job_id)
    if plan is None:
        return "skipped"
    try:
        # Branching on the backend is deterministic: a database is never resumed
        # by a process on the other backend.
        run_chunks = _run_chunks_here if runtime().settings.is_sqlite else _run_chunks_on_queue
        await run_chunks(job_id, plan["chunks"], plan["chunkSize"])
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
