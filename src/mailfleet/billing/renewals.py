"""Renewal: at the end of each period the wallet pays the next one (auto-recharge
covering a shortfall), scheduled removals apply, and an unpaid subscription goes
past due, pauses its mailboxes after the grace period and resumes once credit
arrives. Each attempt runs in a workflow keyed by subscription and period
(queue.renewal_workflow_id), so it happens once. Services flush and never commit.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.billing import ledger, seats, subscriptions
from mailfleet.billing.money import format_amount, period_bounds
from mailfleet.billing.plans import (
    billing_enabled,
    get_plan,
    resolved_settings,
)
from mailfleet.billing.queue import enqueue_renewal, period_key
from mailfleet.config import Settings
from mailfleet.kit.clock import isoformat, utcnow
from mailfleet.models import SubscriptionStatus
from mailfleet.models.billing import (
    Subscription,
)

# Renewal


@dataclass(frozen=True)
class RenewalAttempt:
    # renewed, canceled, short (the wallet lacks `shortfall`), skipped, not_due
    status: str
    workspace_id: str | None = None
    shortfall: int = 0
    auto_recharge: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "workspaceId": self.workspace_id,
            "shortfall": self.shortfall,
            "autoRecharge": self.auto_recharge,
            **self.details,
        }


async def due_renewals(
    session: AsyncSession, settings: Settings, now: datetime, limit: int = 500
) -> list[tuple[str, datetime, str]]:
    """(subscription id, period end, attempt) for what the sweeper enqueues: active
    subscriptions whose period ended, and past-due ones whose grace ran out
    unpaused."""
    grace = timedelta(days=settings.billing_grace_days)
    rows = await session.execute(
        select(Subscription.id, Subscription.current_period_end, Subscription.status)
        .where(
            Subscription.current_period_end <= now,
            (Subscription.status == SubscriptionStatus.ACTIVE)
            | (
                (Subscription.status == SubscriptionStatus.PAST_DUE)
                & Subscription.suspended_at.is_(None)
            ),
        )
        .order_by(Subscription.current_period_end)
        .limit(limit)
    )
    due: list[tuple[str, datetime, str]] = []
    for subscription_id, period_end, status in rows:
        if status == SubscriptionStatus.ACTIVE:
            due.append((subscription_id, period_end, "due"))
        elif period_end + grace <= now:
            due.append((subscription_id, period_end, "grace"))
    return due


async def attempt_renewal(
    session: AsyncSession,
    settings: Settings,
    subscription_id: str,
    period_end: str,
    *,
    now: datetime | None = None,
) -> RenewalAttempt:
    """Renew the period that ends at `period_end` (ISO) if the wallet covers it.

    Idempotent: the charge is keyed by subscription and period, and a period
    already renewed is skipped. Removals scheduled for this renewal happen first
    (the seats they free are not billed), then a cancellation takes effect.
    """
    now = now or utcnow()
    subscription = await session.get(Subscription, subscription_id)
    if subscription is None or not billing_enabled(settings):
        return RenewalAttempt("skipped")
    workspace_id = subscription.workspace_id
    account = await ledger.lock_account(session, workspace_id, settings.billing_currency)
    await session.refresh(subscription)
    if (
        subscription.status == SubscriptionStatus.CANCELED
        or isoformat(subscription.current_period_end) != period_end
    ):
        return RenewalAttempt("skipped", workspace_id)
    if subscription.current_period_end > now:
        return RenewalAttempt("not_due", workspace_id)
    await seats.apply_removals(session, subscription)
    plan = await get_plan(session, subscription.plan_id)
    if subscription.cancel_at_period_end or subscription.quantity == 0:
        await subscriptions.end_subscription(session, subscription, now)
        await session.flush()
        if not subscription.cancel_at_period_end:
            # Every seat was removed: the end nobody announced yet.
            await ledger.emit_event(
                session,
                workspace_id,
                "subscription.canceled",
                subscriptions.subscription_event(subscription, plan),
            )
        return RenewalAttempt("canceled", workspace_id)
    amount = plan.price_per_mailbox * subscription.quantity
    key = f"renewal:{subscription.id}:{period_key(subscription.current_period_end)}"
    available = await ledger.balance(session, workspace_id)
    already_paid = await ledger.find_entry(session, workspace_id, key) is not None
    if amount > available and not already_paid:
        return RenewalAttempt(
            "short",
            workspace_id,
            shortfall=amount - available,
            auto_recharge=bool(
                account.auto_recharge_enabled and account.provider_payment_method_id
            ),
            details={"amount": amount, "currency": account.currency},
        )
    start, end = period_bounds(subscription.anchor_at, plan.period, subscription.periods_started)
    invoice = None
    if not already_paid:
        invoice = await subscriptions.charge(
            session,
            account,
            kind="renewal",
            lines=[subscriptions.seat_line(plan, subscription.quantity, start, end)],
            key=key,
            subscription=subscription,
            period=(start, end),
        )
    subscription.current_period_start, subscription.current_period_end = start, end
    subscription.periods_started += 1
    subscription.unit_amount = plan.price_per_mailbox
    subscription.status = SubscriptionStatus.ACTIVE
    subscription.past_due_since = None
    subscription.suspended_at = None
    subscription.updated_at = utcnow()
    resumed = await seats.resume_mailboxes(session, workspace_id)
    await session.flush()
    await ledger.emit_event(
        session,
        workspace_id,
        "subscription.renewed",
        subscriptions.subscription_event(
            subscription,
            plan,
            invoiceId=invoice.id if invoice else None,
            resumedMailboxes=resumed,
        ),
    )
    return RenewalAttempt("renewed", workspace_id, details={"amount": amount})


async def mark_past_due(
    session: AsyncSession,
    settings: Settings,
    subscription_id: str,
    period_end: str,
    *,
    now: datetime | None = None,
) -> str:
    """An unpaid renewal: the subscription turns past_due (no new mailboxes), and
    once MAILFLEET_BILLING_GRACE_DAYS have passed since the renewal date, the
    workspace's mailboxes are paused. Paying later renews and resumes them."""
    now = now or utcnow()
    subscription = await session.get(Subscription, subscription_id)
    if subscription is None:
        return "skipped"
    workspace_id = subscription.workspace_id
    await ledger.lock_account(session, workspace_id, settings.billing_currency)
    await session.refresh(subscription)
    if (
        subscription.status == SubscriptionStatus.CANCELED
        or isoformat(subscription.current_period_end) != period_end
    ):
        return "skipped"
    plan = await get_plan(session, subscription.plan_id)
    grace_ends = subscription.current_period_end + timedelta(days=settings.billing_grace_days)
    if subscription.status == SubscriptionStatus.ACTIVE:
        subscription.status = SubscriptionStatus.PAST_DUE
        subscription.past_due_since = now
        await session.flush()
        amount = plan.price_per_mailbox * subscription.quantity
        await ledger.emit_event(
            session,
            workspace_id,
            "subscription.past_due",
            subscriptions.subscription_event(
                subscription,
                plan,
                amountDue=amount,
                graceEndsAt=isoformat(grace_ends),
                message=f"Renewal of {format_amount(amount, plan.currency)} unpaid",
            ),
        )
    if now >= grace_ends and subscription.suspended_at is None:
        await seats.suspend_mailboxes(session, workspace_id)
        subscription.suspended_at = now
        await session.flush()
        return "suspended"
    return "past_due"


