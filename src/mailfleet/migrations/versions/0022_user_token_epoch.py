"""users.token_epoch: a password change ends the login tokens issued before it

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-01 02:30:00.000000

A login token (`POST /v1/auth/login`) carries its user's `token_epoch` as the claim
`ep`; a token whose epoch is not the user's current one is refused. Changing the
password adds one, so a token stolen before the change dies with the old password,
as the console's sessions already did. Tokens issued before this migration carry no
`ep` and read as epoch 0, the column's start, so they stay valid until the first
password change.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "users", sa.Column("token_epoch", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("token_epoch")
