"""Mailboxes, their tags, and their connection tests."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mailfleet.db import Base
from mailfleet.models.common import Timestamps, UTCDateTime, id_column


class MailboxStatus(StrEnum):
    """Inactive until its first connection test passes; paused by the user or billing."""

    INACTIVE = "inactive"
    ACTIVE = "active"
    PAUSED = "paused"
    ERROR = "error"


class ConnectionTestStatus(StrEnum):
    """A connection test: pending until its workflow records the outcome."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"


MAILBOX_STATUSES = tuple(MailboxStatus)
# The tests the single-test sweeper re-enqueues: pending, and no bulk job's (a job
# verifies its own). The predicate of the partial index ix_connection_tests_unqueued.
UNQUEUED_TESTS = "status = 'pending' AND job_id IS NULL"
# The placement seeds, as each backend is sent `Mailbox.placement_seed.is_(True)`:
# the predicate of the partial index ix_mailboxes_placement_seeds.
SEED_MAILBOXES = {"sqlite": "placement_seed IS 1", "postgresql": "placement_seed IS true"}

mailbox_tags = Table(
    "mailbox_tags",
    Base.metadata,
    Column(
        "mailbox_id", String(24), ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("tag_id", String(24), ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True),
    # The linked mailbox's created_at, copied by triggers (migration 0020): a tag's
    # links in a list page's order are the index below's range.
    Column("mailbox_created_at", UTCDateTime(), nullable=True),
    # A tag's mailboxes, counted from this index alone (the tag filter's total).
    Index("ix_mailbox_tags_tag_mailbox", "tag_id", "mailbox_id"),
    Index("ix_mailbox_tags_tag_created", "tag_id", "mailbox_created_at", "mailbox_id"),
)


class Tag(Timestamps, Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("workspace_id", "name"),)

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    color: Mapped[str | None] = mapped_column(String(20))


class Pool(Timestamps, Base):
    """A group of mailboxes in a workspace (DeepLead's inbox pools)."""

    __tablename__ = "pools"

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))


class Mailbox(Timestamps, Base):
    __tablename__ = "mailboxes"
    __table_args__ = (
        UniqueConstraint("workspace_id", "email"),
        # The listing's order (newest first, id breaking ties) within a workspace, whole
        # and by each equality filter: a page, a cursor's seek and a filter's count read
        # an index range instead of sorting or scanning the workspace (100,000
        # mailboxes: bench/fleet.py). The first also serves look-ups by workspace alone.
        Index("ix_mailboxes_workspace_created", "workspace_id", "created_at", "id"),
        Index("ix_mailboxes_workspace_status", "workspace_id", "status", "created_at", "id"),
        Index("ix_mailboxes_workspace_domain", "workspace_id", "domain", "created_at", "id"),
        Index("ix_mailboxes_workspace_pool", "workspace_id", "pool_id", "created_at", "id"),
        # What `search` reads, so its count scans this narrow index, not the wide rows
        # (SQLite, unanalyzed, otherwise probed the table row by row: 15 times slower).
        Index("ix_mailboxes_workspace_search", "workspace_id", "email", "display_name"),
        # The dashboard's count by provider, from this index alone (migration 0025):
        # SQLite read every row of a 100,000-mailbox workspace for it, 160 ms.
        Index("ix_mailboxes_workspace_provider", "workspace_id", "provider"),
        # The workspace's few placement seeds in the order they are listed (migration
        # 0025), not a scan of its mailboxes for them. The predicate is the text each
        # backend is sent for `placement_seed.is_(True)` (SEED_MAILBOXES): SQLite
        # uses a partial index only for a query whose own text implies it.
        Index(
            "ix_mailboxes_placement_seeds",
            "workspace_id",
            "email",
            "id",
            sqlite_where=text(SEED_MAILBOXES["sqlite"]),
            postgresql_where=text(SEED_MAILBOXES["postgresql"]),
        ),
    )

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    email: Mapped[str] = mapped_column(String(320))
    domain: Mapped[str] = mapped_column(String(253), index=True)
    pool_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("pools.id", ondelete="SET NULL"), index=True
    )
    display_name: Mapped[str] = mapped_column(String(200))
    provider: Mapped[str] = mapped_column(String(40), default="custom")
    status: Mapped[str] = mapped_column(String(20), default="inactive", index=True)
    connection_type: Mapped[str] = mapped_column(String(20), default="smtp")
    daily_send_limit: Mapped[int] = mapped_column(Integer, default=15)
    sending_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    signature: Mapped[str | None] = mapped_column(Text)
    # Receives placement tests' messages (placement/): listed by GET /v1/placement-tests/seeds.
    placement_seed: Mapped[bool] = mapped_column(Boolean, default=False)

    smtp_host: Mapped[str] = mapped_column(String(253))
    smtp_port: Mapped[int] = mapped_column(Integer)
    smtp_secure: Mapped[bool] = mapped_column(Boolean)
    smtp_username: Mapped[str] = mapped_column(String(320))
    smtp_password_enc: Mapped[str] = mapped_column(Text)
    imap_host: Mapped[str] = mapped_column(String(253))
    imap_port: Mapped[int] = mapped_column(Integer)
    imap_secure: Mapped[bool] = mapped_column(Boolean)
    imap_username: Mapped[str] = mapped_column(String(320))
    imap_password_enc: Mapped[str] = mapped_column(Text)

    # The latest DNS check of the mailbox's domain (MX, SPF, DKIM, DMARC).
    setup_status: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    last_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(String(1000))

    # Hosted mailboxes (mailserver/): the self-hosted domain whose mail server holds
    # this mailbox, the hash Dovecot verifies logins against (the keyring copies above
    # stay for exports), and what Postfix does with mail that arrives for it.
    hosted_domain_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("domains.id", ondelete="SET NULL"), index=True
    )
    first_name: Mapped[str | None] = mapped_column(String(100))
    last_name: Mapped[str | None] = mapped_column(String(100))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    quota_bytes: Mapped[int | None] = mapped_column(BigInteger)
    forward_to: Mapped[str | None] = mapped_column(String(320))
    forward_keep_copy: Mapped[bool] = mapped_column(Boolean, default=True)

    tags: Mapped[list[Tag]] = relationship(secondary=mailbox_tags, lazy="selectin")


