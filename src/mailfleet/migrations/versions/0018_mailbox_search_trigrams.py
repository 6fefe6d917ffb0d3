"""mailbox search trigrams on PostgreSQL: `search` reads a GIN index, not every mailbox

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-30 11:25:00.000000

`search` is a substring match, `email LIKE '%x%' OR lower(display_name) LIKE '%x%'`
(repository.MailboxFilters). pg_trgm's GIN operator class answers exactly those
LIKEs from an index (PostgreSQL rechecks each candidate row against the LIKE itself,
so what matches is unchanged); without it a search scanned the workspace's 100,000
mailboxes. The indexes are on exactly the expressions the query compares.

pg_trgm ships with PostgreSQL (contrib) and is a trusted extension, so a database
owner may create it. Where it cannot be created, the migration leaves the indexes out
and `search` keeps scanning: slower, the same answers. Nothing on SQLite: an FTS5
trigram table would have to be kept in step by triggers on every mailbox write (bulk
imports insert 10,000 at once), and its case folding is not LIKE's; see README "A
large fleet".
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {
    "ix_mailboxes_email_trgm": "email gin_trgm_ops",
    "ix_mailboxes_display_name_trgm": "lower(display_name) gin_trgm_ops",
}


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    try:
        with bind.begin_nested():
            bind.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except DBAPIError:  # no pg_trgm here, or no right to create it
        return
    for name, expression in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON mailboxes USING gin ({expression})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
