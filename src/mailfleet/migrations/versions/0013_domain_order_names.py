"""one order at a time buys a name (a partial unique index)

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 05:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("domain_order_items", schema=None) as batch_op:
        batch_op.create_index(
            "uq_domain_order_items_name_not_failed",
            ["name"],
            unique=True,
            sqlite_where=sa.text("status != 'failed'"),
            postgresql_where=sa.text("status != 'failed'"),
        )


def downgrade() -> None:
    with op.batch_alter_table("domain_order_items", schema=None) as batch_op:
        batch_op.drop_index("uq_domain_order_items_name_not_failed")
