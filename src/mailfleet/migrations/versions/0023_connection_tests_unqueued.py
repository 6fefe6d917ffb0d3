"""connection_tests: a partial index of the tests the sweeper re-enqueues

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-01 05:10:00.000000

Once a minute `requeue_pending_tests` looks for pending tests that no bulk job owns
(`job_id IS NULL`), oldest first. It read them through `ix_connection_tests_status`,
that is every pending test, a running bulk job's included, each fetched to test its
`job_id`, then sorted: 21 to 38 ms of SQLite's time a minute with 15,000 of a bulk
job's tests pending, to find none. `ix_connection_tests_unqueued` holds only the tests
it wants, in its order. The status index served nothing else (a workspace's pending
tests are counted from `ix_connection_tests_workspace_status`), so it goes, and every
test written no longer updates it.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNQUEUED_TESTS = "status = 'pending' AND job_id IS NULL"


def upgrade() -> None:
    op.drop_index("ix_connection_tests_status", table_name="connection_tests")
    op.create_index(
        "ix_connection_tests_unqueued",
        "connection_tests",
        ["created_at"],
        sqlite_where=sa.text(UNQUEUED_TESTS),
        postgresql_where=sa.text(UNQUEUED_TESTS),
    )


def downgrade() -> None:
    op.drop_index("ix_connection_tests_unqueued", table_name="connection_tests")
    op.create_index("ix_connection_tests_status", "connection_tests", ["status"])
