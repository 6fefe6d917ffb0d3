"""DBOS configuration and the queue registry.

All background work runs as DBOS workflows, durable in the system database
(a SQLite file beside the app database, or the same PostgreSQL database under
the `dbos` schema). `mailfleet serve` launches DBOS in the API process;
`mailfleet worker` launches it alone. Workers sharing one PostgreSQL share the
queues.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import inspect
import logging
import math
import socket
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, TypeVar

from dbos import (
    DBOS,
    DBOSConfig,
    Queue,
    SetEnqueueOptions,
    SetWorkflowAttributes,
    SetWorkflowID,
)
from dbos import _dbos as dbos_core
from dbos import _scheduler as dbos_scheduler
from dbos import _workflow_commands as dbos_commands
from dbos._queue import queue_worker_thread
from dbos._utils import INTERNAL_QUEUE_NAME
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from mailfleet import __version__
from mailfleet.config import Settings
from mailfleet.logconfig import remember_workflow_origin, request_id_var

log = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass(frozen=True)
class QueueSpec:
    """A queue's limits. `partition_concurrency` caps work per partition key
    (e.g. per mail host), across all workers.

    Polling: a queue is polled every `polling_interval_sec` while it is busy in
    this process (just after an enqueue here, or while a capped queue runs
    workflows here, whose ends free slots for the next), and every
    `idle_polling_interval_sec` otherwise: work another process enqueued waits
    at most that long for this one to look.
    """

    worker_concurrency: int | None = None
    global_concurrency: int | None = None
    partition_concurrency: int | None = None
    polling_interval_sec: float = 0.25
    idle_polling_interval_sec: float = 60.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def capped(self) -> bool:
        return any(
            limit is not None
            for limit in (
                self.worker_concurrency,
                self.global_concurrency,
                self.partition_concurrency,
            )
        )


# Modules whose workflows DBOS must know before launch (it recovers them by name).
WORKFLOW_MODULES: list[str] = [
    "mailfleet.mailboxes.workflows",
    "mailfleet.webhooks.workflows",
    "mailfleet.bulk.workflows",
    "mailfleet.domains.workflows",
    "mailfleet.domains.purchase_workflows",
    "mailfleet.billing.workflows",
    "mailfleet.exports.workflows",
    "mailfleet.warmup.workflows",
    "mailfleet.placement.workflows",
]


BULK_CHUNK_QUEUE: Final = "bulk_chunks"


def bulk_chunks_per_worker(settings: Settings) -> int:
    """Chunks one worker runs at once: four times what keeps twice
    MAILFLEET_BULK_CONCURRENCY mailboxes busy (a chunk starts its logins only while
    fewer are; the rest wait, loaded lazily, behind ones lingering on a slow host)."""
    return 4 * math.ceil(2 * settings.bulk_concurrency / settings.bulk_chunk_size)


def queue_specs(settings: Settings) -> dict[str, QueueSpec]:
    """The one place queues are declared. Business areas add theirs here."""
    return {
        # Housekeeping and small jobs.
        "default": QueueSpec(worker_concurrency=20),
        # One workflow per mailbox connection test, partitioned by SMTP host.
        "mailbox_verification": QueueSpec(
            worker_concurrency=settings.verify_concurrency,
            partition_concurrency=settings.verify_per_host,
        ),
        # One workflow per webhook delivery. No concurrency cap: a delivery waiting
        # out its backoff (hours) would hold a slot; the sender caps the POSTs.
        "webhook_delivery": QueueSpec(),
        # One workflow per bulk connect job. It verifies its mailboxes in chunks and
        # caps logins itself (MAILFLEET_BULK_CONCURRENCY, MAILFLEET_BULK_PER_HOST), so
        # the queue only bounds how many jobs one worker runs at once. Polled once a
        # second: a job that starts a second later costs nothing, polling does.
        "bulk_connect": QueueSpec(worker_concurrency=4, polling_interval_sec=1.0),
        # One workflow per chunk of a bulk job, enqueued by the job's workflow: the
        # queue, not the process running the job, decides where each chunk runs.
        # A worker takes enough chunks to keep its logins busy while some linger.
        BULK_CHUNK_QUEUE: QueueSpec(worker_concurrency=bulk_chunks_per_worker(settings)),
        # One workflow per domain DNS recheck; a few at once keeps resolvers unhurried.
        "domain_checks": QueueSpec(worker_concurrency=10),
        # Subscription renewals and wallet auto-recharges: one workflow each, short
        # (a few transactions and at most one card charge).
        "billing": QueueSpec(worker_concurrency=10),
        # One workflow per export to a sending platform, one at a time per platform
        # account (the partition key), so two exports never share its rate limit.
        "platform_export": QueueSpec(worker_concurrency=10, partition_concurrency=1),
        # One workflow per warmup round; rounds never overlap on a worker, so a slow
        # round delays the next instead of doubling the SMTP/IMAP load.
        "warmup": QueueSpec(worker_concurrency=1, polling_interval_sec=1.0),
        # One workflow per placement test; it caps its own SMTP/IMAP sessions
        # (MAILFLEET_PLACEMENT_CONCURRENCY), and mostly sleeps between reads.
        "placement": QueueSpec(worker_concurrency=10, polling_interval_sec=1.0),
    }


QUEUE_NAMES = frozenset(
    {
        "default",
        "mailbox_verification",
        "webhook_delivery",
        "bulk_connect",
        BULK_CHUNK_QUEUE,
        "domain_checks",
        "billing",
        "platform_export",
        "warmup",
        "placement",
    }
)

# Sweepers re-enqueue work whose enqueue a crash may have lost: (every N minutes,
# "module:function"). They run as the steps of one DBOS schedule, SWEEP_SCHEDULE,
# which fires once per minute across every worker sharing the system database (the
# run's workflow id is the schedule name and the tick), not once per process: one
# workflow and one scheduler thread a minute rather than one per sweeper. They must
# be idempotent: a sweep enqueues under deterministic workflow ids.
SWEEPERS: list[tuple[int, str]] = [
    (1, "mailfleet.mailboxes.workflows:requeue_pending_tests"),
    (1, "mailfleet.webhooks.workflows:requeue_pending_deliveries"),
    (1, "mailfleet.bulk.workflows:requeue_unfinished_jobs"),
    (5, "mailfleet.domains.workflows:enqueue_due_dns_checks"),
    (1, "mailfleet.billing.workflows:enqueue_due_renewals"),
    (1, "mailfleet.domains.purchase_workflows:requeue_unfinished_orders"),
    (1, "mailfleet.exports.workflows:requeue_unfinished_exports"),
    (1, "mailfleet.placement.workflows:requeue_unfinished_tests"),
]
# (schedule name, six-field cron with seconds): second 0 of every minute.
SWEEP_SCHEDULE = ("sweepers", "0 * * * * *")
# Pollers every process runs in a loop (seconds, "module:function"): work due more
# often than a sweep, where a DBOS schedule would write a workflow row per tick. A
# poller must be idempotent across processes itself (deterministic workflow ids).
# The seconds are a number, or "module:function" answering them for the settings.
POLLERS: list[tuple[float | str, str]] = [
    # Cheap when nothing is due: it enqueues one round per MAILFLEET_WARMUP_INTERVAL
    # under the interval's number, so workers never start the same round twice.
    (1.0, "mailfleet.warmup.workflows:enqueue_due_round"),
    # This process's heartbeat; at each, the unfinished workflows of a worker silent
    # for MAILFLEET_WORKER_DEAD_AFTER go back to their queues.
    ("mailfleet.liveness:heartbeat_interval", "mailfleet.liveness:beat"),
    # The API keys' last-used times that requests noted in memory (a request that
    # only reads never writes): one statement for every key used since the last.
    (15.0, "mailfleet.accounts.usage:flush"),
]
_poller_tasks: list[asyncio.Task[None]] = []
_launched = False


class QueueWaker(threading.Event):
    """The event a queue's DBOS worker thread waits on between polls: it stops the
    thread when set (as DBOS's own stop event does), and it sets how long a wait
    lasts. DBOS asks for its polling interval; an idle queue waits its idle
    interval instead, and an enqueue in this process (`nudge`) ends any wait at
    once, so quiet queues cost almost nothing and still start work at once."""

    def __init__(self, idle_interval: float, busy: Callable[[], bool]) -> None:
        super().__init__()
        self.idle_interval = idle_interval
        self._busy = busy
        self._changed = threading.Condition()
        self._stopping = False
        # The first poll is immediate: a process starting up takes what is queued.
        self._nudged = True

    def set(self) -> None:
        with self._changed:
            self._stopping = True
            self._changed.notify_all()

    def is_set(self) -> bool:
        return self._stopping

    def nudge(self) -> None:
        with self._changed:
            self._nudged = True
            self._changed.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        with self._changed:
            if not (self._nudged or self._stopping):
                limit = timeout if self._busy() else max(timeout or 0.0, self.idle_interval)
                self._changed.wait_for(lambda: self._nudged or self._stopping, limit)
            self._nudged = False
            return self._stopping


_wakers: dict[str, QueueWaker] = {}
# DBOS's internal queue carries the sweepers' ticks, which wake it as they are
# enqueued (`_enqueue_scheduled_and_wake`), and resume commands, which are rare.
INTERNAL_IDLE_POLLING_INTERVAL_SEC = 60.0
# DBOS's background jobs start delayed workflows and cancel timed-out ones;
# Mailfleet uses neither, so once a minute is plenty.
DBOS_BACKGROUND_JOBS_INTERVAL_SEC = 60.0
_enqueue_scheduled = dbos_scheduler._enqueue_scheduled_workflow


def _enqueue_scheduled_and_wake(*args: Any, **kwargs: Any) -> None:
    """DBOS's scheduler thread enqueues a schedule's tick through this: the tick's
    queue is polled at once rather than at its next idle poll."""
    _enqueue_scheduled(*args, **kwargs)
    queue = inspect.signature(_enqueue_scheduled).bind(*args, **kwargs).arguments.get("queue_name")
    waker = _wakers.get(queue or INTERNAL_QUEUE_NAME)
    if waker is not None:
        waker.nudge()


def is_launched() -> bool:
    """Whether this process runs the job engine (readiness reports it)."""
    return _launched


@DBOS.step()
async def sweep_step(target: str) -> None:
    await _imported(target)()


@DBOS.workflow()
async def sweep(scheduled_at: datetime, target: str) -> None:
    """Run one sweeper, `target` ("module:function"), as a workflow of its own."""
    await sweep_step(target)


@DBOS.workflow()
async def sweep_tick(scheduled_at: datetime, _context: object = None) -> None:
    """One tick of SWEEP_SCHEDULE: each sweeper due at this minute, in SWEEPERS'
    order. Which are due depends on the tick alone, so a run resumed after a crash
    takes the same steps."""
    minute = int(scheduled_at.timestamp() // 60)
    for every, target in SWEEPERS:
        if minute % every:
            continue
        try:
            await sweep_step(target)
        except Exception:
            # The next tick sweeps again; one failed sweep must not stop the others.
            log.exception("sweeper %s failed (tick %s)", target, scheduled_at.isoformat())


async def _apply_sweepers() -> None:
    """Make the stored schedules match SWEEP_SCHEDULE: add or update it, and delete
    any other sweeper schedule (an older release's one per sweeper, which would
    keep firing a target that may be gone)."""
    name, cron = SWEEP_SCHEDULE
    await DBOS.apply_schedules_async(
        [{"schedule_name": name, "workflow_fn": sweep_tick, "schedule": cron, "context": None}]
    )
    ours = (sweep.__qualname__, sweep_tick.__qualname__)
    for schedule in await DBOS.list_schedules_async():
        retired = schedule["schedule_name"] != name
        if retired and schedule["workflow_name"].endswith(ours):
            await DBOS.delete_schedule_async(schedule["schedule_name"])
            log.info("deleted the retired sweeper schedule %s", schedule["schedule_name"])


def dbos_config(settings: Settings) -> DBOSConfig:
    config: DBOSConfig = {
        "name": "mailfleet",
        "system_database_url": settings.system_database_url,
        "log_level": settings.log_level,
        # A worker resumes only the workflows of its own executor id, so a
        # restarted worker must come back under the same id.
        "executor_id": settings.worker_id or socket.gethostname(),
        # Only DBOS.recv and get_event wait on notifications; Mailfleet uses neither.
        "notification_listener_polling_interval_sec": 1.0,
        # Schedules are applied once at launch; DBOS polls fast for a while after it.
        "scheduler_polling_interval_sec": 60.0,
    }
    if not settings.is_sqlite:
        config["dbos_system_schema"] = "dbos"
    return config


def _enable_sqlite_wal(system_database_url: str) -> None:
    # DBOS leaves SQLite in rollback-journal mode; WAL (persistent per file)
    # lets the queue poller read while workflows write, and enqueues faster.
    path = system_database_url.split(":///", 1)[1]
    connection = sqlite3.connect(path, timeout=30)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()


async def launch(settings: Settings) -> None:
    """Start DBOS: recover this executor's unfinished workflows, start the queues."""
    for module in WORKFLOW_MODULES:
        importlib.import_module(module)
    if settings.is_sqlite:
        settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
        # Before launch: switching the journal mode needs the file to ourselves.
        _enable_sqlite_wal(settings.system_database_url)
    instance = DBOS(config=dbos_config(settings))
    if settings.worker_queues is not None:
        unknown = sorted(set(settings.worker_queues) - QUEUE_NAMES)
        if unknown:
            raise ValueError(
                f"MAILFLEET_WORKER_QUEUES names unknown queues {unknown}; "
                f"known: {sorted(QUEUE_NAMES)}"
            )
    # DBOS's queue manager would poll every queue at its fixed interval and list the
    # queues table every second; this process runs each queue's worker loop itself,
    # paced by a QueueWaker: DBOS's own queues now, Mailfleet's once registered.
    setattr(dbos_core, "queue_thread", _start_internal_queue_workers)  # noqa: B010 (mypy)
    # DBOS's background jobs (delayed workflows, workflow timeouts: Mailfleet uses
    # neither) run every second by default; each run is two queries.
    setattr(dbos_commands, "_BACKGROUND_JOBS_INTERVAL_SEC", DBOS_BACKGROUND_JOBS_INTERVAL_SEC)  # noqa: B010
    setattr(dbos_scheduler, "_enqueue_scheduled_workflow", _enqueue_scheduled_and_wake)  # noqa: B010
    DBOS.launch()
    specs = queue_specs(settings)
    assert set(specs) == QUEUE_NAMES, "declare every queue in both queue_specs and QUEUE_NAMES"
    served = served_queues(settings.worker_queues)
    for name, spec in specs.items():
        queue = await DBOS.register_queue_async(
            name,
            worker_concurrency=spec.worker_concurrency,
            global_concurrency=spec.global_concurrency,
            partition_concurrency=spec.partition_concurrency,
            polling_interval_sec=spec.polling_interval_sec,
            **spec.extra,
        )
        # MAILFLEET_WORKER_QUEUES: the queues this process serves (an API-only serve
        # serves none); DBOS's own internal queue is always served.
        if name in served:
            _start_queue_worker(instance, queue, spec.idle_polling_interval_sec, capped=spec.capped)
    _start_wake_link(settings)
    await _apply_sweepers()
    # Each sweep once at start as well: a process back from a crash picks up what it
    # left behind now, not at the next tick (up to a minute away).
    for _, target in SWEEPERS:
        _poller_tasks.append(asyncio.create_task(_sweep_once(target)))
    for every, target in POLLERS:
        interval = _imported(every)(settings) if isinstance(every, str) else every
        _poller_tasks.append(asyncio.create_task(_poll(interval, target)))
    global _launched
    _launched = True
    log.info("job engine launched (mailfleet %s)", __version__)


def served_queues(named: list[str] | None) -> frozenset[str]:
    """The queues a process serves: those MAILFLEET_WORKER_QUEUES names (all when
    unset). A process serving bulk jobs serves their chunks too, so a setting
    written before jobs had chunk workflows keeps its jobs running."""
    if named is None:
        return QUEUE_NAMES
    served = set(named)
    if "bulk_connect" in served:
        served.add(BULK_CHUNK_QUEUE)
    return frozenset(served)


def _start_queue_worker(
    instance: DBOS, queue: Queue, idle_interval: float, *, capped: bool
) -> None:
    """Run DBOS's worker loop for one queue, waiting on a QueueWaker between polls.

    A capped queue counts as busy while this process runs any of its workflows:
    one ending frees a slot that the next queued workflow should take at once.
    An uncapped queue has no slot to wait for (a webhook delivery sleeping out
    its backoff for hours must not keep its queue polled fast).
    """
    active = instance._active_workflows_set

    def busy() -> bool:
        return capped and active.count_for_queue(queue.name) > 0

    waker = QueueWaker(idle_interval, busy)
    thread = threading.Thread(
        target=queue_worker_thread,
        args=(waker, instance, queue),
        name=f"queue-worker-{queue.name}",
        daemon=True,
    )
    # DBOS.destroy sets these events and joins these threads, before it closes
    # the system database the loop reads.
    instance.background_thread_stop_events.append(waker)
    instance._background_threads.append(thread)
    _wakers[queue.name] = waker
    thread.start()


def _start_internal_queue_workers(stop_event: threading.Event, instance: DBOS) -> None:
    """Stands in for DBOS's queue manager thread at launch (`stop_event` is the
    one DBOS made for it; each worker has its own). DBOS's internal queues carry
    the sweepers' scheduled runs and workflow resume commands: nothing here
    enqueues on them, so nothing nudges them, and a few seconds' wait is harmless."""
    for queue in instance._registry.internal_queues():
        _start_queue_worker(instance, queue, INTERNAL_IDLE_POLLING_INTERVAL_SEC, capped=False)


async def _sweep_once(target: str) -> None:
    try:
        await _imported(target)()
    except Exception:
        log.exception("sweeper %s failed at start", target)


async def _poll(interval: float, target: str) -> None:
    function = _imported(target)
    while True:
        try:
            await function()
        except Exception:
            log.exception("poller %s failed", target)
        await asyncio.sleep(interval)


def _imported(target: str) -> Callable[..., Any]:
    """The function named "module:function"."""
    module_name, _, function_name = target.partition(":")
    function: Callable[..., Any] = getattr(importlib.import_module(module_name), function_name)
    return function


def wake(queues: Iterable[str]) -> None:
    """Poll these queues now, here and (on PostgreSQL) on every other process: work
    was just put on them. Cheap and never blocks; enqueue calls it."""
    names = set(queues)
    for name in names:
        waker = _wakers.get(name)
        if waker is not None:
            waker.nudge()
    if _wake_link is not None:
        _wake_link.request(names)


class WakeLink:
    """Wakes a queue on every process, on PostgreSQL: each process LISTENs on one
    channel, and an enqueue NOTIFYs the queue's name (once per queue for a burst of
    enqueues), so an API-only serve's work starts at once on the workers, whose idle
    queues would otherwise look only every 30 s. A lost connection is reopened; work
    enqueued meanwhile waits for the next idle poll, as without the link."""

    CHANNEL: Final = "mailfleet_queue_wake"

    def __init__(self, url: str) -> None:
        self.url = url
        self._requested: set[str] = set()
        self._pending = asyncio.Event()
        self.connected = asyncio.Event()

    def request(self, queues: Iterable[str]) -> None:
        self._requested.update(queues)
        self._pending.set()

    def _heard(self, _connection: object, _pid: int, _channel: str, payload: object) -> None:
        waker = _wakers.get(str(payload))
        if waker is not None:
            waker.nudge()

    async def run(self) -> None:
        # Its own connection, outside the pool: it stays open, listening, for good.
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            while True:
                try:
                    await self._serve(engine)
                except Exception:
                    log.warning("queue wake-ups: PostgreSQL connection lost; reopening")
                await asyncio.sleep(1)
        finally:
            await engine.dispose()

    async def _serve(self, engine: AsyncEngine) -> None:
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            listener: Any = raw.driver_connection  # asyncpg's connection
            listener.add_termination_listener(lambda _connection: self._pending.set())
            await listener.add_listener(self.CHANNEL, self._heard)
            self.connected.set()
            try:
                while not listener.is_closed():
                    await self._pending.wait()
                    self._pending.clear()
                    queues, self._requested = sorted(self._requested), set()
                    if queues and not listener.is_closed():
                        await listener.execute(
                            "SELECT pg_notify($1, name) FROM unnest($2::text[]) AS name",
                            self.CHANNEL,
                            queues,
                        )
            finally:
                self.connected.clear()


_wake_link: WakeLink | None = None


def _start_wake_link(settings: Settings) -> None:
    global _wake_link
    if settings.is_sqlite:
        return
    _wake_link = WakeLink(settings.app_database_url)
    _poller_tasks.append(asyncio.create_task(_wake_link.run()))


async def stop_background_tasks(grace: float = 10.0) -> None:
    """Cancel the sweeps, pollers and wake-up link of this process and wait (a
    bounded time) until they have ended."""
    tasks = list(_poller_tasks)
    _poller_tasks.clear()
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=grace)


