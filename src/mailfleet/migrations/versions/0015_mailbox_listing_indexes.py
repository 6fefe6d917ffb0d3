"""mailbox listing indexes: a page of a 100,000-mailbox workspace is an index range

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-30 08:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_mailboxes_workspace_created", "mailboxes", ["workspace_id", "created_at", "id"]
    )
    op.create_index(
        "ix_mailboxes_workspace_status", "mailboxes", ["workspace_id", "status", "created_at", "id"]
    )
    # Its columns lead the first index above, which serves the same look-ups.
    op.drop_index("ix_mailboxes_workspace_id", table_name="mailboxes")


def downgrade() -> None:
    op.create_index("ix_mailboxes_workspace_id", "mailboxes", ["workspace_id"])
    op.drop_index("ix_mailboxes_workspace_status", table_name="mailboxes")
    op.drop_index("ix_mailboxes_workspace_created", table_name="mailboxes")
