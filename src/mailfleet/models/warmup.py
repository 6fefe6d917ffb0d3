"""Warmup: per-mailbox settings and state, and every warmup message sent.

A message row is planned before it is sent and keeps what the receiver found
in its folders, so every analytics number is a count of these rows, each one
traceable to a message in a real folder.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import (
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from mailfleet.db import Base
from mailfleet.models.common import Timestamps, UTCDateTime, id_column


class WarmupState(StrEnum):
    """Warming up the ramp, ready at dailyTarget, paused (off or not yet started),
    or stopped on an error (a failed login) until the mailbox works again."""

    WARMING = "warming"
    READY = "ready"
    PAUSED = "paused"
    ERROR = "error"


class WarmupMessageStatus(StrEnum):
    """planned -> sending (SMTP under way) -> sent; failed when the server refused it."""

    PLANNED = "planned"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class WarmupPlacement(StrEnum):
    """The folder class a receiver found a message in."""

    INBOX = "inbox"
    SPAM = "spam"
    PROMOTIONS = "promotions"
    OTHER = "other"


WARMUP_STATES = tuple(WarmupState)
WARMUP_MESSAGE_STATUSES = tuple(WarmupMessageStatus)
WARMUP_PLACEMENTS = tuple(WarmupPlacement)
# States in which a mailbox sends and receives warmup mail.
ACTIVE_WARMUP_STATES = (WarmupState.WARMING, WarmupState.READY)


class WarmupSettings(Timestamps, Base):
    __tablename__ = "warmup_settings"

    mailbox_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True
    )
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=False, index=True)
    start_per_day: Mapped[int] = mapped_column(Integer, default=5)
    ramp_up_per_day: Mapped[int] = mapped_column(Integer, default=1)
    daily_target: Mapped[int] = mapped_column(Integer, default=20)
    reply_rate: Mapped[int] = mapped_column(Integer, default=30)
    window_start: Mapped[str] = mapped_column(String(5), default="08:00")
    window_end: Mapped[str] = mapped_column(String(5), default="18:00")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    state: Mapped[str] = mapped_column(String(20), default=WarmupState.PAUSED)
    state_reason: Mapped[str | None] = mapped_column(String(1000))
    # The first day of the ramp, in the window's timezone: day n sends
    # startPerDay + n * rampUpPerDay.
    started_on: Mapped[date | None] = mapped_column(Date)


class WarmupMessage(Timestamps, Base):
    """One planned warmup message (or a reply to one), from sender to receiver."""

    __tablename__ = "warmup_messages"
    __table_args__ = (
        # The key that makes planning idempotent: a sender's n-th send of a day
        # exists once, however often the planner runs or is replayed.
        UniqueConstraint("sender_id", "day", "kind", "seq"),
        Index("ix_warmup_messages_sender_id_status", "sender_id", "status"),
        Index("ix_warmup_messages_receiver_id_status", "receiver_id", "status"),
    )

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    sender_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("mailboxes.id", ondelete="CASCADE")
    )
    receiver_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("mailboxes.id", ondelete="CASCADE")
    )
    # "warmup" or "reply"; a reply's seq is its parent's, so one reply per message.
    kind: Mapped[str] = mapped_column(String(10), default="warmup")
    day: Mapped[date] = mapped_column(Date, index=True)
    seq: Mapped[int] = mapped_column(Integer)
    parent_id: Mapped[str | None] = mapped_column(String(24), unique=True)
    tracking_code: Mapped[str] = mapped_column(String(40), unique=True)
    message_id: Mapped[str] = mapped_column(String(300))
    subject: Mapped[str] = mapped_column(String(300))
    planned_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    status: Mapped[str] = mapped_column(String(10), default=WarmupMessageStatus.PLANNED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(String(1000))
    # What the receiver found: the folder class it landed in, and when.
    placement: Mapped[str | None] = mapped_column(String(20))
    folder: Mapped[str | None] = mapped_column(String(200))
    seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    saved_from_spam: Mapped[bool] = mapped_column(Boolean, default=False)
    replied: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
