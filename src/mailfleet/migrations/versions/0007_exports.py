"""exports: platform accounts, connect-inbox records, export histories and items

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailfleet.models.common

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "platform_accounts",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("login_email", sa.String(length=320), nullable=True),
        sa.Column("login_password_enc", sa.Text(), nullable=True),
        sa.Column("api_key_enc", sa.Text(), nullable=True),
        sa.Column("base_url", sa.String(length=2048), nullable=True),
        sa.Column("validation_status", sa.String(length=20), nullable=False),
        sa.Column("validation_message", sa.String(length=500), nullable=True),
        sa.Column(
            "validated_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True
        ),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_platform_accounts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_platform_accounts")),
    )
    with op.batch_alter_table("platform_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_platform_accounts_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "connect_inbox_records",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("platform_email", sa.String(length=320), nullable=False),
        sa.Column("workspace_name", sa.String(length=200), nullable=True),
        sa.Column("platform_account_id", sa.String(length=24), nullable=True),
        sa.Column("selected_mailboxes", sa.JSON(), nullable=False),
        sa.Column("user_id", sa.String(length=24), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_connect_inbox_records_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["platform_account_id"],
            ["platform_accounts.id"],
            name=op.f("fk_connect_inbox_records_platform_account_id_platform_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_connect_inbox_records_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connect_inbox_records")),
        sa.UniqueConstraint(
            "workspace_id",
            "platform",
            "platform_email",
            name=op.f("uq_connect_inbox_records_workspace_id_platform_platform_email"),
        ),
    )
    with op.batch_alter_table("connect_inbox_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_connect_inbox_records_workspace_id"), ["workspace_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_connect_inbox_records_platform_account_id"),
            ["platform_account_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_connect_inbox_records_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "export_histories",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("job_id", sa.String(length=16), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("connected_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("platform_account_id", sa.String(length=24), nullable=True),
        sa.Column("connect_inbox_id", sa.String(length=24), nullable=True),
        sa.Column("workspace_name", sa.String(length=200), nullable=True),
        sa.Column("layout", sa.String(length=20), nullable=True),
        sa.Column("credentials_included", sa.Boolean(), nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("note", sa.String(length=1000), nullable=True),
        sa.Column("created_by", sa.String(length=24), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("finished_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_export_histories_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["platform_account_id"],
            ["platform_accounts.id"],
            name=op.f("fk_export_histories_platform_account_id_platform_accounts"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["connect_inbox_id"],
            ["connect_inbox_records.id"],
            name=op.f("fk_export_histories_connect_inbox_id_connect_inbox_records"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["users.id"],
            name=op.f("fk_export_histories_created_by_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_histories")),
        sa.UniqueConstraint(
            "workspace_id", "job_id", name=op.f("uq_export_histories_workspace_id_job_id")
        ),
        sa.UniqueConstraint(
            "workspace_id",
            "idempotency_key",
            name=op.f("uq_export_histories_workspace_id_idempotency_key"),
        ),
    )
    with op.batch_alter_table("export_histories", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_export_histories_workspace_id"), ["workspace_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_export_histories_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_export_histories_platform_account_id"),
            ["platform_account_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_export_histories_connect_inbox_id"), ["connect_inbox_id"], unique=False
        )

    op.create_table(
        "export_items",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("history_id", sa.String(length=24), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("mailbox_id", sa.String(length=24), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("message", sa.String(length=1000), nullable=True),
        sa.Column("remote_id", sa.String(length=200), nullable=True),
        sa.Column("request_id", sa.String(length=200), nullable=True),
        sa.Column("connection_enc", sa.Text(), nullable=True),
        sa.Column("finished_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["history_id"],
            ["export_histories.id"],
            name=op.f("fk_export_items_history_id_export_histories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_export_items")),
        sa.UniqueConstraint(
            "history_id", "position", name=op.f("uq_export_items_history_id_position")
        ),
    )
    with op.batch_alter_table("export_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_export_items_mailbox_id"), ["mailbox_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("export_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_items_mailbox_id"))
    op.drop_table("export_items")
    with op.batch_alter_table("export_histories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_export_histories_connect_inbox_id"))
        batch_op.drop_index(batch_op.f("ix_export_histories_platform_account_id"))
        batch_op.drop_index(batch_op.f("ix_export_histories_status"))
        batch_op.drop_index(batch_op.f("ix_export_histories_workspace_id"))
    op.drop_table("export_histories")
    with op.batch_alter_table("connect_inbox_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_connect_inbox_records_user_id"))
        batch_op.drop_index(batch_op.f("ix_connect_inbox_records_platform_account_id"))
        batch_op.drop_index(batch_op.f("ix_connect_inbox_records_workspace_id"))
    op.drop_table("connect_inbox_records")
    with op.batch_alter_table("platform_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_platform_accounts_workspace_id"))
    op.drop_table("platform_accounts")
