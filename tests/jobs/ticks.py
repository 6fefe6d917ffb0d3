"""Keeping a test's "crash before the enqueue" window clear of the scheduled sweepers.

The sweepers (mailfleet.jobs.SWEEPERS) fire at second 0 of each minute and run
when DBOS's internal queue next polls, up to INTERNAL_IDLE_POLLING_INTERVAL_SEC
later. A test that leaves work un-enqueued on purpose, checks it is still
waiting, and then sweeps by hand fails if a scheduled tick sweeps it first.
"""

from __future__ import annotations

import asyncio
import time

from mailfleet.jobs import INTERNAL_IDLE_POLLING_INTERVAL_SEC


async def clear_of_sweeper_ticks(window: float = 10.0) -> None:
    """Return at a moment when no scheduled sweep can run within `window` seconds."""
    quiet_from = INTERNAL_IDLE_POLLING_INTERVAL_SEC + 2.0  # seconds past the minute
    second = time.time() % 60
    if quiet_from <= second <= 60 - window:
        return
    wait = (quiet_from - second) % 60
    await asyncio.sleep(wait)
