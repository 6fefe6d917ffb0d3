"""domain purchase orders and their names

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 05:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailfleet.models.common

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "domain_orders",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("registrar", sa.String(length=20), nullable=False),
        sa.Column("years", sa.Integer(), nullable=False),
        sa.Column("dns_provider", sa.String(length=20), nullable=False),
        sa.Column("mail_provider", sa.String(length=20), nullable=False),
        sa.Column("auto_renew", sa.Boolean(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("charged", sa.Boolean(), nullable=False),
        sa.Column("payment_id", sa.String(length=24), nullable=True),
        sa.Column("contact", sa.JSON(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("created_by_user_id", sa.String(length=24), nullable=True),
        sa.Column(
            "completed_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True
        ),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_domain_orders_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_orders")),
        sa.UniqueConstraint(
            "workspace_id",
            "idempotency_key",
            name=op.f("uq_domain_orders_workspace_id_idempotency_key"),
        ),
    )
    with op.batch_alter_table("domain_orders", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_domain_orders_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_domain_orders_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "domain_order_items",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("order_id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("unicode_name", sa.String(length=253), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("premium", sa.Boolean(), nullable=False),
        sa.Column("cost", sa.BigInteger(), nullable=False),
        sa.Column("price", sa.BigInteger(), nullable=False),
        sa.Column("register_attempts", sa.Integer(), nullable=False),
        sa.Column("registrar_order_ref", sa.String(length=100), nullable=True),
        sa.Column(
            "registered_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("domain_id", sa.String(length=24), nullable=True),
        sa.Column(
            "connected_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("new_price", sa.BigInteger(), nullable=True),
        sa.Column("refunded", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["domain_orders.id"],
            name=op.f("fk_domain_order_items_order_id_domain_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_order_items")),
        sa.UniqueConstraint("order_id", "name", name=op.f("uq_domain_order_items_order_id_name")),
    )
    with op.batch_alter_table("domain_order_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_domain_order_items_name"), ["name"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_domain_order_items_order_id"), ["order_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_domain_order_items_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_domain_order_items_workspace_id"), ["workspace_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("domain_order_items")
    op.drop_table("domain_orders")
