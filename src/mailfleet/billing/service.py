"""Mailbox limits, subscriptions and their renewal (plans are in plans.py).

A subscription buys `quantity` mailbox seats on a plan for a period, paid from
the workspace's wallet when it starts and at each renewal. The workspace may
hold as many mailboxes as it has seats. With MAILFLEET_BILLING=off every
workspace holds the built-in unlimited "self-hosted" plan and nothing here
charges anyone.

Services flush and never commit; the request or the job step commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.billing import invoices, ledger
from mailfleet.billing.invoices import InvoiceLine
from mailfleet.billing.money import Proration, format_amount, period_bounds, prorate
from mailfleet.billing.plans import SELF_HOSTED_PLAN_ID as SELF_HOSTED_PLAN_ID
from mailfleet.billing.plans import billing_enabled as billing_enabled
from mailfleet.billing.plans import create_plan as create_plan
from mailfleet.billing.plans import get_plan as get_plan
from mailfleet.billing.plans import list_plans as list_plans
from mailfleet.billing.plans import require_billing as require_billing
from mailfleet.billing.plans import resolved_settings
from mailfleet.billing.plans import self_hosted_plan as self_hosted_plan
from mailfleet.billing.plans import update_plan as update_plan
from mailfleet.billing.queue import enqueue_renewal
from mailfleet.billing.queue import period_key as period_key
from mailfleet.billing.queue import renewal_workflow_id as renewal_workflow_id
from mailfleet.billing.repository import SubscriptionRepository
from mailfleet.billing.schemas import SubscriptionCreate, SubscriptionUpdate
from mailfleet.config import Settings
from mailfleet.kit.clock import isoformat, utcnow
from mailfleet.kit.errors import (
    Conflict,
    LimitReached,
    SubscriptionRequired,
    ValidationFailed,
)
from mailfleet.kit.ids import new_id
from mailfleet.kit.pagination import Page
from mailfleet.models import Mailbox, MailboxStatus, SubscriptionStatus
from mailfleet.models.billing import (
    BillingAccount,
    Invoice,
    MailboxRemoval,
    Plan,
    Subscription,
    SuspendedMailbox,
)
from mailfleet.models.common import UTCDateTime

# Statuses that hold the workspace's seats; "past_due" keeps them through the grace
# period but adds none (SUBSCRIPTION_REQUIRED until paid).
LIVE_STATUSES = (SubscriptionStatus.ACTIVE, SubscriptionStatus.PAST_DUE)


# Limits


@dataclass(frozen=True)
class MailboxQuota:
    """The workspace's mailbox seats: `max_mailboxes` None means unlimited."""

    max_mailboxes: int | None
    max_domains: int | None
    current_usage: int
    subscription_id: str | None

    @property
    def seats_left(self) -> int | None:
        if self.max_mailboxes is None:
            return None
        return max(0, self.max_mailboxes - self.current_usage)


async def mailbox_count(session: AsyncSession, workspace_id: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Mailbox).where(Mailbox.workspace_id == workspace_id)
    )
    return int(count or 0)


async def live_subscription(session: AsyncSession, workspace_id: str) -> Subscription | None:
    """The workspace's active or past-due subscription (there is at most one)."""
    subscription: Subscription | None = await session.scalar(
        select(Subscription)
        .where(Subscription.workspace_id == workspace_id, Subscription.status.in_(LIVE_STATUSES))
        .order_by(Subscription.created_at.desc())
        .limit(1)
    )
    return subscription


def _seats(subscription: Subscription, plan: Plan) -> int:
    if plan.max_mailboxes is None:
        return subscription.quantity
    return min(subscription.quantity, plan.max_mailboxes)


async def mailbox_quota(
    session: AsyncSession, workspace_id: str, *, settings: Settings | None = None
) -> MailboxQuota:
    """The workspace's seats and usage. Raises SubscriptionRequired when billing is
    on and the workspace has no active subscription."""
    if not billing_enabled(settings):
        return MailboxQuota(None, None, await mailbox_count(session, workspace_id), None)
    subscription = await live_subscription(session, workspace_id)
    if subscription is None or subscription.status != SubscriptionStatus.ACTIVE:
        raise SubscriptionRequired("Workspace owner needs an active subscription to add mailboxes")
    plan = await get_plan(session, subscription.plan_id)
    return MailboxQuota(
        max_mailboxes=_seats(subscription, plan),
        max_domains=plan.max_domains,
        current_usage=await mailbox_count(session, workspace_id),
        subscription_id=subscription.id,
    )


