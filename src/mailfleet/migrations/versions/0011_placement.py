"""placement: tests, results, mailboxes.placement_seed

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 04:44:59.677200
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailfleet.models.common

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "placement_tests",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=True),
        sa.Column("delivery_mode", sa.String(length=20), nullable=False),
        sa.Column("timeout_minutes", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("sent_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True),
        sa.Column(
            "completed_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("canceled_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_placement_tests_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_placement_tests")),
        sa.UniqueConstraint("code", name=op.f("uq_placement_tests_code")),
    )
    with op.batch_alter_table("placement_tests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_placement_tests_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_placement_tests_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "placement_results",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("test_id", sa.String(length=24), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("sender_id", sa.String(length=24), nullable=False),
        sa.Column("sender_email", sa.String(length=320), nullable=False),
        sa.Column("seed_id", sa.String(length=24), nullable=False),
        sa.Column("seed_email", sa.String(length=320), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("tracking_code", sa.String(length=60), nullable=False),
        sa.Column("message_id", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("folder", sa.String(length=20), nullable=True),
        sa.Column("folder_name", sa.String(length=200), nullable=True),
        sa.Column("found_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True),
        sa.Column("arrived_after_seconds", sa.Float(), nullable=True),
        sa.Column("auth_spf", sa.String(length=20), nullable=True),
        sa.Column("auth_dkim", sa.String(length=20), nullable=True),
        sa.Column("auth_dmarc", sa.String(length=20), nullable=True),
        sa.Column("created_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["test_id"],
            ["placement_tests.id"],
            name=op.f("fk_placement_results_test_id_placement_tests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_placement_results")),
        sa.UniqueConstraint(
            "test_id",
            "sender_id",
            "seed_id",
            name=op.f("uq_placement_results_test_id_sender_id_seed_id"),
        ),
        sa.UniqueConstraint("tracking_code", name=op.f("uq_placement_results_tracking_code")),
    )
    with op.batch_alter_table("placement_results", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_placement_results_seed_id"), ["seed_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_placement_results_sender_id"), ["sender_id"], unique=False
        )
        batch_op.create_index(
            "ix_placement_results_test_id_seed_id", ["test_id", "seed_id"], unique=False
        )

    # A plain ADD COLUMN: a batch (copy-and-rename) on SQLite would break the views
    # over mailboxes that Postfix and Dovecot read (0009).
    op.add_column(
        "mailboxes",
        sa.Column("placement_seed", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    op.drop_column("mailboxes", "placement_seed")

    with op.batch_alter_table("placement_results", schema=None) as batch_op:
        batch_op.drop_index("ix_placement_results_test_id_seed_id")
        batch_op.drop_index(batch_op.f("ix_placement_results_sender_id"))
        batch_op.drop_index(batch_op.f("ix_placement_results_seed_id"))

    op.drop_table("placement_results")
    with op.batch_alter_table("placement_tests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_placement_tests_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_placement_tests_status"))

    op.drop_table("placement_tests")
