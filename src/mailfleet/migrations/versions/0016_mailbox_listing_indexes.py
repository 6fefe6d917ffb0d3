"""mailbox listing indexes: a page of a 100,000-mailbox workspace is an index range

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30 08:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


LISTING = {
    "ix_mailboxes_workspace_created": ["workspace_id", "created_at", "id"],
    "ix_mailboxes_workspace_status": ["workspace_id", "status", "created_at", "id"],
    "ix_mailboxes_workspace_domain": ["workspace_id", "domain", "created_at", "id"],
    "ix_mailboxes_workspace_pool": ["workspace_id", "pool_id", "created_at", "id"],
    "ix_mailboxes_workspace_search": ["workspace_id", "email", "display_name"],
}


def upgrade() -> None:
    for name, columns in LISTING.items():
        op.create_index(name, "mailboxes", columns)
    # Its column leads ix_mailboxes_workspace_created, which serves the same look-ups.
    op.drop_index("ix_mailboxes_workspace_id", table_name="mailboxes")
    # (tag_id, mailbox_id) counts a tag's mailboxes without reading the table.
    op.create_index("ix_mailbox_tags_tag_mailbox", "mailbox_tags", ["tag_id", "mailbox_id"])
    op.drop_index("ix_mailbox_tags_tag_id", table_name="mailbox_tags")


def downgrade() -> None:
    op.create_index("ix_mailbox_tags_tag_id", "mailbox_tags", ["tag_id"])
    op.drop_index("ix_mailbox_tags_tag_mailbox", table_name="mailbox_tags")
    op.create_index("ix_mailboxes_workspace_id", "mailboxes", ["workspace_id"])
    for name in reversed(LISTING):
        op.drop_index(name, table_name="mailboxes")
