"""Webhook endpoints, the events they receive, deliveries and delivery attempts.

Events and deliveries are an outbox: `webhooks.service.emit` writes them in the
caller's transaction, and a durable workflow per delivery sends them.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailfleet.db import Base
from mailfleet.kit.clock import utcnow
from mailfleet.models.common import Timestamps, UTCDateTime, id_column


class DeliveryStatus(StrEnum):
    """A webhook delivery: pending while attempts remain."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


DELIVERY_STATUSES = tuple(DeliveryStatus)
# The deliveries the outbox sweeper re-enqueues: pending and never attempted (once
# attempted, a delivery's workflow is durable). The predicate of the partial index
# ix_webhook_deliveries_unstarted.
UNSTARTED_DELIVERIES = "status = 'pending' AND attempt_count = 0"


class WebhookEndpoint(Timestamps, Base):
    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str] = mapped_column(String(1000), default="")
    # Event type names, or ["*"] for every event.
    event_types: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The Standard Webhooks signing secret (whsec_...), keyring ciphertext.
    secret_enc: Mapped[str] = mapped_column(Text)
    # Health, for disabling an endpoint that keeps failing: deliveries that ended
    # failed since the last success, and when the current run of failures began.
    failed_deliveries_in_row: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    disabled_reason: Mapped[str | None] = mapped_column(String(300))


class WebhookEvent(Base):
    """One event as sent: the payload is built from these columns on every attempt."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebhookDelivery(Timestamps, Base):
    """One event to one endpoint; one durable workflow sends it, with retries."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The deliveries the sweeper re-enqueues, oldest first (migration 0024): not
        # every pending one, since a delivery waiting between retries stays pending
        # for hours, and an endpoint that is down gathers thousands of them.
        Index(
            "ix_webhook_deliveries_unstarted",
            "created_at",
            sqlite_where=text(UNSTARTED_DELIVERIES),
            postgresql_where=text(UNSTARTED_DELIVERIES),
        ),
    )

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    endpoint_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A manual retry is a new delivery of the same event; this names the one retried.
    retry_of_id: Mapped[str | None] = mapped_column(String(24))

    attempts: Mapped[list[WebhookDeliveryAttempt]] = relationship(
        lazy="selectin",
        order_by="WebhookDeliveryAttempt.attempt",
        passive_deletes=True,
    )


class WebhookDeliveryAttempt(Base):
    __tablename__ = "webhook_delivery_attempts"
    # A step re-run after a crash must not record its attempt twice.
    __table_args__ = (UniqueConstraint("delivery_id", "attempt"),)

    id: Mapped[str] = id_column()
    delivery_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    # The first 500 bytes of the receiver's answer, decoded leniently.
    response_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(1000))
    redirect_location: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
