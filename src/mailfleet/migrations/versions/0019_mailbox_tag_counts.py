"""per-tag mailbox counts kept by triggers: a tag filter's total without a COUNT

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-30 14:30:00.000000

`mailbox_tag_counts` holds how many mailboxes carry each tag, in the design of
`mailbox_counts` (migration 0017): triggers on `mailbox_tags` add every link
inserted or deleted, and every change of a link's tag, inside the statement's own
transaction, so the count is exact whoever writes (the API, a bulk job, raw SQL,
a mailbox's cascade). A listing filtered by one tag reads its `total` here instead
of counting the tag's links (about 7,500 index entries per tag in a workspace of
100,000 mailboxes).

On SQLite, row triggers add to slot 0. On PostgreSQL, statement triggers read the
statement's transition tables and add one delta per tag to slot
`txid_current() % 64`. The ORM never updates a link (a mailbox's tags are changed
by deleting and inserting links), but raw SQL could: a change of `tag_id` moves the
link's count; a change of `mailbox_id` alone changes no tag's count.

A link deleted because its tag is (ON DELETE CASCADE) is not counted: the tag's
counter rows go with it, by their own cascade. The same holds when a workspace
goes, taking its tags and its mailboxes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SLOTS = 64

_SQLITE_ADD = """
    INSERT INTO mailbox_tag_counts (tag_id, slot, n)
    SELECT {row}.tag_id, 0, {sign}1
    WHERE EXISTS (SELECT 1 FROM tags WHERE tags.id = {row}.tag_id)
    ON CONFLICT (tag_id, slot) DO UPDATE SET n = n {sign} 1;
"""

SQLITE = [
    "CREATE TRIGGER mailbox_tag_counts_insert AFTER INSERT ON mailbox_tags BEGIN"
    + _SQLITE_ADD.format(row="NEW", sign="+")
    + "END",
    "CREATE TRIGGER mailbox_tag_counts_delete AFTER DELETE ON mailbox_tags BEGIN"
    + _SQLITE_ADD.format(row="OLD", sign="-")
    + "END",
    "CREATE TRIGGER mailbox_tag_counts_update AFTER UPDATE OF tag_id ON mailbox_tags"
    " WHEN OLD.tag_id IS NOT NEW.tag_id BEGIN"
    + _SQLITE_ADD.format(row="OLD", sign="-")
    + _SQLITE_ADD.format(row="NEW", sign="+")
    + "END",
]

# {changes}: a query of (tag_id, n) over the transition tables. The deltas are
# applied in key order, so two statements never lock counter rows in opposite
# orders; one that changes no count writes nothing. PostgreSQL allows no column
# list on a trigger with transition tables: the update trigger sees every UPDATE.
_POSTGRESQL_FUNCTION = """
CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO mailbox_tag_counts (tag_id, slot, n)
    SELECT changes.tag_id, txid_current() % {slots}, sum(changes.n)
    FROM ({changes}) AS changes
    WHERE EXISTS (SELECT 1 FROM tags WHERE tags.id = changes.tag_id)
    GROUP BY changes.tag_id
    HAVING sum(changes.n) <> 0
    ORDER BY changes.tag_id
    ON CONFLICT (tag_id, slot) DO UPDATE SET n = mailbox_tag_counts.n + excluded.n;
    RETURN NULL;
END
$$
"""

_POSTGRESQL_TRIGGERS = {
    "insert": ("NEW TABLE AS added", "SELECT tag_id, 1 AS n FROM added"),
    "delete": ("OLD TABLE AS removed", "SELECT tag_id, -1 AS n FROM removed"),
    "update": (
        "OLD TABLE AS removed NEW TABLE AS added",
        "SELECT tag_id, 1 AS n FROM added UNION ALL SELECT tag_id, -1 FROM removed",
    ),
}

POSTGRESQL = [
    statement
    for event, (tables, changes) in _POSTGRESQL_TRIGGERS.items()
    for statement in (
        _POSTGRESQL_FUNCTION.format(
            name=f"mailbox_tag_counts_{event}", slots=SLOTS, changes=changes
        ),
        f"CREATE TRIGGER mailbox_tag_counts_{event} AFTER {event.upper()} ON mailbox_tags"
        f" REFERENCING {tables} FOR EACH STATEMENT EXECUTE FUNCTION mailbox_tag_counts_{event}()",
    )
]


def upgrade() -> None:
    op.create_table(
        "mailbox_tag_counts",
        sa.Column("tag_id", sa.String(length=24), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("n", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tag_id"],
            ["tags.id"],
            name=op.f("fk_mailbox_tag_counts_tag_id_tags"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tag_id", "slot", name=op.f("pk_mailbox_tag_counts")),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE if sqlite else POSTGRESQL:
        op.execute(statement)
    # The links already there, counted once. The triggers exist by now and, on
    # PostgreSQL, CREATE TRIGGER holds off writers to mailbox_tags until this
    # transaction commits (SQLite has one writer at a time): none is missed or
    # counted twice.
    op.execute(
        "INSERT INTO mailbox_tag_counts (tag_id, slot, n)"
        " SELECT tag_id, 0, count(*) FROM mailbox_tags GROUP BY tag_id"
    )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for event in _POSTGRESQL_TRIGGERS:
        if sqlite:
            op.execute(f"DROP TRIGGER mailbox_tag_counts_{event}")
        else:
            op.execute(f"DROP TRIGGER mailbox_tag_counts_{event} ON mailbox_tags")
            op.execute(f"DROP FUNCTION mailbox_tag_counts_{event}()")
    op.drop_table("mailbox_tag_counts")
