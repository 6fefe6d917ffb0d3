"""domains, DNS records, DKIM keys, DNS check history, Cloudflare credentials

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailfleet.models.common

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "domains",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("unicode_name", sa.String(length=253), nullable=False),
        sa.Column("dns_provider", sa.String(length=20), nullable=False),
        sa.Column("mail_provider", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("provider_zone_id", sa.String(length=255), nullable=True),
        sa.Column("nameservers", sa.JSON(), nullable=False),
        sa.Column("ns_status", sa.String(length=20), nullable=True),
        sa.Column(
            "ns_checked_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("dns_health", sa.JSON(), nullable=True),
        sa.Column(
            "dns_checked_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("dmarc_policy", sa.JSON(), nullable=True),
        sa.Column("setup_instructions", sa.JSON(), nullable=False),
        sa.Column("forward_url", sa.String(length=2048), nullable=True),
        sa.Column("forward_permanent", sa.Boolean(), nullable=False),
        sa.Column("forward_keep_path", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_domains_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domains")),
        sa.UniqueConstraint("name", name=op.f("uq_domains_name")),
    )
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_domains_workspace_id"), ["workspace_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_domains_status"), ["status"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_domains_dns_checked_at"), ["dns_checked_at"], unique=False
        )

    op.create_table(
        "dns_records",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("domain_id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=253), nullable=False),
        sa.Column("type", sa.String(length=10), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=True),
        sa.Column("ttl", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=True),
        sa.Column("provider_record_id", sa.String(length=64), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_dns_records_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dns_records")),
    )
    with op.batch_alter_table("dns_records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dns_records_domain_id"), ["domain_id"], unique=False)

    op.create_table(
        "dkim_keys",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("domain_id", sa.String(length=24), nullable=False),
        sa.Column("selector", sa.String(length=63), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("private_key_enc", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column(
            "activated_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("retired_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_dkim_keys_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dkim_keys")),
        sa.UniqueConstraint("domain_id", "selector", name=op.f("uq_dkim_keys_domain_id_selector")),
    )
    with op.batch_alter_table("dkim_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dkim_keys_domain_id"), ["domain_id"], unique=False)

    op.create_table(
        "domain_dns_checks",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("domain_id", sa.String(length=24), nullable=False),
        sa.Column("overall", sa.String(length=10), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("created_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["domain_id"],
            ["domains.id"],
            name=op.f("fk_domain_dns_checks_domain_id_domains"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_domain_dns_checks")),
    )
    with op.batch_alter_table("domain_dns_checks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_domain_dns_checks_domain_id"), ["domain_id"], unique=False
        )

    op.create_table(
        "cloudflare_credentials",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("api_token_enc", sa.Text(), nullable=False),
        sa.Column("account_id", sa.String(length=64), nullable=True),
        sa.Column("verified_at", mailfleet.models.common.UTCDateTime(timezone=True), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_cloudflare_credentials_workspace_id_workspaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cloudflare_credentials")),
        sa.UniqueConstraint("workspace_id", name=op.f("uq_cloudflare_credentials_workspace_id")),
    )


def downgrade() -> None:
    op.drop_table("cloudflare_credentials")
    with op.batch_alter_table("domain_dns_checks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_domain_dns_checks_domain_id"))
    op.drop_table("domain_dns_checks")
    with op.batch_alter_table("dkim_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dkim_keys_domain_id"))
    op.drop_table("dkim_keys")
    with op.batch_alter_table("dns_records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dns_records_domain_id"))
    op.drop_table("dns_records")
    with op.batch_alter_table("domains", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_domains_dns_checked_at"))
        batch_op.drop_index(batch_op.f("ix_domains_status"))
        batch_op.drop_index(batch_op.f("ix_domains_workspace_id"))
    op.drop_table("domains")