async def past_due_subscriptions(
    session: AsyncSession, workspace_id: str
) -> list[tuple[str, datetime]]:
    rows = await session.execute(
        select(Subscription.id, Subscription.current_period_end).where(
            Subscription.workspace_id == workspace_id,
            Subscription.status == SubscriptionStatus.PAST_DUE,
        )
    )
    return [(subscription_id, period_end) for subscription_id, period_end in rows]


# What else waits for money in the wallet, called after every credit as
# `f(session, settings, workspace_id)` in the crediting transaction. Named, not
# imported: the areas that sell through the wallet import billing, so billing
# importing them back would close a cycle.
CREDIT_LISTENERS: tuple[str, ...] = ("mailfleet.domains.purchases:charge_waiting_orders",)


async def retry_past_due_after_credit(
    session: AsyncSession, workspace_id: str, entry_id: str
) -> None:
    """Money came in: charge what waits for it in other areas (CREDIT_LISTENERS), and
    retry the workspace's unpaid renewal once this commits."""
    settings = resolved_settings(None)
    for target in CREDIT_LISTENERS:
        module_name, _, function_name = target.partition(":")
        listener = getattr(importlib.import_module(module_name), function_name)
        await listener(session, settings, workspace_id)
    due = await past_due_subscriptions(session, workspace_id)
    if not due:
        return

    async def enqueue() -> None:
        for subscription_id, period_end in due:
            await enqueue_renewal(subscription_id, period_end, f"credit-{entry_id}")

    ledger.enqueue_after_commit(session, enqueue)
