"""The per-host login cap held in PostgreSQL: two limiters, as two processes would
hold them (each its own connection), never log in to one host more than the cap
at once between them, both get turns, and one that stops frees its slots for the
other. (tests/jobs/test_worker_death.py shows it with real worker processes.)"""

from __future__ import annotations

import asyncio

import pytest

from mailfleet import jobs
from mailfleet.bulk.host_slots import SharedHostSlots
from mailfleet.config import Settings
from tests.conftest import BACKEND

CAP = 3


def test_serving_bulk_jobs_serves_their_chunks() -> None:
    assert jobs.served_queues(None) == jobs.QUEUE_NAMES
    assert jobs.served_queues(["default"]) == {"default"}
    assert jobs.served_queues(["bulk_connect"]) == {"bulk_connect", jobs.BULK_CHUNK_QUEUE}


@pytest.mark.db
@pytest.mark.skipif(BACKEND != "postgresql", reason="the cap is held in PostgreSQL only")
async def test_two_processes_share_one_cap_per_host(settings: Settings) -> None:
    first = SharedHostSlots(settings.app_database_url, CAP)
    second = SharedHostSlots(settings.app_database_url, CAP)
    inside = {"mx.one.test": 0, "mx.two.test": 0}
    peak = dict.fromkeys(inside, 0)
    turns = {(id(first), host): 0 for host in inside} | {(id(second), host): 0 for host in inside}

    async def login(slots: SharedHostSlots, host: str) -> None:
        async with slots.slot(host):
            inside[host] += 1
            peak[host] = max(peak[host], inside[host])
            turns[(id(slots), host)] += 1
            await asyncio.sleep(0.02)
            inside[host] -= 1

    try:
        await asyncio.gather(
            *(login(slots, host) for _ in range(12) for slots in (first, second) for host in inside)
        )
        # Each host's cap is its own, and both processes had turns on each.
        assert peak == dict.fromkeys(inside, CAP)
        assert all(count == 12 for count in turns.values())

        # A process that stops (or dies: its connection closes) frees its slots.
        async with first.slot("mx.one.test"), first.slot("mx.one.test"):
            first.close()
            await asyncio.sleep(0.5)
            taken = await asyncio.wait_for(
                asyncio.gather(*(second._acquire("mx.one.test") for _ in range(CAP))), 10
            )
            assert len({number for _, number in taken}) == CAP
    finally:
        first.close()
        second.close()