async def check_mailbox_quota(
    session: AsyncSession, workspace_id: str, requested: int, *, settings: Settings | None = None
) -> None:
    """Raise SUBSCRIPTION_REQUIRED or LIMIT_REACHED (SendKit's bodies) unless the
    workspace may add `requested` mailboxes. Reads only: under concurrency use
    `reserve_mailbox_seats`, which locks first."""
    quota = await mailbox_quota(session, workspace_id, settings=settings)
    if quota.max_mailboxes is not None and quota.current_usage + requested > quota.max_mailboxes:
        raise LimitReached(
            "Mailbox limit reached for your plan",
            currentUsage=quota.current_usage,
            maxMailboxes=quota.max_mailboxes,
            requested=requested,
        )


async def reserve_mailbox_seats(
    session: AsyncSession,
    workspace_id: str,
    requested: int = 1,
    *,
    settings: Settings | None = None,
) -> None:
    """Check the quota holding the workspace's billing lock until the transaction
    ends, so two requests cannot both take the last seat: call it in the
    transaction that inserts the mailboxes, before inserting them. The seat is
    the inserted mailbox itself, so a rollback or a later delete frees it.

    Billing off: returns at once without locking (no limit to race for).
    """
    current = resolved_settings(settings)
    if not billing_enabled(current):
        return
    await ledger.lock_account(session, workspace_id, current.billing_currency)
    await check_mailbox_quota(session, workspace_id, requested, settings=current)


@dataclass
class SeatBatch:
    """Seats for a bulk import, checked under the lock once instead of a COUNT per
    item: `take()` before inserting each mailbox (LIMIT_REACHED, SendKit's body,
    when none is left), `give_back()` when that item then fails for another reason."""

    quota: MailboxQuota
    taken: int = 0

    def take(self) -> None:
        limit = self.quota.max_mailboxes
        usage = self.quota.current_usage + self.taken
        if limit is not None and usage + 1 > limit:
            raise LimitReached(
                "Mailbox limit reached for your plan",
                currentUsage=usage,
                maxMailboxes=limit,
                requested=1,
            )
        self.taken += 1

    def give_back(self) -> None:
        self.taken = max(0, self.taken - 1)


async def reserve_seat_batch(
    session: AsyncSession, workspace_id: str, *, settings: Settings | None = None
) -> SeatBatch:
    """Lock the workspace's seats for the rest of the transaction and count them
    once. Raises SUBSCRIPTION_REQUIRED as `check_mailbox_quota` does. Billing off:
    no lock, and `take()` never refuses."""
    current = resolved_settings(settings)
    if billing_enabled(current):
        await ledger.lock_account(session, workspace_id, current.billing_currency)
    return SeatBatch(await mailbox_quota(session, workspace_id, settings=current))


