"""Renewals and auto-recharge as durable workflows.

A sweeper (a DBOS schedule, jobs.SWEEPERS) enqueues one renewal workflow per due subscription
under an id made of the subscription, the period end and the kind of attempt,
so enqueueing it again is a no-op; the charge itself is keyed by subscription
and period in the ledger, so even two attempts charge once. A renewal the wallet
cannot cover tries auto-recharge (one off-session charge per renewal), then
marks the subscription past_due; the grace attempt pauses the mailboxes.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from dbos import DBOS

from mailfleet.billing import renewals, wallet
from mailfleet.billing.payments import ChargeOutcome, provider_for
from mailfleet.billing.queue import BILLING_QUEUE as BILLING_QUEUE
from mailfleet.billing.queue import enqueue_auto_recharge as enqueue_auto_recharge
from mailfleet.billing.queue import enqueue_renewal as enqueue_renewal
from mailfleet.kit.clock import utcnow
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)


@DBOS.step()
async def attempt_renewal_step(subscription_id: str, period_end: str) -> dict[str, Any]:
    current = runtime()
    async with current.database.transaction() as session:
        attempt = await renewals.attempt_renewal(
            session, current.settings, subscription_id, period_end
        )
    return attempt.to_dict()


@DBOS.step()
async def mark_past_due_step(subscription_id: str, period_end: str) -> str:
    current = runtime()
    async with current.database.transaction() as session:
        return await renewals.mark_past_due(session, current.settings, subscription_id, period_end)


@DBOS.step()
async def prepare_recharge_step(workspace_id: str, reason: str, needed: int) -> str | None:
    current = runtime()
    async with current.database.transaction() as session:
        return await wallet.prepare_auto_recharge(
            session, current.settings, workspace_id, reason, needed
        )


@DBOS.step()
async def charge_card_step(payment_id: str) -> dict[str, Any]:
    """The off-session charge, outside any transaction. Re-running it after a crash
    is safe: the provider call carries an idempotency key made of the payment id."""
    current = runtime()
    async with current.database.transaction() as session:
        charge = await wallet.off_session_charge(session, payment_id)
    if charge is None:
        return {"status": "skipped"}
    outcome = await provider_for(current.settings).charge_off_session(charge)
    return {
        "status": outcome.status,
        "providerRef": outcome.provider_ref,
        "failureMessage": outcome.failure_message,
    }


@DBOS.step()
async def record_charge_step(payment_id: str, outcome: dict[str, Any]) -> str:
    if outcome["status"] == "skipped":
        return "skipped"
    current = runtime()
    async with current.database.transaction() as session:
        return await wallet.record_charge_outcome(
            session,
            current.settings,
            payment_id,
            ChargeOutcome(
                status=outcome["status"],
                provider_ref=outcome.get("providerRef"),
                failure_message=outcome.get("failureMessage"),
            ),
        )


async def _recharge(workspace_id: str, reason: str, needed: int) -> str:
    payment_id = await prepare_recharge_step(workspace_id, reason, needed)
    if payment_id is None:
        return "skipped"
    outcome = await charge_card_step(payment_id)
    return await record_charge_step(payment_id, outcome)


@DBOS.workflow()
async def renew_subscription(subscription_id: str, period_end: str) -> str:
    attempt = await attempt_renewal_step(subscription_id, period_end)
    if attempt["status"] == "short" and attempt["autoRecharge"]:
        reason = f"renewal:{subscription_id}:{period_end}"
        paid = await _recharge(attempt["workspaceId"], reason, int(attempt["shortfall"]))
        if paid == "succeeded":
            attempt = await attempt_renewal_step(subscription_id, period_end)
    if attempt["status"] == "short":
        return await mark_past_due_step(subscription_id, period_end)
    return str(attempt["status"])


@DBOS.workflow()
async def auto_recharge_wallet(workspace_id: str, reason: str) -> str:
    """Top the wallet up from the saved card after a charge left it under the threshold."""
    return await _recharge(workspace_id, reason, 0)


async def enqueue_due_renewals(now: datetime | None = None) -> list[str]:
    """The sweeper: a renewal workflow for every subscription whose period ended,
    and a grace attempt for every past-due one whose grace ran out. Idempotent."""
    current = runtime()
    if current.settings.billing != "on":
        return []
    async with current.database.transaction() as session:
        due = await renewals.due_renewals(session, current.settings, now or utcnow())
    return [
        await enqueue_renewal(subscription_id, period_end, attempt)
        for subscription_id, period_end, attempt in due
    ]
