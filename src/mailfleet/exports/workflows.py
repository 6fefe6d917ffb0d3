"""The export workflow: one durable workflow per export, batch by batch.

Steps are idempotent: each re-reads the export and its items and does nothing
for an inbox already settled, so a step cut off by a crash runs again safely (a
platform that sees an inbox twice answers "already exists", which counts as
connected). Platforms that connect in the background are polled with DBOS's
durable sleep in between, so a restarted worker resumes the wait. No secret is
a workflow argument or a step result: DBOS stores those in the clear.
"""

from __future__ import annotations

import logging

from dbos import DBOS

from mailfleet import metrics
from mailfleet.exports import service, steps
from mailfleet.exports.steps import BatchOutcome, ExportPlan
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)

INTERNAL_ERROR = (
    "Mailfleet stopped this export on an internal error; the log has the details "
    "(search for the export id)"
)


@DBOS.step()
async def plan_export(history_id: str) -> ExportPlan:
    current = runtime()
    return await steps.plan_export(current.database, current.keyring, current.settings, history_id)


@DBOS.step()
async def export_batch(
    history_id: str, start: int, end: int, carry: dict[str, str]
) -> BatchOutcome:
    current = runtime()
    return await steps.export_batch(
        current.database, current.keyring, current.settings, history_id, start, end, carry
    )


@DBOS.step()
async def poll_batch(history_id: str, start: int, end: int, request_id: str) -> bool:
    current = runtime()
    return await steps.poll_batch(
        current.database, current.keyring, current.settings, history_id, start, end, request_id
    )


@DBOS.step()
async def fail_batch(history_id: str, start: int, end: int, reason: str) -> None:
    await steps.fail_batch(runtime().database, history_id, start, end, reason)


@DBOS.step()
async def finish_export(history_id: str, reason: str | None) -> str:
    status = await steps.finish_export(runtime().database, history_id, reason)
    metrics.EXPORTS.labels(status).inc()
    log.info("export %s finished: %s", history_id, status)
    return status


@DBOS.workflow()
async def run_export(history_id: str) -> str:
    plan = await plan_export(history_id)
    if plan.get("skip"):
        return "skipped"
    fatal: str | None = plan.get("fatal")
    carry: dict[str, str] = {}
    try:
        for start, end in plan["batches"]:
            if fatal:
                break
            outcome = await export_batch(history_id, start, end, carry)
            carry = outcome.get("carry") or {}
            fatal = outcome.get("fatal")
            request_id: str | None = outcome.get("requestId")
            if request_id:
                await _wait_for_platform(history_id, start, end, request_id, plan)
    except Exception:
        # The export must still end with a status; what was settled stays settled.
        log.exception("export %s failed", history_id)
        fatal = INTERNAL_ERROR
    return await finish_export(history_id, fatal)


async def _wait_for_platform(
    history_id: str, start: int, end: int, request_id: str, plan: ExportPlan
) -> None:
    interval: float = plan["pollInterval"]
    waited = 0.0
    while waited < plan["pollTimeout"]:
        await DBOS.sleep_async(interval)
        waited += interval
        if await poll_batch(history_id, start, end, request_id):
            return
    minutes = plan["pollTimeout"] / 60
    await fail_batch(
        history_id,
        start,
        end,
        f"{plan['label']} did not finish connecting within {minutes:g} minutes "
        f"(request {request_id}); check the accounts there",
    )


async def requeue_unfinished_exports() -> int:
    """Enqueue exports whose enqueue was lost (a crash right after commit).

    Enqueueing under the same workflow id is a no-op for exports already queued,
    so every process may run this periodically.
    """
    async with runtime().database.transaction() as session:
        unfinished = await service.unfinished_exports(session)
    for history_id, partition in unfinished:
        await service.enqueue_export(history_id, partition)
    return len(unfinished)