async def check_domain_quota(
    session: AsyncSession,
    workspace_id: str,
    current_domains: int,
    requested: int = 1,
    *,
    settings: Settings | None = None,
) -> None:
    """LIMIT_REACHED when the plan's domain limit would be passed. The caller
    counts its domains (the domains area owns that table)."""
    quota = await mailbox_quota(session, workspace_id, settings=settings)
    if quota.max_domains is not None and current_domains + requested > quota.max_domains:
        raise LimitReached(
            "Domain limit reached for your plan",
            currentUsage=current_domains,
            maxDomains=quota.max_domains,
            requested=requested,
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
    usage = await mailbox_count(session, workspace_id)
    if quantity < usage:
        raise ValidationFailed.for_field(
            "quantity",
            f"The workspace has {usage} mailboxes; keep at least {usage} seats or remove "
            "mailboxes first",
        )


def _period_label(start: datetime, end: datetime) -> str:
    return f"{start:%Y-%m-%d} to {end:%Y-%m-%d}"


def _seat_line(plan: Plan, quantity: int, start: datetime, end: datetime) -> InvoiceLine:
    return InvoiceLine(
        description=f"{plan.name}: mailbox seats, {_period_label(start, end)}",
        quantity=quantity,
        unit_amount=plan.price_per_mailbox,
    )


async def _charge(
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
    existing = await live_subscription(session, workspace_id)
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
    await _charge(
        session,
        account,
        kind="subscription",
        lines=[_seat_line(plan, data.quantity, start, end)],
        key=f"subscription:{subscription.id}",
        subscription=subscription,
        period=(start, end),
        user_id=user_id,
    )
    # Mailboxes a lapsed subscription paused come back with the new one.
    await resume_mailboxes(session, workspace_id)
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
            _seat_line(new_plan, quantity, new_start, new_end),
        ]
        proration = Proration(
            unused.amount + new_amount, unused.remaining_seconds, unused.period_seconds
        )
        subscription.anchor_at = new_start
        subscription.periods_started = 1
        subscription.current_period_start, subscription.current_period_end = new_start, new_end
        period = (new_start, new_end)
    invoice = await _charge(
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
        await _end(session, subscription, now)
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


async def _end(session: AsyncSession, subscription: Subscription, now: datetime) -> None:
    subscription.status = SubscriptionStatus.CANCELED
    subscription.ended_at = min(now, subscription.current_period_end)
    await suspend_mailboxes(session, subscription.workspace_id)


# Mailbox removal at the next renewal


async def schedule_mailbox_removal(
    session: AsyncSession, workspace_id: str, mailbox_id: str, *, settings: Settings | None = None
) -> datetime | None:
    """For DELETE /v1/mailboxes/{id}: when the mailbox is billed (billing on and a
    live subscription), keep it until the paid period ends and return when it
    goes; the renewal then deletes it and bills one seat less. None: not billed,
    so the caller deletes it now. Scheduling twice returns the first date."""
    if not billing_enabled(settings):
        return None
    subscription = await live_subscription(session, workspace_id)
    if subscription is None:
        return None
    existing = await session.get(MailboxRemoval, mailbox_id)
    if existing is not None:
        return existing.remove_at
    removal = MailboxRemoval(
        mailbox_id=mailbox_id,
        workspace_id=workspace_id,
        subscription_id=subscription.id,
        remove_at=subscription.current_period_end,
    )
    session.add(removal)
    await session.flush()
    return removal.remove_at


async def cancel_mailbox_removal(session: AsyncSession, workspace_id: str, mailbox_id: str) -> bool:
    result = await session.execute(
        delete(MailboxRemoval).where(
            MailboxRemoval.mailbox_id == mailbox_id, MailboxRemoval.workspace_id == workspace_id
        )
    )
    return bool(getattr(result, "rowcount", 0))


async def scheduled_removals(
    session: AsyncSession, workspace_id: str, mailbox_ids: list[str]
) -> dict[str, datetime]:
    """When each of these mailboxes goes (only those scheduled), for list views."""
    if not mailbox_ids:
        return {}
    rows = await session.execute(
        select(MailboxRemoval.mailbox_id, MailboxRemoval.remove_at).where(
            MailboxRemoval.workspace_id == workspace_id, MailboxRemoval.mailbox_id.in_(mailbox_ids)
        )
    )
    return {mailbox_id: remove_at for mailbox_id, remove_at in rows}


async def _apply_removals(session: AsyncSession, subscription: Subscription) -> int:
    due = list(
        await session.execute(
            select(MailboxRemoval.mailbox_id, Mailbox.email)
            .join(Mailbox, Mailbox.id == MailboxRemoval.mailbox_id)
            .where(MailboxRemoval.subscription_id == subscription.id)
        )
    )
    if not due:
        return 0
    ids = [mailbox_id for mailbox_id, _ in due]
    await session.execute(
        delete(Mailbox).where(Mailbox.id.in_(ids)).execution_options(synchronize_session=False)
    )
    await session.execute(delete(MailboxRemoval).where(MailboxRemoval.mailbox_id.in_(ids)))
    subscription.quantity = max(0, subscription.quantity - len(ids))
    for mailbox_id, email in due:
        await ledger.emit_event(
            session,
            subscription.workspace_id,
            "mailbox.deleted",
            {"mailboxId": mailbox_id, "email": email},
        )
    return len(ids)


# Pausing and resuming a workspace's mailboxes for non-payment


async def suspend_mailboxes(session: AsyncSession, workspace_id: str) -> int:
    """Pause the workspace's active mailboxes (status "paused", sending off),
    remembering which, so payment resumes these and no other."""
    already = select(SuspendedMailbox.mailbox_id)
    to_pause = select(Mailbox.id, Mailbox.workspace_id, literal(utcnow(), UTCDateTime())).where(
        Mailbox.workspace_id == workspace_id,
        Mailbox.status == MailboxStatus.ACTIVE,
        Mailbox.id.not_in(already),
    )
    await session.execute(
        insert(SuspendedMailbox).from_select(["mailbox_id", "workspace_id", "created_at"], to_pause)
    )
    result = await session.execute(
        update(Mailbox)
        .where(
            Mailbox.workspace_id == workspace_id,
            Mailbox.status == MailboxStatus.ACTIVE,
            Mailbox.id.in_(
                select(SuspendedMailbox.mailbox_id).where(
                    SuspendedMailbox.workspace_id == workspace_id
                )
            ),
        )
        .values(status=MailboxStatus.PAUSED, sending_enabled=False, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0))


async def mailbox_suspended(session: AsyncSession, mailbox_id: str) -> bool:
    """Whether billing paused this mailbox (an unpaid renewal): its owner must not
    turn sending back on until the renewal is paid."""
    found = await session.scalar(
        select(SuspendedMailbox.mailbox_id).where(SuspendedMailbox.mailbox_id == mailbox_id)
    )
    return found is not None


async def resume_mailboxes(session: AsyncSession, workspace_id: str) -> int:
    suspended = select(SuspendedMailbox.mailbox_id).where(
        SuspendedMailbox.workspace_id == workspace_id
    )
    result = await session.execute(
        update(Mailbox)
        .where(
            Mailbox.workspace_id == workspace_id,
            Mailbox.status == MailboxStatus.PAUSED,
            Mailbox.id.in_(suspended),
        )
        .values(status=MailboxStatus.ACTIVE, sending_enabled=True, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    await session.execute(
        delete(SuspendedMailbox).where(SuspendedMailbox.workspace_id == workspace_id)
    )
    return int(getattr(result, "rowcount", 0))


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
    await _apply_removals(session, subscription)
    plan = await get_plan(session, subscription.plan_id)
    if subscription.cancel_at_period_end or subscription.quantity == 0:
        await _end(session, subscription, now)
        await session.flush()
        if not subscription.cancel_at_period_end:
            # Every seat was removed: the end nobody announced yet.
            await ledger.emit_event(
                session,
                workspace_id,
                "subscription.canceled",
                subscription_event(subscription, plan),
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
        invoice = await _charge(
            session,
            account,
            kind="renewal",
            lines=[_seat_line(plan, subscription.quantity, start, end)],
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
    resumed = await resume_mailboxes(session, workspace_id)
    await session.flush()
    await ledger.emit_event(
        session,
        workspace_id,
        "subscription.renewed",
        subscription_event(
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
            subscription_event(
                subscription,
                plan,
                amountDue=amount,
                graceEndsAt=isoformat(grace_ends),
                message=f"Renewal of {format_amount(amount, plan.currency)} unpaid",
            ),
        )
    if now >= grace_ends and subscription.suspended_at is None:
        await suspend_mailboxes(session, workspace_id)
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


async def retry_past_due_after_credit(
    session: AsyncSession, workspace_id: str, entry_id: str
) -> None:
    """Money came in: retry the workspace's unpaid renewal once this commits."""
    due = await past_due_subscriptions(session, workspace_id)
    if not due:
        return

    async def enqueue() -> None:
        for subscription_id, period_end in due:
            await enqueue_renewal(subscription_id, period_end, f"credit-{entry_id}")

    ledger.enqueue_after_commit(session, enqueue)
