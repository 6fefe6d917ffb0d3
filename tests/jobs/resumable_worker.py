"""A worker process for the kill-and-resume test.

It launches Mailfleet's job engine exactly as `mailfleet worker` does (settings
from MAILFLEET_* variables), with one five-step workflow registered. Each step
appends its number to a log file (how often it ran) and inserts one row per
(run, step) into the app database (its effect, idempotent by key). Step 2
blocks on its first attempt so the test can kill the process there.

    python -m tests.jobs.resumable_worker start RUN_ID   # start, then block in step 2
    python -m tests.jobs.resumable_worker resume RUN_ID  # relaunch; wait for the result
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from dbos import DBOS
from sqlalchemy import text

from mailfleet import runtime
from mailfleet.config import Settings
from mailfleet.db import Database

STEPS = 5
BLOCKING_STEP = 2
LOG = Path(os.environ["RESUME_TEST_DIR"]) / "steps.log"
REACHED = Path(os.environ["RESUME_TEST_DIR"]) / "reached-blocking-step"


@DBOS.step()
async def record_step(run_id: str, step: int) -> None:
    with LOG.open("a") as log:
        log.write(f"{step}\n")
    async with runtime.runtime().database.transaction() as session:
        await session.execute(
            text(
                "INSERT INTO resume_effects (run_id, step) VALUES (:run, :step) "
                "ON CONFLICT DO NOTHING"
            ),
            {"run": run_id, "step": step},
        )
    attempts = LOG.read_text().split().count(str(step))
    if step == BLOCKING_STEP and attempts == 1:
        REACHED.touch()
        await asyncio.sleep(3600)  # the test kills us here


@DBOS.workflow()
async def five_steps(run_id: str) -> str:
    for step in range(STEPS):
        await record_step(run_id, step)
    return f"done {run_id}"


async def main(mode: str, run_id: str) -> None:
    settings = Settings()
    database = Database.from_settings(settings)
    async with database.transaction() as session:
        await session.execute(
            text(
                "CREATE TABLE IF NOT EXISTS resume_effects "
                "(run_id VARCHAR(40), step INTEGER, PRIMARY KEY (run_id, step))"
            )
        )
    await database.dispose()
    current = await runtime.start(settings, launch_jobs=True)
    workflow_id = f"resume-test-{run_id}"
    if mode == "start":
        from dbos import SetWorkflowID

        with SetWorkflowID(workflow_id):
            await DBOS.start_workflow_async(five_steps, run_id)
        await asyncio.sleep(3600)
    else:
        # Launch recovered the workflow; wait for it like any client would.
        handle = await DBOS.retrieve_workflow_async(workflow_id)
        print(await handle.get_result(), flush=True)
        await runtime.stop(current, jobs_launched=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
