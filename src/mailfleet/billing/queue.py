"""Enqueueing billing's workflows, by name.

The ledger (a low balance), the wallet (money came in) and the renewal sweeper
start workflows whose module imports them back; naming the workflow through
`jobs.enqueue_named` keeps billing's modules free of import cycles. Workflow ids
are deterministic, so enqueueing again is a no-op.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from mailfleet import jobs
from mailfleet.kit.clock import isoformat

BILLING_QUEUE: Final = "billing"
_WORKFLOWS: Final = "mailfleet.billing.workflows"


def period_key(moment: datetime) -> str:
    return moment.strftime("%Y%m%dT%H%M%S")


def renewal_workflow_id(subscription_id: str, period_end: datetime, attempt: str = "due") -> str:
    """One workflow per subscription, period and kind of attempt ("due", "grace",
    or "credit-<entry>"), so a sweeper that enqueues it again changes nothing."""
    return f"billing-renewal-{subscription_id}-{period_key(period_end)}-{attempt}"


async def enqueue_renewal(subscription_id: str, period_end: datetime, attempt: str) -> str:
    return await jobs.enqueue_named(
        BILLING_QUEUE,
        f"{_WORKFLOWS}:renew_subscription",
        subscription_id,
        isoformat(period_end),
        workflow_id=renewal_workflow_id(subscription_id, period_end, attempt),
    )


async def enqueue_auto_recharge(workspace_id: str, reason: str) -> str:
    return await jobs.enqueue_named(
        BILLING_QUEUE,
        f"{_WORKFLOWS}:auto_recharge_wallet",
        workspace_id,
        reason,
        workflow_id=f"billing-auto-recharge-{workspace_id}-{reason}",
    )
