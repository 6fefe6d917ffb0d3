"""mailbox counts kept by triggers: a 100,000-mailbox workspace's totals without a COUNT

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30 11:00:00.000000

`mailbox_counts` holds how many mailboxes each workspace has in each status; the
triggers below add every insert, delete and change of status or workspace of a
mailbox to it, inside the statement's own transaction, so it is exact whoever
writes (the API, a bulk job, raw SQL). The listing's `total` and the status counts
read it instead of counting the mailboxes.

On SQLite, row triggers add to slot 0 (one writer at a time: nothing to spread).
On PostgreSQL, statement triggers read the statement's transition tables and add
one delta per (workspace, status) to slot `txid_current() % 64`: a bulk insert of
10,000 mailboxes is one upsert per status, not 10,000, and two transactions that
write at once share a counter row (the second waiting for the first's commit) only
when their transaction ids agree modulo 64.

A mailbox deleted because its workspace is (ON DELETE CASCADE) is not counted:
the workspace's counter rows go with it, by their own cascade.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SLOTS = 64

_SQLITE_ADD = """
    INSERT INTO mailbox_counts (workspace_id, status, slot, n)
    SELECT {row}.workspace_id, {row}.status, 0, {sign}1
    WHERE EXISTS (SELECT 1 FROM workspaces WHERE workspaces.id = {row}.workspace_id)
    ON CONFLICT (workspace_id, status, slot) DO UPDATE SET n = n {sign} 1;
"""

SQLITE = [
    "CREATE TRIGGER mailbox_counts_insert AFTER INSERT ON mailboxes BEGIN"
    + _SQLITE_ADD.format(row="NEW", sign="+")
    + "END",
    "CREATE TRIGGER mailbox_counts_delete AFTER DELETE ON mailboxes BEGIN"
    + _SQLITE_ADD.format(row="OLD", sign="-")
    + "END",
    "CREATE TRIGGER mailbox_counts_update AFTER UPDATE OF status, workspace_id ON mailboxes"
    " WHEN OLD.status IS NOT NEW.status OR OLD.workspace_id IS NOT NEW.workspace_id BEGIN"
    + _SQLITE_ADD.format(row="OLD", sign="-")
    + _SQLITE_ADD.format(row="NEW", sign="+")
    + "END",
]

# {changes}: a query of (workspace_id, status, n) over the transition tables. The
# deltas are applied in key order, so two statements never lock counter rows in
# opposite orders; one that changes no count (most UPDATEs) writes nothing.
_POSTGRESQL_FUNCTION = """
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mailbox_counts (workspace_id, status, slot, n)
    SELECT changes.workspace_id, changes.status, txid_current() % {slots}, sum(changes.n)
    FROM ({changes}) AS changes
    WHERE EXISTS (SELECT 1 FROM workspaces WHERE workspaces.id = changes.workspace_id)
    GROUP BY changes.workspace_id, changes.status
    HAVING sum(changes.n) <> 0
    ORDER BY changes.workspace_id, changes.status
    ON CONFLICT (workspace_id, status, slot) DO UPDATE SET n = mailbox_counts.n + excluded.n;
    RETURN NULL;
END
$$
"""

_POSTGRESQL_TRIGGERS = {
    "insert": ("NEW TABLE AS added", "SELECT workspace_id, status, 1 AS n FROM added"),
    "delete": ("OLD TABLE AS removed", "SELECT workspace_id, status, -1 AS n FROM removed"),
    "update": (
        "OLD TABLE AS removed NEW TABLE AS added",
        "SELECT workspace_id, status, 1 AS n FROM added"
        " UNION ALL SELECT workspace_id, status, -1 FROM removed",
    ),
}

POSTGRESQL = [
    statement
    for event, (tables, changes) in _POSTGRESQL_TRIGGERS.items()
    for statement in (
        _POSTGRESQL_FUNCTION.format(name=f"mailbox_counts_{event}", slots=SLOTS, changes=changes),
        f"CREATE TRIGGER mailbox_counts_{event} AFTER {event.upper()} ON mailboxes"
        f" REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION mailbox_counts_{event}()",
    )
]


def upgrade() -> None:
    op.create_table(
        "mailbox_counts",
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_mailbox_counts_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("workspace_id", "status", "slot", name=op.f("pk_mailbox_counts")),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE if sqlite else POSTGRESQL:
        op.execute(statement)
    # The mailboxes already there, counted once. The triggers exist by now and, on
    # PostgreSQL, CREATE TRIGGER holds off writers to mailboxes until this
    # transaction commits (SQLite has one writer at a time): none is missed or
    # counted twice.
    op.execute(
        "INSERT INTO mailbox_counts (workspace_id, status, slot, n)"
        " SELECT workspace_id, status, 0, count(*) FROM mailboxes GROUP BY workspace_id, status"
    )
    op.create_index(
        "ix_connection_tests_workspace_status", "connection_tests", ["workspace_id", "status"]
    )
    # Its column leads ix_connection_tests_workspace_status.
    op.drop_index("ix_connection_tests_workspace_id", table_name="connection_tests")


def downgrade() -> None:
    op.create_index("ix_connection_tests_workspace_id", "connection_tests", ["workspace_id"])
    op.drop_index("ix_connection_tests_workspace_status", table_name="connection_tests")
    sqlite = op.get_bind().dialect.name == "sqlite"
    for event in _POSTGRESQL_TRIGGERS:
        if sqlite:
            op.execute(f"DROP TRIGGER mailbox_counts_{event}")
        else:
            op.execute(f"DROP TRIGGER mailbox_counts_{event} ON mailboxes")
            op.execute(f"DROP FUNCTION mailbox_counts_{event}()")
    op.drop_table("mailbox_counts")
