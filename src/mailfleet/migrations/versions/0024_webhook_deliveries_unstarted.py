"""webhook_deliveries: a partial index of the deliveries the sweeper re-enqueues

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-01 08:00:00.000000

Once a minute `requeue_pending_deliveries` looks for pending deliveries no workflow
has attempted (`attempt_count = 0`), oldest first. It read them through
`ix_webhook_deliveries_status`, that is every pending delivery, each fetched to test
its `attempt_count`, then sorted; a delivery waits between retries as pending, so an
endpoint that is down for a day gathers thousands that the sweeper read each minute
to find none. `ix_webhook_deliveries_unstarted` holds only the deliveries it wants,
in its order, as migration 0023 did for the single-test sweeper. The status index
served nothing else (an endpoint's deliveries are read through
`ix_webhook_deliveries_endpoint_id`), so it goes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNSTARTED_DELIVERIES = "status = 'pending' AND attempt_count = 0"


def upgrade() -> None:
    op.drop_index("ix_webhook_deliveries_status", table_name="webhook_deliveries")
    op.create_index(
        "ix_webhook_deliveries_unstarted",
        "webhook_deliveries",
        ["created_at"],
        sqlite_where=sa.text(UNSTARTED_DELIVERIES),
        postgresql_where=sa.text(UNSTARTED_DELIVERIES),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_unstarted", table_name="webhook_deliveries")
    op.create_index("ix_webhook_deliveries_status", "webhook_deliveries", ["status"])
