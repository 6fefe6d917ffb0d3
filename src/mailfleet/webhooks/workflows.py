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
from collections.abc import Awaitable, Callable

from dbos import DBOS
from tenacity import AsyncRetrying, retry_if_result, stop_after_attempt

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


def delivery_policy(
    delays: list[float], sleep: Callable[[float], Awaitable[None]] = DBOS.sleep_async
) -> AsyncRetrying:
    """The one retry policy of webhook deliveries: attempts while the last one
    asks for another ("retry"), one more than there are delays
    (MAILFLEET_WEBHOOK_RETRY_DELAYS, jittered once by `plan_retry_delays`),
    waiting delay n after attempt n with DBOS's durable sleep, so a restarted
    worker waits only what was left. A POST that timed out is sent again: the
    receiver may have it already, and the unchanged `webhook-id` is the key
    Standard Webhooks receivers deduplicate on."""
    return AsyncRetrying(
        stop=stop_after_attempt(len(delays) + 1),
        # Asked after the last attempt too (before the stop is checked): no wait then.
        wait=lambda state: (
            delays[state.attempt_number - 1] if state.attempt_number <= len(delays) else 0.0
        ),
        retry=retry_if_result(lambda outcome: outcome == "retry"),
        sleep=sleep,
        # Out of attempts: the last outcome stands (attempt_delivery recorded it).
        retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
    )


@DBOS.workflow()
async def deliver_webhook(delivery_id: str) -> str:
    delays = await plan_retry_delays()
    schedule: list[float | None] = [*delays, None]
    outcome = "missing"
    async for attempt in delivery_policy(delays):
        with attempt:
            number = attempt.retry_state.attempt_number
            # The wait after this attempt, recorded with it (None: the last one).
            outcome = await attempt_delivery(delivery_id, number, schedule[number - 1])
        if attempt.retry_state.outcome is not None and not attempt.retry_state.outcome.failed:
            attempt.retry_state.set_result(outcome)
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