class MailboxCount(Base):
    """How many mailboxes a workspace has in a status, kept by the database itself:
    triggers on `mailboxes` (migration 0017) add each insert, delete and change of
    status or workspace here, in the same transaction, so a read of these rows is
    as exact as a COUNT over the mailboxes, without reading 100,000 of them.

    The count of (workspace, status) is the sum of its rows over `slot`. SQLite has
    one writer at a time and uses slot 0 alone; on PostgreSQL a transaction adds
    to slot `txid % 64`, so transactions writing at once (a bulk job's chunks)
    rarely wait on one another's counter row.
    """

    __tablename__ = "mailbox_counts"

    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(20), primary_key=True)
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger)


class MailboxTagCount(Base):
    """How many mailboxes carry a tag, kept by the database itself as MailboxCount
    is: triggers on `mailbox_tags` (migration 0019) add each link inserted or
    deleted (a mailbox's cascade included) here, in the same transaction. The count
    of a tag is the sum of its rows over `slot` (slot 0 alone on SQLite, `txid % 64`
    on PostgreSQL); its rows go with the tag.
    """

    __tablename__ = "mailbox_tag_counts"

    tag_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("tags.id", ondelete="CASCADE"), primary_key=True
    )
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    n: Mapped[int] = mapped_column(BigInteger)


class ConnectionTest(Timestamps, Base):
    """One verification of a mailbox's SMTP and IMAP logins.

    No foreign key to the mailbox: a failed first test deletes the mailbox, and
    the test must still tell a poller why.
    """

    __tablename__ = "connection_tests"
    __table_args__ = (
        # A workspace's pending tests (the status counts' `pending_tests`) counted
        # from this index alone; it also serves look-ups by workspace.
        Index("ix_connection_tests_workspace_status", "workspace_id", "status"),
        # The tests the sweeper re-enqueues (pending, not a bulk job's), oldest first
        # (migration 0023): it reads only those, not every pending test of every
        # running bulk job, once a minute.
        Index(
            "ix_connection_tests_unqueued",
            "created_at",
            sqlite_where=text(UNQUEUED_TESTS),
            postgresql_where=text(UNQUEUED_TESTS),
        ),
    )

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    mailbox_id: Mapped[str] = mapped_column(String(24), index=True)
    email: Mapped[str] = mapped_column(String(320))
    # "initial": a failure deletes the mailbox; "retest": a failure marks it "error".
    kind: Mapped[str] = mapped_column(String(10), default="initial")
    # Set when a bulk job verifies this test itself (in chunks); the single-test
    # sweeper leaves such tests to their job.
    job_id: Mapped[str | None] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    smtp_result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    imap_result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(String(1000))
    mailbox_deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