def shutdown() -> None:
    global _wake_link
    for task in _poller_tasks:
        task.cancel()
    _poller_tasks.clear()
    _wakers.clear()
    _wake_link = None
    global _launched
    _launched = False
    DBOS.destroy(workflow_completion_timeout_sec=0)


async def enqueue(
    queue: str,
    workflow: Callable[..., Coroutine[Any, Any, R]],
    *args: Any,
    workflow_id: str,
    partition_key: str | None = None,
) -> str:
    """Enqueue a workflow under a deterministic id: enqueueing it again is a no-op,
    so a sweeper may re-enqueue anything it is unsure about.

    Safe from anywhere, a DBOS step included: the enqueue runs in a task with an
    empty context, because DBOS refuses to start a workflow from inside a step
    (its context travels in contextvars) and would otherwise record it as a child.
    """
    if queue not in QUEUE_NAMES:
        raise KeyError(f"unknown queue {queue!r}; declare it in mailfleet.jobs.queue_specs")

    # The request that asks for the work is recorded with the workflow (its
    # attributes), and its id decorates the workflow's log lines in this process.
    request_id = request_id_var.get()
    attributes = {"requestId": request_id} if request_id else None
    if request_id:
        # Before the enqueue: the workflow may start (and log) before it returns.
        remember_workflow_origin(workflow_id, request_id)

    async def enqueue_detached() -> str:
        with (
            SetWorkflowID(workflow_id),
            SetEnqueueOptions(queue_partition_key=partition_key),
            SetWorkflowAttributes(attributes),
        ):
            handle = await DBOS.enqueue_workflow_async(queue, workflow, *args)
        return handle.workflow_id

    task = asyncio.get_running_loop().create_task(enqueue_detached(), context=contextvars.Context())
    enqueued = await task
    wake([queue])
    if request_id:
        log.info("enqueued workflow %s on queue %s", enqueued, queue)
    return enqueued


async def detached(call: Callable[[], Awaitable[R]]) -> R:
    """Await `call()` outside any DBOS workflow or step context: inside a workflow,
    DBOS records its own calls (listing workflows, cancelling) as steps, whose
    order a timing-dependent loop could not keep the same on replay."""
    task = asyncio.get_running_loop().create_task(_awaited(call), context=contextvars.Context())
    return await task


async def _awaited(call: Callable[[], Awaitable[R]]) -> R:
    return await call()


async def enqueue_named(
    queue: str,
    workflow: str,
    *args: Any,
    workflow_id: str,
    partition_key: str | None = None,
) -> str:
    """`enqueue` with the workflow named "module:function", imported only now.

    The seam for a service whose workflows module imports it back: the service
    names its workflow instead of importing it, so the area has no import cycle.
    """
    return await enqueue(
        queue, _imported(workflow), *args, workflow_id=workflow_id, partition_key=partition_key
    )
