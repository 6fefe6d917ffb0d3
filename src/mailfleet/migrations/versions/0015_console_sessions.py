"""console sessions: sign-out and expiry end a console session on the server

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 08:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailfleet.models.common

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=True),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_seen_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("expires_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_console_sessions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_sessions")),
    )
    op.create_index(op.f("ix_console_sessions_user_id"), "console_sessions", ["user_id"])
    op.create_index(op.f("ix_console_sessions_expires_at"), "console_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_console_sessions_expires_at"), table_name="console_sessions")
    op.drop_index(op.f("ix_console_sessions_user_id"), table_name="console_sessions")
    op.drop_table("console_sessions")
