"""Exports: sending-platform accounts, connect-inbox records, export histories and
the result of each inbox in an export."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailfleet.db import Base
from mailfleet.models.common import Timestamps, UTCDateTime, id_column


class ExportStatus(StrEnum):
    """An export, as LiteMail's API spells it."""

    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"


EXPORT_STATUSES = tuple(ExportStatus)
# How an export came about: LiteMail's connect-inbox, a push of selected mailboxes,
# a CSV download, or a record of an export done outside Mailfleet.
EXPORT_SOURCES = ("connect-inbox", "api", "csv", "external")


class ExportItemStatus(StrEnum):
    """One inbox of an export."""

    PENDING = "pending"
    CONNECTED = "connected"
    FAILED = "failed"


ITEM_STATUSES = tuple(ExportItemStatus)


class PlatformAccount(Timestamps, Base):
    """A workspace's account on a sending platform; its credentials are keyring ciphertext."""

    __tablename__ = "platform_accounts"

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = mapped_column(String(32))
    name: Mapped[str] = mapped_column(String(200), default="")
    # The platform login (connect-inbox's platform_email), stored lowercase.
    login_email: Mapped[str | None] = mapped_column(String(320))
    login_password_enc: Mapped[str | None] = mapped_column(Text)
    api_key_enc: Mapped[str | None] = mapped_column(Text)
    # None: the platform's public API.
    base_url: Mapped[str | None] = mapped_column(String(2048))
    # "valid", "invalid", "unreachable" or "unchecked" (no key, or nothing to ask).
    validation_status: Mapped[str] = mapped_column(String(20), default="unchecked")
    validation_message: Mapped[str | None] = mapped_column(String(500))
    validated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ConnectInboxRecord(Timestamps, Base):
    """LiteMail's connect_inbox record: one per platform, workspace and client (the
    platform login), upserted by every connect-inbox request."""

    __tablename__ = "connect_inbox_records"
    __table_args__ = (UniqueConstraint("workspace_id", "platform", "platform_email"),)

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = mapped_column(String(32))
    platform_email: Mapped[str] = mapped_column(String(320))
    # The workspace on the platform that receives the inboxes (the seed's workspaceName).
    workspace_name: Mapped[str | None] = mapped_column(String(200))
    platform_account_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("platform_accounts.id", ondelete="SET NULL"), index=True
    )
    # [{"email": ...}] of the latest request, as the seed's record shows them.
    selected_mailboxes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    user_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("users.id", ondelete="SET NULL"), index=True
    )


class ExportHistory(Timestamps, Base):
    __tablename__ = "export_histories"
    __table_args__ = (
        UniqueConstraint("workspace_id", "job_id"),
        UniqueConstraint("workspace_id", "idempotency_key"),
    )

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    # Short, for people (the seed's "EXB3C4"); unique in the workspace.
    job_id: Mapped[str] = mapped_column(String(16))
    platform: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), index=True)
    total: Mapped[int] = mapped_column(Integer)
    connected_count: Mapped[int] = mapped_column(Integer, default=0)
    failed_count: Mapped[int] = mapped_column(Integer, default=0)
    platform_account_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("platform_accounts.id", ondelete="SET NULL"), index=True
    )
    connect_inbox_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("connect_inbox_records.id", ondelete="SET NULL"), index=True
    )
    workspace_name: Mapped[str | None] = mapped_column(String(200))
    # A CSV layout ("mailfleet", "instantly", "smartlead") for CSV exports.
    layout: Mapped[str | None] = mapped_column(String(20))
    credentials_included: Mapped[bool] = mapped_column(Boolean, default=False)
    # Why the whole export failed, when one reason explains it (no API key, ...).
    error: Mapped[str | None] = mapped_column(String(1000))
    note: Mapped[str | None] = mapped_column(String(1000))
    created_by: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("users.id", ondelete="SET NULL")
    )
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ExportItem(Timestamps, Base):
    """One inbox of an export and its result on the platform.

    No foreign key to the mailbox: a mailbox may be deleted while its export
    result must stay readable.
    """

    __tablename__ = "export_items"
    __table_args__ = (UniqueConstraint("history_id", "position"),)

    id: Mapped[str] = id_column()
    history_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("export_histories.id", ondelete="CASCADE")
    )
    position: Mapped[int] = mapped_column(Integer)
    email: Mapped[str] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(200))
    mailbox_id: Mapped[str | None] = mapped_column(String(24), index=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    message: Mapped[str | None] = mapped_column(String(1000))
    remote_id: Mapped[str | None] = mapped_column(String(200))
    # The platform's id for the batch this inbox went in (Saleshandy's requestId).
    request_id: Mapped[str | None] = mapped_column(String(200))
    # Connect-inbox inboxes only: the login the request gave (keyring ciphertext of a
    # JSON object), kept until the inbox's result is known and then erased.
    connection_enc: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
