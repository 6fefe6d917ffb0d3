"""Users and API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String
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
