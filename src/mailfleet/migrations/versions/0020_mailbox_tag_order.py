"""tag links carry their mailbox's creation time: a tag's page is an index range

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 23:10:00.000000

`mailbox_tags.mailbox_created_at` is a copy of the linked mailbox's `created_at`,
kept by triggers, and `ix_mailbox_tags_tag_created` orders a tag's links the way a
list page orders mailboxes (newest first, the id breaking ties). A page filtered
by one tag then reads that index range and its 101 mailboxes by key, instead of
walking the workspace's newest mailboxes and probing each one's links (1,500
probes for a tag on 6,667 of 100,000 mailboxes, 7 to 10 ms on PostgreSQL).

The copy is written by the database, whoever writes: a link inserted (or moved to
another mailbox) takes its mailbox's time, and a mailbox whose `created_at`
changes passes it to its links. On PostgreSQL a BEFORE row trigger sets the new
link's value; SQLite's triggers cannot change the row being written, so an AFTER
trigger updates it by rowid in the same statement.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailfleet.models.common

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_LINK_TIME = """
    UPDATE mailbox_tags
    SET mailbox_created_at = (SELECT created_at FROM mailboxes WHERE id = NEW.mailbox_id)
    WHERE rowid = NEW.rowid;
"""

SQLITE = {
    "mailbox_tags_created_insert": "CREATE TRIGGER mailbox_tags_created_insert"
    " AFTER INSERT ON mailbox_tags BEGIN" + _SQLITE_LINK_TIME + "END",
    "mailbox_tags_created_move": "CREATE TRIGGER mailbox_tags_created_move"
    " AFTER UPDATE OF mailbox_id ON mailbox_tags BEGIN" + _SQLITE_LINK_TIME + "END",
    "mailboxes_created_links": "CREATE TRIGGER mailboxes_created_links"
    " AFTER UPDATE OF created_at ON mailboxes"
    " WHEN OLD.created_at IS NOT NEW.created_at BEGIN"
    " UPDATE mailbox_tags SET mailbox_created_at = NEW.created_at"
    " WHERE mailbox_id = NEW.id; END",
}

POSTGRESQL = [
    """
CREATE FUNCTION mailbox_tags_created() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.mailbox_created_at := (SELECT created_at FROM mailboxes WHERE id = NEW.mailbox_id);
    RETURN NEW;
END
$$
""",
    "CREATE TRIGGER mailbox_tags_created BEFORE INSERT OR UPDATE OF mailbox_id"
    " ON mailbox_tags FOR EACH ROW EXECUTE FUNCTION mailbox_tags_created()",
    """
CREATE FUNCTION mailboxes_created_links() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE mailbox_tags SET mailbox_created_at = NEW.created_at WHERE mailbox_id = NEW.id;
    RETURN NULL;
END
$$
""",
    "CREATE TRIGGER mailboxes_created_links AFTER UPDATE OF created_at ON mailboxes"
    " FOR EACH ROW WHEN (OLD.created_at IS DISTINCT FROM NEW.created_at)"
    " EXECUTE FUNCTION mailboxes_created_links()",
]


def upgrade() -> None:
    op.add_column(
        "mailbox_tags",
        sa.Column(
            "mailbox_created_at",
            mailfleet.models.common.UTCDateTime(timezone=True),
            nullable=True,
        ),
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE.values() if sqlite else POSTGRESQL:
        op.execute(statement)
    # The links already there. The triggers exist by now and, on PostgreSQL,
    # CREATE TRIGGER holds off writers to both tables until this transaction
    # commits (SQLite has one writer at a time): no link is left without its time.
    op.execute(
        "UPDATE mailbox_tags SET mailbox_created_at ="
        " (SELECT created_at FROM mailboxes WHERE mailboxes.id = mailbox_tags.mailbox_id)"
    )
    op.create_index(
        "ix_mailbox_tags_tag_created",
        "mailbox_tags",
        ["tag_id", "mailbox_created_at", "mailbox_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_mailbox_tags_tag_created", table_name="mailbox_tags")
    if op.get_bind().dialect.name == "sqlite":
        for name in SQLITE:
            op.execute(f"DROP TRIGGER {name}")
    else:
        op.execute("DROP TRIGGER mailboxes_created_links ON mailboxes")
        op.execute("DROP FUNCTION mailboxes_created_links()")
        op.execute("DROP TRIGGER mailbox_tags_created ON mailbox_tags")
        op.execute("DROP FUNCTION mailbox_tags_created()")
    op.drop_column("mailbox_tags", "mailbox_created_at")
