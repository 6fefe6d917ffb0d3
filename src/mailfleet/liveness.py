"""Worker liveness: every process running the job engine beats; the living hand the
unfinished workflows of a dead worker back to their queues.

DBOS resumes a process's unfinished workflows when a process with the same executor
id (MAILFLEET_WORKER_ID) starts again. A worker that never comes back (its machine
is gone, its container rescheduled under another name) would leave them PENDING for
ever, a bulk job stuck at "running". So each process records a heartbeat six times
per MAILFLEET_WORKER_DEAD_AFTER, and at each beat looks for executors whose heartbeat
is older than that. Their PENDING workflows go back to their
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
from datetime import datetime, timedelta

from dbos import DBOS
from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet import jobs
from mailfleet.config import Settings
from mailfleet.kit.clock import utcnow
from mailfleet.kit.sql import insert_ignoring_conflict
from mailfleet.models import WorkerHeartbeat
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)

# A process beats this many times within MAILFLEET_WORKER_DEAD_AFTER (jobs.POLLERS
# runs `beat`): a worker is declared dead only after missing several beats in a row,
# and an idle process writes its heartbeat every 10 seconds at the default 60.
BEATS_PER_DEAD_AFTER = 6
_started_at = utcnow()


def heartbeat_interval(settings: Settings) -> float:
    """Seconds between two heartbeats of one process."""
    return settings.worker_dead_after / BEATS_PER_DEAD_AFTER


async def beat() -> list[str]:
    """Record this process as alive and find the workers that stopped beating, in
    one transaction, then recover their workflows. Answers the executor ids
    declared dead."""
    me = DBOS.executor_id
    now = utcnow()
    settings = runtime().settings
    async with runtime().database.transaction() as session:
        seen = await session.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.executor_id == me)
            .values(last_seen_at=now, pid=os.getpid(), hostname=socket.gethostname())
            .execution_options(synchronize_session=False)
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
        cutoff = now - timedelta(seconds=settings.worker_dead_after)
        dead = await _silent_since(session, cutoff)
    for executor_id in dead:
        await _hand_back(executor_id, cutoff)
    return dead


async def living_count(session: AsyncSession, dead_after: float) -> int:
    """Processes whose heartbeat is younger than `dead_after` seconds."""
    cutoff = utcnow() - timedelta(seconds=dead_after)
    count = await session.scalar(
        select(func.count())
        .select_from(WorkerHeartbeat)
        .where(WorkerHeartbeat.last_seen_at >= cutoff)
    )
    return int(count or 0)


async def _silent_since(session: AsyncSession, cutoff: datetime) -> list[str]:
    """The other executors whose last heartbeat is older than `cutoff`."""
    return list(
        await session.scalars(
            select(WorkerHeartbeat.executor_id).where(
                WorkerHeartbeat.last_seen_at < cutoff,
                WorkerHeartbeat.executor_id != DBOS.executor_id,
            )
        )
    )


async def _hand_back(executor_id: str, cutoff: datetime) -> None:
    """Put a dead executor's unfinished workflows back on their queues, then forget it."""
    handles = await asyncio.to_thread(DBOS._recover_pending_workflows, [executor_id])
    if handles:
        # Back on their queues: poll them now, here and on the other workers,
        # rather than at the next idle poll.
        jobs.wake(jobs.QUEUE_NAMES)
    log.warning(
        "worker %s sent no heartbeat for %.0f s: %d unfinished workflows handed back "
        "to their queues",
        executor_id,
        runtime().settings.worker_dead_after,
        len(handles),
    )
    async with runtime().database.transaction() as session:
        # Only if it is still silent: a worker back in the meantime keeps its row.
        await session.execute(
            delete(WorkerHeartbeat).where(
                WorkerHeartbeat.executor_id == executor_id,
                WorkerHeartbeat.last_seen_at < cutoff,
            )
        )
