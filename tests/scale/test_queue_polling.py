"""Queue polling: an idle queue is polled rarely, and an enqueue in this process
wakes its queue at once (jobs.QueueWaker), so quiet queues cost almost nothing
without making work wait for the next poll."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
from dbos import DBOS, SetWorkflowID
from dbos import _scheduler as dbos_scheduler
from dbos._dbos import _get_dbos_instance
from dbos._registrations import get_dbos_func_name
from dbos._utils import INTERNAL_QUEUE_NAME
from fastapi import FastAPI

from mailfleet import jobs
from mailfleet.kit.ids import new_id

HOUR = 3600.0
# Generous: these bound how long a broken wake-up would hang the test, not speed.
DEADLINE = 60.0


def waiting(waker: jobs.QueueWaker, timeout: float) -> tuple[threading.Thread, list[bool]]:
    """A thread doing what DBOS's worker loop does between polls."""
    answers: list[bool] = []
    thread = threading.Thread(target=lambda: answers.append(waker.wait(timeout)), daemon=True)
    thread.start()
    return thread, answers


def idle_waker(*, busy: bool = False) -> jobs.QueueWaker:
    waker = jobs.QueueWaker(HOUR, lambda: busy)
    assert waker.wait(HOUR) is False  # the first poll is at once: start-up takes what is queued
    return waker


def test_a_nudge_ends_an_idle_wait() -> None:
    waker = idle_waker()
    thread, answers = waiting(waker, 0.01)
    thread.join(0.2)
    assert thread.is_alive(), "an idle queue waits its idle interval, not DBOS's"
    waker.nudge()
    thread.join(DEADLINE)
    assert answers == [False]


def test_a_nudge_between_polls_is_not_lost() -> None:
    waker = idle_waker()
    waker.nudge()  # while the worker was polling, not waiting
    thread, answers = waiting(waker, HOUR)
    thread.join(DEADLINE)
    assert answers == [False]


def test_a_busy_queue_waits_only_dbos_interval() -> None:
    waker = idle_waker(busy=True)
    thread, answers = waiting(waker, 0.01)
    thread.join(DEADLINE)
    assert answers == [False]


def test_setting_it_stops_the_worker() -> None:
    waker = idle_waker()
    thread, answers = waiting(waker, HOUR)
    waker.set()
    thread.join(DEADLINE)
    assert answers == [True]
    assert waker.is_set()
    assert waker.wait(HOUR) is True


# A thread-safe flag: DBOS may run the workflow on another thread's event loop.
_ran = threading.Event()


async def mark_ran() -> None:
    _ran.set()


@contextmanager
def idle_for_an_hour(queue: str) -> Iterator[jobs.QueueWaker]:
    waker = jobs._wakers[queue]
    previous = waker.idle_interval
    waker.idle_interval = HOUR
    # One poll now, so the worker is surely in an hour-long wait when the test enqueues.
    waker.nudge()
    yield waker
    waker.idle_interval = previous
    waker.nudge()


@pytest.fixture
def slow_default_queue(app: FastAPI) -> Iterator[jobs.QueueWaker]:
    with idle_for_an_hour("default") as waker:
        yield waker


@pytest.fixture
def slow_internal_queue(app: FastAPI) -> Iterator[jobs.QueueWaker]:
    with idle_for_an_hour(INTERNAL_QUEUE_NAME) as waker:
        yield waker


@pytest.mark.db
async def test_a_scheduled_tick_wakes_the_internal_queue(
    slow_internal_queue: jobs.QueueWaker,
) -> None:
    """DBOS's scheduler thread enqueues a tick on the internal queue straight into
    the database, past jobs.enqueue: the tick must still run at once, not at the
    queue's next idle poll (an hour away here)."""
    await asyncio.sleep(0.5)
    _ran.clear()
    tick = datetime.now(UTC)
    await asyncio.to_thread(
        dbos_scheduler._enqueue_scheduled_workflow,
        _get_dbos_instance()._sys_db,
        get_dbos_func_name(jobs.sweep),
        tick,
        f"sched-test-wake-{new_id()}",
        "test-wake",
        "tests.scale.test_queue_polling:mark_ran",
    )
    assert await asyncio.to_thread(_ran.wait, DEADLINE)


@pytest.mark.db
async def test_every_queue_has_a_waker(app: FastAPI) -> None:
    # DBOS's own internal queue (scheduled sweeps) included: no DBOS thread polls any.
    assert set(jobs._wakers) == jobs.QUEUE_NAMES | {"_dbos_internal_queue"}


@pytest.mark.db
async def test_an_enqueue_starts_work_on_an_idle_queue_at_once(
    slow_default_queue: jobs.QueueWaker,
) -> None:
    await asyncio.sleep(0.5)
    _ran.clear()
    await jobs.enqueue(
        "default",
        jobs.sweep,
        datetime.now(UTC),
        "tests.scale.test_queue_polling:mark_ran",
        workflow_id=f"test-wake-{new_id()}",
    )
    assert await asyncio.to_thread(_ran.wait, DEADLINE)


@pytest.mark.db
async def test_a_notify_from_another_process_wakes_an_idle_queue(
    slow_default_queue: jobs.QueueWaker,
) -> None:
    """On PostgreSQL every process listens for wake-ups: the enqueue here goes
    through DBOS alone (as in a process without this queue's worker), and only
    the NOTIFY, heard back through PostgreSQL, can wake this process's queue."""
    link = jobs._wake_link
    if link is None:
        pytest.skip("queue wake-ups between processes need PostgreSQL")
    await asyncio.wait_for(link.connected.wait(), DEADLINE)
    await asyncio.sleep(0.5)
    _ran.clear()
    with SetWorkflowID(f"test-notify-{new_id()}"):
        await DBOS.enqueue_workflow_async(
            "default", jobs.sweep, datetime.now(UTC), "tests.scale.test_queue_polling:mark_ran"
        )
    link.request(["default"])
    assert await asyncio.to_thread(_ran.wait, DEADLINE)
