"""Domain purchase orders: one order per purchase request, one item per name."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from mailfleet.db import Base
from mailfleet.models.common import Timestamps, UTCDateTime, id_column


class OrderStatus(StrEnum):
    """pending_payment (the wallet could not cover it), processing (paid, or billing
    off: its workflow runs), completed (every name ended connected or failed)."""

    PENDING_PAYMENT = "pending_payment"
    PROCESSING = "processing"
    COMPLETED = "completed"


class ItemStatus(StrEnum):
    PENDING_PAYMENT = "pending_payment"
    REGISTERING = "registering"
    REGISTERED = "registered"
    CONNECTED = "connected"
    FAILED = "failed"


class DomainOrder(Timestamps, Base):
    __tablename__ = "domain_orders"
    # A retried request with the same Idempotency-Key finds its order.
    __table_args__ = (UniqueConstraint("workspace_id", "idempotency_key"),)

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    status: Mapped[str] = mapped_column(String(20), index=True)
    registrar: Mapped[str] = mapped_column(String(20))
    years: Mapped[int] = mapped_column(Integer)
    dns_provider: Mapped[str] = mapped_column(String(20))
    mail_provider: Mapped[str] = mapped_column(String(20))
    auto_renew: Mapped[bool] = mapped_column(Boolean, default=False)
    # What the customer pays (the registrar's price plus the markup), all names.
    total: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    # Whether the total was taken from the wallet (billing on), and the payment
    # (a Stripe Checkout) asked for it when the wallet could not cover it.
    charged: Mapped[bool] = mapped_column(Boolean, default=False)
    payment_id: Mapped[str | None] = mapped_column(String(24))
    # The registrant, for registrars that take one per order (Namecheap).
    contact: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_by_user_id: Mapped[str | None] = mapped_column(String(24))
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DomainOrderItem(Timestamps, Base):
    __tablename__ = "domain_order_items"
    __table_args__ = (
        UniqueConstraint("order_id", "name"),
        # A name is bought by one order at a time, across workspaces: a concurrent
        # purchase of it is refused before anything is charged.
        Index(
            "uq_domain_order_items_name_not_failed",
            "name",
            unique=True,
            sqlite_where=text("status != 'failed'"),
            postgresql_where=text("status != 'failed'"),
        ),
    )

    id: Mapped[str] = id_column()
    order_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("domain_orders.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[str] = mapped_column(String(24), index=True)
    # ASCII (punycode), lowercase.
    name: Mapped[str] = mapped_column(String(253), index=True)
    unicode_name: Mapped[str] = mapped_column(String(253))
    status: Mapped[str] = mapped_column(String(20), index=True)
    premium: Mapped[bool] = mapped_column(Boolean, default=False)
    # The registrar's price at the quote (its currency's minor unit), and what the
    # customer pays for the name (with the markup).
    cost: Mapped[int] = mapped_column(BigInteger)
    price: Mapped[int] = mapped_column(BigInteger)
    # Create requests sent to the registrar: past the first, a retry asks the
    # registrar whether the name is ours already before sending another.
    register_attempts: Mapped[int] = mapped_column(Integer, default=0)
    registrar_order_ref: Mapped[str | None] = mapped_column(String(100))
    registered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    domain_id: Mapped[str | None] = mapped_column(String(24))
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Why the name failed (or why a registered name is not connected yet).
    reason: Mapped[str | None] = mapped_column(String(500))
    # The registrar's new price when it changed since the quote.
    new_price: Mapped[int | None] = mapped_column(BigInteger)
    refunded: Mapped[bool] = mapped_column(Boolean, default=False)
