"""bulk connect jobs and their items

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailfleet.models.common

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bulk_jobs",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("created_by", sa.String(length=24), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("connected_count", sa.Integer(), nullable=False),
        sa.Column("failed_count", sa.Integer(), nullable=False),
        sa.Column("duplicate_count", sa.Integer(), nullable=False),
        sa.Column("invalid_count", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("started_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_bulk_jobs_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_jobs")),
        sa.UniqueConstraint(
            "workspace_id",
            "idempotency_key",
            name=op.f("uq_bulk_jobs_workspace_id_idempotency_key"),
        ),
    )
    with op.batch_alter_table("bulk_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bulk_jobs_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_bulk_jobs_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "bulk_job_items",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("job_id", sa.String(length=24), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("message", sa.String(length=1000), nullable=True),
        sa.Column("mailbox_id", sa.String(length=24), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("finished_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["bulk_jobs.id"],
            name=op.f("fk_bulk_job_items_job_id_bulk_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_job_items")),
        sa.UniqueConstraint("job_id", "row", name=op.f("uq_bulk_job_items_job_id_row")),
    )
    with op.batch_alter_table("bulk_job_items", schema=None) as batch_op:
        batch_op.create_index(
            "ix_bulk_job_items_job_id_outcome_row", ["job_id", "outcome", "row"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("bulk_job_items", schema=None) as batch_op:
        batch_op.drop_index("ix_bulk_job_items_job_id_outcome_row")
    op.drop_table("bulk_job_items")
    with op.batch_alter_table("bulk_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bulk_jobs_workspace_id"))
        batch_op.drop_index(batch_op.f("ix_bulk_jobs_status"))
    op.drop_table("bulk_jobs")
