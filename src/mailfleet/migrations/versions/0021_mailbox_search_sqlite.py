"""mailbox search trigrams on SQLite: `search` reads an FTS5 index, not every mailbox

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 23:30:00.000000

SQLite's counterpart of migration 0018's pg_trgm indexes: `mailbox_search`, an FTS5
table with the trigram tokenizer over the mailboxes' `email` and `display_name`
(external content: it holds the index, the text stays in `mailboxes`; its rowids
are the mailboxes' rowids). Triggers on `mailboxes` keep it in step with every
insert, delete and change of either column, in the writing statement. A search of
three characters or more then reads the few mailboxes whose trigrams hold it as a
phrase, and applies its LIKE to them as before, so the answers are unchanged (the
index folds case beyond ASCII, the LIKE does not: the index only narrows).

What it costs: about 50 us more CPU per mailbox written (a 10,000-row bulk import:
about half a second). Nothing on PostgreSQL.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ADD = (
    "INSERT INTO mailbox_search (rowid, email, display_name)"
    " VALUES (NEW.rowid, NEW.email, NEW.display_name);"
)
_REMOVE = (
    "INSERT INTO mailbox_search (mailbox_search, rowid, email, display_name)"
    " VALUES ('delete', OLD.rowid, OLD.email, OLD.display_name);"
)

TRIGGERS = {
    "mailbox_search_insert": f"AFTER INSERT ON mailboxes BEGIN {_ADD} END",
    "mailbox_search_delete": f"AFTER DELETE ON mailboxes BEGIN {_REMOVE} END",
    "mailbox_search_update": "AFTER UPDATE OF email, display_name ON mailboxes"
    f" BEGIN {_REMOVE} {_ADD} END",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute(
        "CREATE VIRTUAL TABLE mailbox_search USING fts5(email, display_name,"
        " content='mailboxes', content_rowid='rowid', tokenize='trigram')"
    )
    for name, body in TRIGGERS.items():
        op.execute(f"CREATE TRIGGER {name} {body}")
    # The mailboxes already there, indexed from the content table.
    op.execute("INSERT INTO mailbox_search (mailbox_search) VALUES ('rebuild')")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER {name}")
    op.execute("DROP TABLE mailbox_search")
