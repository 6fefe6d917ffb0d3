"""Billing: plans, billing accounts, subscriptions, the wallet ledger, payments, invoices.

Money is always an integer count of the currency's minor unit (cents for USD),
never a float. The wallet balance is the sum of the ledger; ledger rows are
only ever inserted.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mailfleet.db import Base
from mailfleet.kit.clock import utcnow
from mailfleet.models.common import Timestamps, UTCDateTime, id_column

PLAN_PERIODS = ("month", "year")


class SubscriptionStatus(StrEnum):
    """Past due after a failed renewal; canceled for good."""

    ACTIVE = "active"
    PAST_DUE = "past_due"
    CANCELED = "canceled"


class PaymentStatus(StrEnum):
    """A payment with the provider."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


SUBSCRIPTION_STATUSES = tuple(SubscriptionStatus)
PAYMENT_STATUSES = tuple(PaymentStatus)
LEDGER_KINDS = ("topup", "credit", "charge", "refund")
INVOICE_KINDS = ("subscription", "renewal", "change", "topup")


class Plan(Timestamps, Base):
    """A price per mailbox per period, and the limits that come with it."""

    __tablename__ = "billing_plans"

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(String(1000), default="")
    price_per_mailbox: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    period: Mapped[str] = mapped_column(String(8))
    # None: no limit. max_mailboxes caps a subscription's quantity.
    max_mailboxes: Mapped[int | None] = mapped_column(Integer)
    max_domains: Mapped[int | None] = mapped_column(Integer)
    # Inactive plans keep their subscribers but take no new ones.
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class BillingAccount(Timestamps, Base):
    """One per workspace: the row every money movement and seat reservation locks.

    `lock_version` exists to be bumped: an UPDATE of this row is the per-workspace
    lock on PostgreSQL (a row lock) and on SQLite (the single writer lock).
    """

    __tablename__ = "billing_accounts"

    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    currency: Mapped[str] = mapped_column(String(3))
    lock_version: Mapped[int] = mapped_column(BigInteger, default=0)
    auto_recharge_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    auto_recharge_threshold: Mapped[int] = mapped_column(BigInteger, default=0)
    auto_recharge_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    # The payment provider's customer and saved card (e.g. Stripe cus_..., pm_...).
    provider_customer_id: Mapped[str | None] = mapped_column(String(255))
    provider_payment_method_id: Mapped[str | None] = mapped_column(String(255))


class WalletEntry(Base):
    """One movement of money in or out of a workspace's wallet (append-only).

    `idempotency_key` names the movement (`payment:<id>`, `renewal:<sub>:<period>`,
    `request:<Idempotency-Key>`...), so a retried step or a redelivered event
    finds the entry it already wrote instead of writing a second one.
    """

    __tablename__ = "billing_wallet_entries"
    __table_args__ = (UniqueConstraint("workspace_id", "idempotency_key"),)

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    # Signed minor units: positive in, negative out.
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    kind: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(500))
    idempotency_key: Mapped[str] = mapped_column(String(300))
    payment_id: Mapped[str | None] = mapped_column(String(24))
    invoice_id: Mapped[str | None] = mapped_column(String(24))
    subscription_id: Mapped[str | None] = mapped_column(String(24))
    created_by_user_id: Mapped[str | None] = mapped_column(String(24))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Payment(Timestamps, Base):
    """Money asked of a payment provider (or recorded by an administrator)."""

    __tablename__ = "billing_payments"

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    provider: Mapped[str] = mapped_column(String(16))
    # "topup" (the customer pays through checkout or an admin records it) or
    # "auto_recharge" (the saved payment method charged off-session).
    purpose: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    # The provider's object: a Checkout Session (cs_...) or a PaymentIntent (pi_...).
    provider_ref: Mapped[str | None] = mapped_column(String(255), index=True)
    checkout_url: Mapped[str | None] = mapped_column(String(2048))
    # What the payment is for when not a plain top-up, e.g. `renewal:<sub>:<period>`.
    reason: Mapped[str | None] = mapped_column(String(300), index=True)
    note: Mapped[str | None] = mapped_column(String(500))
    failure_message: Mapped[str | None] = mapped_column(String(500))
    recorded_by_user_id: Mapped[str | None] = mapped_column(String(24))
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Subscription(Timestamps, Base):
    """A workspace's seats on a plan: `quantity` mailboxes, billed each period."""

    __tablename__ = "billing_subscriptions"

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    plan_id: Mapped[str] = mapped_column(String(24), ForeignKey("billing_plans.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    # The price per mailbox paid for the current period (the plan's may change
    # since): what unused time is credited at.
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(12), default="active", index=True)
    # Periods are counted from the anchor so month ends do not drift (Jan 31,
    # Feb 28, Mar 31), whatever day a renewal actually ran.
    anchor_at: Mapped[datetime] = mapped_column(UTCDateTime())
    periods_started: Mapped[int] = mapped_column(Integer, default=1)
    current_period_start: Mapped[datetime] = mapped_column(UTCDateTime())
    current_period_end: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    past_due_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # When the grace period ran out and the workspace's mailboxes were paused.
    suspended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MailboxRemoval(Base):
    """A billed mailbox deleted by its owner: it keeps working until the period it
    was paid for ends, then the renewal deletes it and bills one seat less."""

    __tablename__ = "billing_mailbox_removals"

    mailbox_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    subscription_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("billing_subscriptions.id", ondelete="CASCADE"), index=True
    )
    remove_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SuspendedMailbox(Base):
    """A mailbox billing paused (unpaid renewal), so that payment resumes exactly
    these and never one its owner paused on purpose."""

    __tablename__ = "billing_suspended_mailboxes"

    mailbox_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Invoice(Timestamps, Base):
    __tablename__ = "billing_invoices"

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[str] = mapped_column(String(32), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(12), default="paid")
    currency: Mapped[str] = mapped_column(String(3))
    # [{"description", "quantity", "unitAmount", "amount"}], amounts in minor units;
    # a credit for unused time is a line with a negative amount.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    subtotal: Mapped[int] = mapped_column(BigInteger)
    total: Mapped[int] = mapped_column(BigInteger)
    # The billing details as they were when the invoice was issued.
    bill_to: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    subscription_id: Mapped[str | None] = mapped_column(String(24), index=True)
    payment_id: Mapped[str | None] = mapped_column(String(24))
    period_start: Mapped[datetime | None] = mapped_column(UTCDateTime())
    period_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BillingDetails(Timestamps, Base):
    __tablename__ = "billing_details"

    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    company_name: Mapped[str] = mapped_column(String(200))
    address_line1: Mapped[str] = mapped_column(String(200))
    address_line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    state: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country: Mapped[str] = mapped_column(String(2))
    tax_id: Mapped[str | None] = mapped_column(String(40))
    billing_email: Mapped[str] = mapped_column(String(320))


class IdempotentRequest(Base):
    """A money-moving request's answer, replayed to a retry with the same key."""

    __tablename__ = "billing_idempotent_requests"
    __table_args__ = (UniqueConstraint("workspace_id", "key"),)

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of method, path and body: the same key with another request is refused.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer, default=0)
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ProviderEvent(Base):
    """A payment provider's event already handled (Stripe retries deliveries)."""

    __tablename__ = "billing_provider_events"
    __table_args__ = (UniqueConstraint("provider", "event_id"),)

    id: Mapped[str] = id_column()
    provider: Mapped[str] = mapped_column(String(16))
    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BillingCounter(Base):
    """Named counters (invoice numbers). Updating a row hands out the next value."""

    __tablename__ = "billing_counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)
