"""The webhook and bulk retry policies on their own: what they try again, how
long they wait, when they stop. (Their effect end to end is pinned by
tests/webhooks/test_delivery.py and tests/bulk/test_bulk_retries.py.)"""

from __future__ import annotations

import pytest

from mailfleet.bulk.workflows import login_retry_policy
from mailfleet.config import Settings
from mailfleet.webhooks.workflows import delivery_policy


async def test_webhook_policy_waits_each_planned_delay_until_an_attempt_settles() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    outcomes = iter(["retry", "retry", "succeeded", "unreached"])
    seen: list[str] = []
    async for attempt in delivery_policy([5.0, 30.0, 120.0], sleep=sleep):
        with attempt:
            outcome = next(outcomes)
            seen.append(outcome)
        attempt.retry_state.set_result(outcome)
    assert seen == ["retry", "retry", "succeeded"]
    assert slept == [5.0, 30.0]


async def test_webhook_policy_stops_after_one_attempt_per_delay_plus_one() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    attempts = 0
    async for attempt in delivery_policy([1.0, 2.0], sleep=sleep):
        with attempt:
            attempts += 1
        attempt.retry_state.set_result("retry")
    assert attempts == 3
    assert slept == [1.0, 2.0]


@pytest.mark.parametrize(("max_attempts", "expected_waits"), [(1, []), (3, [2.0, 4.0])])
async def test_bulk_policy_doubles_the_wait_per_round(
    max_attempts: int, expected_waits: list[float]
) -> None:
    settings = Settings(bulk_max_attempts=max_attempts, bulk_retry_delay=2.0)
    policy = login_retry_policy(settings)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    policy.sleep = sleep  # type: ignore[method-assign]
    rounds = 0
    async for attempt in policy:
        with attempt:
            rounds += 1
        attempt.retry_state.set_result(["still failing"])
    assert rounds == max_attempts
    assert waits == expected_waits


async def test_bulk_policy_stops_once_nothing_is_left() -> None:
    rounds = 0
    async for attempt in login_retry_policy(Settings(bulk_max_attempts=5, bulk_retry_delay=0)):
        with attempt:
            rounds += 1
        attempt.retry_state.set_result([] if rounds == 2 else ["left"])
    assert rounds == 2
