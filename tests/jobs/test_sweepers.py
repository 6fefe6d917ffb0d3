"""Sweepers are DBOS schedules: each tick is one workflow, keyed by schedule and
tick time, so every worker that sees the tick starts the same workflow and the
sweep runs once, not once per process."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dbos import DBOS, SetWorkflowID
from fastapi import FastAPI

from mailfleet import jobs

pytestmark = pytest.mark.db

_ticks: list[str] = []


async def record_tick() -> None:
    _ticks.append("tick")


async def test_every_sweeper_is_a_schedule(app: FastAPI) -> None:
    schedules = {s["schedule_name"]: s for s in await DBOS.list_schedules_async()}
    for name, cron, _target in jobs.SWEEPERS:
        assert schedules[name]["schedule"] == cron
        assert schedules[name]["workflow_name"].endswith("sweep")
    assert len({target for _, _, target in jobs.SWEEPERS}) == len(jobs.SWEEPERS)


async def test_a_tick_sweeps_once_however_many_workers_fire_it(app: FastAPI) -> None:
    _ticks.clear()
    tick = datetime.now(UTC)
    workflow_id = f"sched-test-sweeper-{tick.isoformat()}"
    for _ in range(2):  # two workers firing the same tick start the same workflow
        with SetWorkflowID(workflow_id):
            handle = await DBOS.start_workflow_async(
                jobs.sweep, tick, "tests.jobs.test_sweepers:record_tick"
            )
        await handle.get_result()
    assert _ticks == ["tick"]


async def test_a_sweeper_no_longer_declared_loses_its_schedule(app: FastAPI) -> None:
    """apply_schedules adds and updates; a sweeper removed from SWEEPERS in a new
    release would otherwise keep firing from the stored schedule."""
    await DBOS.apply_schedules_async(
        [
            {
                "schedule_name": "retired-sweeper",
                "workflow_fn": jobs.sweep,
                "schedule": "0 0 * * * *",
                "context": "tests.jobs.test_sweepers:record_tick",
            }
        ]
    )
    assert await DBOS.get_schedule_async("retired-sweeper") is not None
    await jobs._apply_sweepers()
    assert await DBOS.get_schedule_async("retired-sweeper") is None
    names = {s["schedule_name"] for s in await DBOS.list_schedules_async()}
    assert names >= {name for name, _, _ in jobs.SWEEPERS}
