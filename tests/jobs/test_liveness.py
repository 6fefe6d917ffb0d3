"""Heartbeats: each process records itself; a silent executor is declared dead once,
its row removed; a live one is left alone. (tests/jobs/test_worker_death.py shows
the recovery itself across real worker processes on PostgreSQL.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from dbos import DBOS
from fastapi import FastAPI
from sqlalchemy import select

from mailfleet import liveness
from mailfleet.db import Database
from mailfleet.kit.clock import utcnow
from mailfleet.models import WorkerHeartbeat

pytestmark = pytest.mark.db


async def test_beat_records_this_process_and_declares_the_silent_dead(
    app: FastAPI, database: Database
) -> None:
    now = utcnow()
    async with database.transaction() as session:
        for executor_id, silent_for in (("gone-worker", 3600), ("busy-worker", 1)):
            session.add(
                WorkerHeartbeat(
                    executor_id=executor_id,
                    hostname="elsewhere",
                    pid=1,
                    started_at=now - timedelta(hours=2),
                    last_seen_at=now - timedelta(seconds=silent_for),
                )
            )

    # This process's own poller beats too and may get there first: either way the
    # silent worker is declared dead once.
    declared = await liveness.beat()
    assert declared in (["gone-worker"], [])
    assert await liveness.beat() == []

    async with database.transaction() as session:
        rows = {row.executor_id: row for row in await session.scalars(select(WorkerHeartbeat))}
    assert set(rows) == {DBOS.executor_id, "busy-worker"}
    assert rows[DBOS.executor_id].last_seen_at >= now
