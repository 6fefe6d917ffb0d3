"""Bulk connect jobs: one row per accepted request, one item per mailbox in it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailfleet.db import Base
from mailfleet.models.common import Timestamps, UTCDateTime, id_column


class BulkJobStatus(StrEnum):
    """A bulk job, queued to completed or failed."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


BULK_JOB_STATUSES = tuple(BulkJobStatus)
BULK_JOB_SOURCES = ("json", "csv", "saleshandy")
# "pending" until verified; "duplicate" and "invalid" are decided when the job is
# accepted and never get a mailbox.
BULK_ITEM_OUTCOMES = ("pending", "connected", "failed", "duplicate", "invalid")


class BulkJob(Timestamps, Base):
    __tablename__ = "bulk_jobs"
    # A retried request with the same Idempotency-Key finds its job instead of
    # creating the mailboxes twice; NULL keys never collide.
    __table_args__ = (UniqueConstraint("workspace_id", "idempotency_key"),)

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    created_by: Mapped[str | None] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    source: Mapped[str] = mapped_column(String(20))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    total: Mapped[int] = mapped_column(Integer, default=0)
    # Kept in step with the items by the transactions that change them, so a poll
    # reads one row instead of counting thousands.
    connected_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    duplicate_count: Mapped[int] = mapped_column(Integer, default=0)
    invalid_count: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(1000))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def pending_count(self) -> int:
        done = self.connected_count + self.failed_count + self.duplicate_count
        return max(0, self.total - done - self.invalid_count)


class BulkJobItem(Base):
    """One row of the request. No foreign key to the mailbox: a failed first test
    deletes it, and the item must still tell why."""

    __tablename__ = "bulk_job_items"
    __table_args__ = (
        UniqueConstraint("job_id", "row"),
        # Chunks load the pending items of a row range.
        Index("ix_bulk_job_items_job_id_outcome_row", "job_id", "outcome", "row"),
    )

    id: Mapped[str] = id_column()
    job_id: Mapped[str] = mapped_column(String(24), ForeignKey("bulk_jobs.id", ondelete="CASCADE"))
    row: Mapped[int] = mapped_column(Integer)
    email: Mapped[str] = mapped_column(String(320))
    outcome: Mapped[str] = mapped_column(String(20), default="pending")
    error_code: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(String(1000))
    mailbox_id: Mapped[str | None] = mapped_column(String(24))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
