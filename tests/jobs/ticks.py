"""Keeping a test's "crash before the enqueue" window clear of the scheduled sweepers.

The sweepers (mailfleet.jobs.SWEEP_SCHEDULE) fire at second 0 of each minute, plus
DBOS's jitter of up to a tenth of the wait (6 seconds), and run at once: the tick's
enqueue wakes DBOS's internal queue. A test that leaves work un-enqueued on purpose,
checks it is still waiting, and then sweeps by hand fails if a scheduled tick sweeps
it first.
"""

from __future__ import annotations

import asyncio
import time

# Seconds past the minute after which this minute's tick has swept: the jitter's
# 6 seconds and a margin for a loaded machine.
QUIET_FROM = 12.0


async def clear_of_sweeper_ticks(window: float = 10.0) -> None:
    """Return at a moment when no scheduled sweep can run within `window` seconds."""
    second = time.time() % 60
    if QUIET_FROM <= second <= 60 - window:
        return
    wait = (QUIET_FROM - second) % 60
    await asyncio.sleep(wait)
