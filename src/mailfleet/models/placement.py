"""Placement tests: one message per sender and seed, and where each seed found it.

A result row exists for every (sender, seed) pair from the moment the test is
created, so a test's answer is always a count of these rows: planned, sent,
then found in a folder (with the seed's Authentication-Results) or missing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailfleet.db import Base
from mailfleet.models.common import Timestamps, UTCDateTime, id_column


class PlacementTestStatus(StrEnum):
    """sending -> waiting (every message sent or failed) -> completed; canceled by DELETE."""

    SENDING = "sending"
    WAITING = "waiting"
    COMPLETED = "completed"
    CANCELED = "canceled"


class DeliveryMode(StrEnum):
    """`one-by-one`: one message at a time, sender after sender; `together`: every
    sender at once (each over its own SMTP session)."""

    ONE_BY_ONE = "one-by-one"
    TOGETHER = "together"


class PlacementSendStatus(StrEnum):
    """planned -> sending (claimed, SMTP under way) -> sent; failed when refused."""

    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class PlacementFolder(StrEnum):
    INBOX = "inbox"
    SPAM = "spam"
    PROMOTIONS = "promotions"
    OTHER = "other"
    MISSING = "missing"


class PlacementProvider(StrEnum):
    """The mailbox providers results are grouped by; any other host is `other`."""

    GOOGLE = "google"
    MICROSOFT = "microsoft"
    YAHOO = "yahoo"
    ZOHO = "zoho"
    ICLOUD = "icloud"
    OTHER = "other"


class PlacementTest(Timestamps, Base):
    __tablename__ = "placement_tests"

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    # In every message's body and its X-Mailfleet-Placement header.
    code: Mapped[str] = mapped_column(String(40), unique=True)
    subject: Mapped[str] = mapped_column(String(300))
    text: Mapped[str | None] = mapped_column(Text)
    html: Mapped[str | None] = mapped_column(Text)
    delivery_mode: Mapped[str] = mapped_column(String(20), default=DeliveryMode.TOGETHER)
    timeout_minutes: Mapped[int] = mapped_column(Integer, default=60)
    status: Mapped[str] = mapped_column(String(20), default=PlacementTestStatus.SENDING, index=True)
    # When the last message left: the timeout counts from here.
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PlacementResult(Timestamps, Base):
    """One message, from one sender to one seed."""

    __tablename__ = "placement_results"
    __table_args__ = (
        UniqueConstraint("test_id", "sender_id", "seed_id"),
        Index("ix_placement_results_test_id_seed_id", "test_id", "seed_id"),
    )

    id: Mapped[str] = id_column()
    test_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("placement_tests.id", ondelete="CASCADE")
    )
    # Order of sending within the test (and the tail of the tracking code).
    seq: Mapped[int] = mapped_column(Integer)
    # No foreign keys to mailboxes: a result outlives a mailbox removed later, and
    # keeps the addresses it was about.
    sender_id: Mapped[str] = mapped_column(String(24), index=True)
    sender_email: Mapped[str] = mapped_column(String(320))
    seed_id: Mapped[str] = mapped_column(String(24), index=True)
    seed_email: Mapped[str] = mapped_column(String(320))
    provider: Mapped[str] = mapped_column(String(20), default=PlacementProvider.OTHER)
    tracking_code: Mapped[str] = mapped_column(String(60), unique=True)
    message_id: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(10), default=PlacementSendStatus.PLANNED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(String(1000))
    # What the seed showed: the folder's class and name, and when it arrived there.
    folder: Mapped[str | None] = mapped_column(String(20))
    folder_name: Mapped[str | None] = mapped_column(String(200))
    found_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    arrived_after_seconds: Mapped[float | None] = mapped_column(Float)
    auth_spf: Mapped[str | None] = mapped_column(String(20))
    auth_dkim: Mapped[str | None] = mapped_column(String(20))
    auth_dmarc: Mapped[str | None] = mapped_column(String(20))
