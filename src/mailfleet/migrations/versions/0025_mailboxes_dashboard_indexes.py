"""mailboxes: the dashboard's count by provider and the placement seeds from indexes

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-01 08:45:00.000000

On a workspace of 100,000 mailboxes (SQLite), `GET /v1/dashboard/overview` took 366 ms
and `GET /v1/placement-tests/seeds` 328 ms. The overview's count by provider read
every mailbox row; `ix_mailboxes_workspace_provider` answers it from the index alone
(160 ms to 9.5 ms). The seeds, a handful, were found by scanning the workspace for
`placement_seed` twice (the page and its count); `ix_mailboxes_placement_seeds` holds
just them, in the order they are listed. Its predicate is the text each backend is
sent for `placement_seed IS true`, since SQLite uses a partial index only for a
query whose own text implies it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_mailboxes_workspace_provider", "mailboxes", ["workspace_id", "provider"])
    op.create_index(
        "ix_mailboxes_placement_seeds",
        "mailboxes",
        ["workspace_id", "email", "id"],
        sqlite_where=sa.text("placement_seed IS 1"),
        postgresql_where=sa.text("placement_seed IS true"),
    )


def downgrade() -> None:
    op.drop_index("ix_mailboxes_placement_seeds", table_name="mailboxes")
    op.drop_index("ix_mailboxes_workspace_provider", table_name="mailboxes")
