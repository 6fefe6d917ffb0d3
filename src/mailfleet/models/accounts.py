"""Users, API keys and console sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from mailfleet.db import Base
from mailfleet.models.common import Timestamps, UTCDateTime, id_column


class User(Timestamps, Base):
    __tablename__ = "users"

    id: Mapped[str] = id_column()
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    # No foreign key: users and workspaces reference each other, and the service
    # keeps this pointing at a workspace the user belongs to.
    default_workspace_id: Mapped[str | None] = mapped_column(String(24))
    # Login tokens carry it (claim "ep"); a password change adds one, which ends every
    # token issued before (migration 0022).
    token_epoch: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ApiKey(Timestamps, Base):
    """An API key. Only the SHA-256 digest of the secret is stored."""

    __tablename__ = "api_keys"

    id: Mapped[str] = id_column()
    name: Mapped[str] = mapped_column(String(200), default="")
    # "user" keys act for the user in any workspace; "workspace" keys in one only.
    scope: Mapped[str] = mapped_column(String(16))
    # The first characters of the key, shown in lists so people can tell keys apart.
    display_prefix: Mapped[str] = mapped_column(String(32))
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    workspace_id: Mapped[str | None] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ConsoleSession(Base):
    """A console sign-in. The browser's cookie holds a random token; only its SHA-256
    digest is stored (the primary key), so reading this table does not sign anyone in.
    Deleting the row ends the session whatever copies of the cookie exist."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # The workspace the console shows; no foreign key, like users.default_workspace_id:
    # the console falls back to another membership when it is gone.
    workspace_id: Mapped[str | None] = mapped_column(String(24))
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
