"""Worker liveness: every process running the job engine beats; the living hand the
unfinished workflows of a dead worker back to their queues.

DBOS resumes a process's unfinished workflows when a process with the same executor
id (MAILFLEET_WORKER_ID) starts again. A worker that never comes back (its machine
is gone, its container rescheduled under another name) would leave them PENDING for
ever, a bulk job stuck at "running". So each process records a heartbeat every
HEARTBEAT_INTERVAL seconds, and at each beat looks for executors whose heartbeat is
older than MAILFLEET_WORKER_DEAD_AFTER. Their PENDING workflows go back to their
queues through DBOS's own recovery, which re-enqueues under a predicate on the dead
executor id: however many of the living notice at once, each workflow is dequeued by
one of them, and resumes from its last finished step.

A worker that was only slow (a pause longer than the threshold) and comes back finds
its workflows taken; DBOS's step records keep each finished step done once. Choose
the threshold well above any pause you expect.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import timedelta

from dbos import DBOS
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet import jobs
from mailfleet.kit.clock import utcnow
from mailfleet.kit.sql import insert_ignoring_conflict
from mailfleet.models import WorkerHeartbeat
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)

# Seconds between two heartbeats of one process (jobs.POLLERS runs `beat`).
HEARTBEAT_INTERVAL = 5.0
_started_at = utcnow()


async def beat() -> list[str]:
    """Record this process as alive, then recover the workflows of any worker that
    stopped beating. Answers the executor ids declared dead."""
    me = DBOS.executor_id
    now = utcnow()
    database = runtime().database
    async with database.transaction() as session:
        seen = await session.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.executor_id == me)
            .values(last_seen_at=now, pid=os.getpid(), hostname=socket.gethostname())
        )
        if not getattr(seen, "rowcount", 0):
            await insert_ignoring_conflict(
                session,
                WorkerHeartbeat,
                {
                    "executor_id": me,
                    "hostname": socket.gethostname(),
                    "pid": os.getpid(),
                    "started_at": _started_at,
                    "last_seen_at": now,
                },
            )
    return await recover_dead_workers()


async def living_count(session: AsyncSession, dead_after: float) -> int:
    """Processes whose heartbeat is younger than `dead_after` seconds."""
    cutoff = utcnow() - timedelta(seconds=dead_after)
    count = await session.scalar(
        select(func.count())
        .select_from(WorkerHeartbeat)
        .where(WorkerHeartbeat.last_seen_at >= cutoff)
    )
    return int(count or 0)


async def recover_dead_workers() -> list[str]:
    settings = runtime().settings
    database = runtime().database
    cutoff = utcnow() - timedelta(seconds=settings.worker_dead_after)
    async with database.transaction() as session:
        dead = list(
            await session.scalars(
                select(WorkerHeartbeat.executor_id).where(
                    WorkerHeartbeat.last_seen_at < cutoff,
                    WorkerHeartbeat.executor_id != DBOS.executor_id,
                )
            )
        )
    for executor_id in dead:
        handles = await asyncio.to_thread(DBOS._recover_pending_workflows, [executor_id])
        if handles:
            # Back on their queues: poll them now, here and on the other workers,
            # rather than at the next idle poll.
            jobs.wake(jobs.QUEUE_NAMES)
        log.warning(
            "worker %s sent no heartbeat for %.0f s: %d unfinished workflows handed back "
            "to their queues",
            executor_id,
            settings.worker_dead_after,
            len(handles),
        )
        async with database.transaction() as session:
            # Only if it is still silent: a worker back in the meantime keeps its row.
            await session.execute(
                delete(WorkerHeartbeat).where(
                    WorkerHeartbeat.executor_id == executor_id,
                    WorkerHeartbeat.last_seen_at < cutoff,
                )
            )
    return dead
