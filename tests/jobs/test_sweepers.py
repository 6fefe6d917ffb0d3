"""The sweepers are one DBOS schedule: each tick is one workflow, keyed by schedule
and tick time, so every worker that sees the tick starts the same workflow and each
sweep runs once, not once per process; the sweepers due at that minute are its steps."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dbos import DBOS, SetWorkflowID
from fastapi import FastAPI

from mailfleet import jobs
from mailfleet.kit.ids import new_id

pytestmark = pytest.mark.db

_ticks: list[str] = []


async def record_tick() -> None:
    _ticks.append("tick")


async def record_every_five() -> None:
    _ticks.append("every five")


async def fail() -> None:
    raise RuntimeError("this sweeper fails")


async def test_the_sweepers_are_one_schedule(app: FastAPI) -> None:
    name, cron = jobs.SWEEP_SCHEDULE
    schedules = await DBOS.list_schedules_async()
    sweepers = [s for s in schedules if s["workflow_name"].endswith(("sweep", "sweep_tick"))]
    assert [(s["schedule_name"], s["schedule"]) for s in sweepers] == [(name, cron)]
    assert sweepers[0]["workflow_name"].endswith("sweep_tick")
    assert len({target for _, target in jobs.SWEEPERS}) == len(jobs.SWEEPERS)


async def test_a_tick_runs_the_sweepers_due_at_its_minute_once_each(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failing sweeper does not stop the ones after it; one due every five
    minutes runs only at a minute that is a multiple of five; and two workers
    firing the same tick start one workflow, so nothing runs twice."""
    monkeypatch.setattr(
        jobs,
        "SWEEPERS",
        [
            (1, "tests.jobs.test_sweepers:fail"),
            (5, "tests.jobs.test_sweepers:record_every_five"),
            (1, "tests.jobs.test_sweepers:record_tick"),
        ],
    )
    fifth = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)
    for tick, expected in (
        (fifth, ["every five", "tick"]),
        (fifth.replace(minute=6), ["tick"]),
    ):
        _ticks.clear()
        workflow_id = f"sched-test-sweepers-{tick.isoformat()}-{new_id()}"
        for _ in range(2):
            with SetWorkflowID(workflow_id):
                handle = await DBOS.start_workflow_async(jobs.sweep_tick, tick, None)
            await handle.get_result()
        assert _ticks == expected


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
    """apply_schedules adds and updates; a sweeper schedule of an older release
    (they had one each) would otherwise keep firing from the stored schedule."""
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
    assert jobs.SWEEP_SCHEDULE[0] in names
