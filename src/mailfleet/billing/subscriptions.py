"""Subscriptions: `quantity` mailbox seats on a plan for a period, paid from the
workspace's wallet when they start or change (prorated), ended on cancel.

With MAILFLEET_BILLING=off every workspace holds the built-in unlimited
"self-hosted" plan (plans.py) and nothing here charges anyone. Services flush
and never commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.billing import invoices, ledger, seats
from mailfleet.billing.invoices import InvoiceLine
from mailfleet.billing.money import Proration, period_bounds, prorate
from mailfleet.billing.plans import (
    get_plan,
    require_billing,
)
from mailfleet.billing.repository import SubscriptionRepository
from mailfleet.billing.schemas import SubscriptionCreate, SubscriptionUpdate
from mailfleet.config import Settings
from mailfleet.kit.clock import isoformat, utcnow
from mailfleet.kit.errors import (
    Conflict,
    ValidationFailed,
)
from mailfleet.kit.ids import new_id
from mailfleet.kit.pagination import Page
from mailfleet.models import SubscriptionStatus
from mailfleet.models.billing import (
    BillingAccount,
    Invoice,
    MailboxRemoval,
    Plan,
    Subscription,
)

# Subscriptions


@dataclass(frozen=True)
class SubscriptionView:
    subscription: Subscription
    plan: Plan
    scheduled_removals: int


async def view(session: AsyncSession, subscription: Subscription) -> SubscriptionView:
    plan = await get_plan(session, subscription.plan_id)
    removals = await session.scalar(
        select(func.count())
        .select_from(MailboxRemoval)
        .where(MailboxRemoval.subscription_id == subscription.id)
    )
    return SubscriptionView(subscription, plan, int(removals or 0))


async def list_subscriptions(
    session: AsyncSession, workspace_id: str, page: Page
) -> tuple[list[Subscription], int]:
    repository = SubscriptionRepository(session)
    return await repository.newest_first(repository.owned_by(workspace_id), page)


async def get_subscription(
    session: AsyncSession, workspace_id: str, subscription_id: str
) -> Subscription:
    return await SubscriptionRepository(session).get(workspace_id, subscription_id)


async def _offered_plan(session: AsyncSession, plan_id: str) -> Plan:
    plan = await session.get(Plan, plan_id)
    if plan is None or not plan.active:
        raise ValidationFailed.for_field("planId", f"No plan {plan_id} is offered")
    return plan


async def _check_quantity(
    session: AsyncSession, workspace_id: str, plan: Plan, quantity: int
) -> None:
    if plan.max_mailboxes is not None and quantity > plan.max_mailboxes:
        raise ValidationFailed.for_field(
            "quantity", f"Plan {plan.name} allows at most {plan.max_mailboxes} mailboxes"
        )
    usage = await seats.mailbox_count(session, workspace_id)
    if quantity < usage:
        raise ValidationFailed.for_field(
            "quantity",
            f"The workspace has {usage} mailboxes; keep at least {usage} seats or remove "
            "mailboxes first",
        )


def _period_label(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"


def seat_line(plan: Plan, quantity: int, start: datetime, end: datetime) -> InvoiceLine:
    return InvoiceLine(
        description=f"{plan.name}: mailbox seats, {_period_label(start, end)}",
        quantity=quantity,
        unit_amount=plan.price_per_mailbox,
    )


async def charge(
    session: AsyncSession,
    account: BillingAccount,
    *,
    kind: str,
    lines: list[InvoiceLine],
    key: str,
    subscription: Subscription,
    period: tuple[datetime, datetime] | None,
    user_id: str | None = None,
) -> Invoice | None:
    """Invoice `lines` and take (or, for a negative total, give back) their total
    from the wallet. Nothing for a zero total. The caller holds the lock."""
    total = sum(line.amount for line in lines)
    if total == 0:
        return None
    if total > 0:
        available = await ledger.balance(session, account.workspace_id)
        if available < total:
            raise ledger.insufficient_funds(available, total, account.currency)
    invoice = await invoices.issue_invoice(
        session,
        account.workspace_id,
        kind=kind,
        currency=account.currency,
        lines=lines,
        subscription_id=subscription.id,
        period=period,
    )
    await ledger.post_entry(
        session,
        account,
        amount=-total,
        kind="charge" if total > 0 else "refund",
        description=f"Invoice {invoice.number}",
        key=key,
        invoice_id=invoice.id,
        subscription_id=subscription.id,
        user_id=user_id,
    )
    return invoice


def subscription_event(subscription: Subscription, plan: Plan, **extra: Any) -> dict[str, Any]:
    return {
        "subscriptionId": subscription.id,
        "planId": plan.id,
        "planName": plan.name,
        "status": subscription.status,
        "quantity": subscription.quantity,
        "amount": subscription.unit_amount * subscription.quantity,
        "currency": plan.currency,
        "currentPeriodStart": isoformat(subscription.current_period_start),
        "currentPeriodEnd": isoformat(subscription.current_period_end),
        **extra,
    }


async def create_subscription(
    session: AsyncSession,
    settings: Settings,
    workspace_id: str,
    data: SubscriptionCreate,
    *,
    user_id: str | None = None,
) -> Subscription:
    """Start a subscription now and pay its first period from the wallet."""
    require_billing(settings)
    plan = await _offered_plan(session, data.plan_id)
    account = await ledger.lock_account(session, workspace_id, settings.billing_currency)
    existing = await seats.live_subscription(session, workspace_id)
    if existing is not None:
        raise Conflict(
            f"The workspace already has subscription {existing.id}; change it with "
            f"PUT /v1/subscriptions/{existing.id}"
        )
    await _check_quantity(session, workspace_id, plan, data.quantity)
    # Periods in whole seconds: the API shows milliseconds, ids and keys seconds.
    now = utcnow().replace(microsecond=0)
    start, end = period_bounds(now, plan.period, 0)
    subscription = Subscription(
        workspace_id=workspace_id,
        plan_id=plan.id,
        quantity=data.quantity,
        unit_amount=plan.price_per_mailbox,
        status=SubscriptionStatus.ACTIVE,
        anchor_at=now,
        periods_started=1,
        current_period_start=start,
        current_period_end=end,
        cancel_at_period_end=False,
    )
    session.add(subscription)
    await session.flush()
    await charge(
        session,
        account,
        kind="subscription",
        lines=[seat_line(plan, data.quantity, start, end)],
        key=f"subscription:{subscription.id}",
        subscription=subscription,
        period=(start, end),
        user_id=user_id,
    )
    # Mailboxes a lapsed subscription paused come back with the new one.
    await seats.resume_mailboxes(session, workspace_id)
    await ledger.emit_event(
        session, workspace_id, "subscription.created", subscription_event(subscription, plan)
    )
    return subscription


@dataclass(frozen=True)
class SubscriptionChange:
    subscription: Subscription
    proration: Proration
    invoice: Invoice | None


async def change_subscription(
    session: AsyncSession,
    settings: Settings,
    subscription: Subscription,
    data: SubscriptionUpdate,
    *,
    user_id: str | None = None,
    now: datetime | None = None,
) -> SubscriptionChange:
    """Move to another plan and/or number of seats, now, prorated.

    Same period length: the difference of the two per-period prices for the time
    left (see `money.prorate` for the rounding rule), charged or credited. A plan
    with another period length starts a new period now: the unused time of the
    old one is credited and the new period charged in full.
    """
    require_billing(settings)
    account = await ledger.lock_account(
        session, subscription.workspace_id, settings.billing_currency
    )
    await session.refresh(subscription)
    if subscription.status == SubscriptionStatus.CANCELED:
        raise Conflict("This subscription has ended; start a new one with POST /v1/subscriptions")
    if data.cancel_at_period_end is not None:
        subscription.cancel_at_period_end = data.cancel_at_period_end
        subscription.canceled_at = utcnow() if data.cancel_at_period_end else None
    nothing = Proration(0, 0, 0)
    if data.plan_id is None and data.quantity is None:
        await session.flush()
        return SubscriptionChange(subscription, nothing, None)
    if subscription.status != SubscriptionStatus.ACTIVE:
        raise Conflict("Pay the overdue renewal first: only an active subscription can change")
    old_plan = await get_plan(session, subscription.plan_id)
    new_plan = (
        old_plan
        if data.plan_id in (None, old_plan.id)
        else await _offered_plan(session, data.plan_id or "")
    )
    quantity = data.quantity if data.quantity is not None else subscription.quantity
    await _check_quantity(session, subscription.workspace_id, new_plan, quantity)
    if new_plan.id == old_plan.id and quantity == subscription.quantity:
        await session.flush()
        return SubscriptionChange(subscription, nothing, None)
    now = now or utcnow()
    start, end = subscription.current_period_start, subscription.current_period_end
    # Unused time is credited at the price paid for it, not at the plan's price now.
    old_amount = subscription.unit_amount * subscription.quantity
    new_amount = new_plan.price_per_mailbox * quantity
    change_key = f"change:{subscription.id}:{new_id()}"
    if new_plan.period == old_plan.period:
        proration = prorate(old_amount, new_amount, start, end, now)
        lines = [
            InvoiceLine(
                description=(
                    f"{old_plan.name} x {subscription.quantity} -> {new_plan.name} x {quantity}, "
                    f"prorated for {proration.remaining_seconds} of "
                    f"{proration.period_seconds} seconds left until {end:%Y-%m-%d}"
                ),
                quantity=1,
                unit_amount=proration.amount,
            )
        ]
        period = (start, end)
    else:
        unused = prorate(old_amount, 0, start, end, now)
        new_start, new_end = period_bounds(now.replace(microsecond=0), new_plan.period, 0)
        lines = [
            InvoiceLine(
                description=f"Unused time on {old_plan.name} x {subscription.quantity}",
                quantity=1,
                unit_amount=unused.amount,
            ),
            seat_line(new_plan, quantity, new_start, new_end),
        ]
        proration = Proration(
            unused.amount + new_amount, unused.remaining_seconds, unused.period_seconds
        )
        subscription.anchor_at = new_start
        subscription.periods_started = 1
        subscription.current_period_start, subscription.current_period_end = new_start, new_end
        period = (new_start, new_end)
    invoice = await charge(
        session,
        account,
        kind="change",
        lines=[line for line in lines if line.amount != 0],
        key=change_key,
        subscription=subscription,
        period=period,
        user_id=user_id,
    )
    subscription.plan_id = new_plan.id
    subscription.quantity = quantity
    subscription.unit_amount = new_plan.price_per_mailbox
    subscription.updated_at = utcnow()
    await session.flush()
    return SubscriptionChange(subscription, proration, invoice)


async def cancel_subscription(
    session: AsyncSession, settings: Settings, subscription: Subscription
) -> Subscription:
    """Cancel at the end of the paid period (a past-due subscription ends now)."""
    require_billing(settings)
    await ledger.lock_account(session, subscription.workspace_id, settings.billing_currency)
    await session.refresh(subscription)
    if subscription.status == SubscriptionStatus.CANCELED:
        return subscription
    now = utcnow()
    subscription.canceled_at = now
    subscription.cancel_at_period_end = True
    if subscription.status == SubscriptionStatus.PAST_DUE:
        await end_subscription(session, subscription, now)
    await session.flush()
    plan = await get_plan(session, subscription.plan_id)
    await ledger.emit_event(
        session,
        subscription.workspace_id,
        "subscription.canceled",
        subscription_event(
            subscription,
            plan,
            cancelAtPeriodEnd=True,
            endsAt=isoformat(subscription.ended_at or subscription.current_period_end),
        ),
    )
    return subscription


async def end_subscription(
    session: AsyncSession, subscription: Subscription, now: datetime
) -> None:
    subscription.status = SubscriptionStatus.CANCELED
    subscription.ended_at = min(now, subscription.current_period_end)
    await seats.suspend_mailboxes(session, subscription.workspace_id)
