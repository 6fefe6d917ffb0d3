"""hosted mail: mailbox columns, catch-all, mail purges, the views Postfix and Dovecot read

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailfleet.models.common

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Postfix and Dovecot read only these views (mailserver/config.py writes their
# queries), so tables may change as long as the views keep their columns.
_HOSTED = (
    "FROM mailboxes m JOIN domains d ON d.id = m.hosted_domain_id "
    "WHERE d.mail_provider = 'self-hosted' AND m.password_hash IS NOT NULL"
)
VIEWS = {
    "mailserver_domains": (
        "SELECT d.name AS domain FROM domains d WHERE d.mail_provider = 'self-hosted'"
    ),
    "mailserver_mailboxes": (
        "SELECT m.email AS email, d.name AS domain, m.password_hash AS password, "
        "d.name || '/' || m.id AS maildir, COALESCE(m.quota_bytes, 0) AS quota_bytes " + _HOSTED
    ),
    # Every mailbox is an alias of itself (or of its forwarding), so a catch-all row
    # ("@domain") is reached only for addresses nobody owns: Postfix tries the full
    # address in its alias maps before "@domain", and alias maps win over mailbox maps.
    "mailserver_aliases": (
        "SELECT m.email AS address, CASE WHEN m.forward_to IS NULL THEN m.email "
        "WHEN m.forward_keep_copy THEN m.email || ',' || m.forward_to "
        "ELSE m.forward_to END AS goto "
        + _HOSTED
        + " UNION ALL SELECT '@' || d.name AS address, d.catch_all_destination AS goto "
        "FROM domains d WHERE d.mail_provider = 'self-hosted' "
        "AND d.catch_all_destination IS NOT NULL"
    ),
}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("mailboxes", sa.Column("hosted_domain_id", sa.String(length=24), nullable=True))
    for name, column_type in (
        ("first_name", sa.String(length=100)),
        ("last_name", sa.String(length=100)),
        ("password_hash", sa.String(length=255)),
        ("quota_bytes", sa.BigInteger()),
        ("forward_to", sa.String(length=320)),
    ):
        op.add_column("mailboxes", sa.Column(name, column_type, nullable=True))
    op.add_column(
        "mailboxes",
        sa.Column("forward_keep_copy", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_index(op.f("ix_mailboxes_hosted_domain_id"), "mailboxes", ["hosted_domain_id"])
    if not sqlite:
        # SQLite cannot add a constraint to an existing table without copying it (and a
        # copy would cascade into mailbox_tags); the views join on domains anyway.
        op.create_foreign_key(
            op.f("fk_mailboxes_hosted_domain_id_domains"),
            "mailboxes",
            "domains",
            ["hosted_domain_id"],
            ["id"],
            ondelete="SET NULL",
        )
    op.add_column(
        "domains", sa.Column("catch_all_destination", sa.String(length=320), nullable=True)
    )
    op.create_table(
        "mail_purges",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("maildir", sa.String(length=400), nullable=False),
        sa.Column(
            "purge_after", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False
        ),
        sa.Column("created_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_purges")),
    )
    op.create_index(op.f("ix_mail_purges_workspace_id"), "mail_purges", ["workspace_id"])
    op.create_index(op.f("ix_mail_purges_purge_after"), "mail_purges", ["purge_after"])
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name in reversed(list(VIEWS)):
        op.execute(f"DROP VIEW {name}")
    op.drop_index(op.f("ix_mail_purges_purge_after"), table_name="mail_purges")
    op.drop_index(op.f("ix_mail_purges_workspace_id"), table_name="mail_purges")
    op.drop_table("mail_purges")
    op.drop_column("domains", "catch_all_destination")
    if not sqlite:
        op.drop_constraint(
            op.f("fk_mailboxes_hosted_domain_id_domains"), "mailboxes", type_="foreignkey"
        )
    op.drop_index(op.f("ix_mailboxes_hosted_domain_id"), table_name="mailboxes")
    for name in (
        "forward_keep_copy",
        "forward_to",
        "quota_bytes",
        "password_hash",
        "last_name",
        "first_name",
        "hosted_domain_id",
    ):
        op.drop_column("mailboxes", name)
