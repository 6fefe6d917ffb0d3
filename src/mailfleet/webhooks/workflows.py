"""Durable webhook delivery: one workflow per delivery, retried over about a day.

The workflow sleeps between attempts with DBOS's durable sleep, so a restarted
worker resumes a delivery where it was, waiting only what was left of the wait.
Each attempt is one step that sends and then records the attempt; a step cut
off by a crash runs again, so a receiver may see an attempt twice (at least
once, as Standard Webhooks expects), but the record holds it once.
"""

from __future__ import annotations

import logging
import random

from dbos import DBOS

from mailfleet import metrics
from mailfleet.runtime import runtime
from mailfleet.webhooks import service
from mailfleet.webhooks.sender import send_webhook

log = logging.getLogger(__name__)

JITTER = 0.2
# Not for secrets: it only spreads retries so failed receivers are not hit in step.
_jitter = random.Random()  # noqa: S311


@DBOS.step()
async def plan_retry_delays() -> list[float]:
    """The waits before each retry, jittered; a step so a resumed workflow keeps them."""
    delays = runtime().settings.webhook_retry_delays
    return [delay * _jitter.uniform(1 - JITTER, 1 + JITTER) for delay in delays]


@DBOS.step(retries_allowed=True, max_attempts=3, interval_seconds=2.0)
async def attempt_delivery(delivery_id: str, attempt: int, next_delay: float | None) -> str:
    """Send once and record it; "retry" when another attempt should follow."""
    current = runtime()
    async with current.database.transaction() as session:
        prepared = await service.prepare_attempt(session, current.keyring, delivery_id, attempt)
    if isinstance(prepared, str):
        return prepared
    result = await send_webhook(
        prepared.url, prepared.secret, prepared.message_id, prepared.body, current.settings
    )
    async with current.database.transaction() as session:
        outcome = await service.record_attempt(session, delivery_id, attempt, result, next_delay)
    metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
    log.info(
        "webhook delivery %s attempt %d: %s (status %s, %s ms)",
        delivery_id,
        attempt,
        outcome,
        result.status_code,
        result.latency_ms,
    )
    return outcome


@DBOS.workflow()
async def deliver_webhook(delivery_id: str) -> str:
    delays = await plan_retry_delays()
    schedule: list[float | None] = [*delays, None]
    outcome = "missing"
    for attempt, next_delay in enumerate(schedule, start=1):
        outcome = await attempt_delivery(delivery_id, attempt, next_delay)
        if outcome != "retry" or next_delay is None:
            break
        await DBOS.sleep_async(next_delay)
    return outcome


async def requeue_pending_deliveries() -> int:
    """Enqueue deliveries whose enqueue was lost (a crash right after commit).

    Enqueueing under the same workflow id is a no-op for deliveries already
    queued, so every process may run this periodically.
    """
    async with runtime().database.transaction() as session:
        delivery_ids = await service.unstarted_delivery_ids(session)
    for delivery_id in delivery_ids:
        await service.enqueue_delivery(delivery_id)
    return len(delivery_ids)
