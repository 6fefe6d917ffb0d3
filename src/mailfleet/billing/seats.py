"""What a workspace may hold: its mailbox and domain quotas, seat reservations,
mailboxes removed at the next renewal, and mailboxes paused for non-payment.

The other areas (mailboxes, bulk, warmup, domains) ask this module before they
add anything; it is the one part of billing they import. Services flush and
never commit; the request or the job step commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.billing import ledger
from mailfleet.billing.plans import (
    billing_enabled,
    get_plan,
    resolved_settings,
)
from mailfleet.config import Settings
from mailfleet.kit.clock import utcnow
from mailfleet.kit.errors import (
    LimitReached,
    SubscriptionRequired,
)
from mailfleet.models import Mailbox, MailboxStatus, SubscriptionStatus
from mailfleet.models.billing import (
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


async def apply_removals(session: AsyncSession, subscription: Subscription) -> int:
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
