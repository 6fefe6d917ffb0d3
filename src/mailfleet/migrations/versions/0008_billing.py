"""billing: plans, accounts, wallet ledger, payments, subscriptions, invoices

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mailfleet.models.common

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = mailfleet.models.common.UTCDateTime


def _workspace_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["workspace_id"],
        ["workspaces.id"],
        name=op.f(f"fk_{table}_workspace_id_workspaces"),
        ondelete="CASCADE",
    )


def _index(table: str, column: str, *, unique: bool = False) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=unique)


def upgrade() -> None:
    op.create_table(
        "billing_plans",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("price_per_mailbox", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("max_mailboxes", sa.Integer(), nullable=True),
        sa.Column("max_domains", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_plans")),
        sa.UniqueConstraint("name", name=op.f("uq_billing_plans_name")),
    )

    op.create_table(
        "billing_accounts",
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("lock_version", sa.BigInteger(), nullable=False),
        sa.Column("auto_recharge_enabled", sa.Boolean(), nullable=False),
        sa.Column("auto_recharge_threshold", sa.BigInteger(), nullable=False),
        sa.Column("auto_recharge_amount", sa.BigInteger(), nullable=False),
        sa.Column("provider_customer_id", sa.String(length=255), nullable=True),
        sa.Column("provider_payment_method_id", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        _workspace_fk("billing_accounts"),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_billing_accounts")),
    )

    op.create_table(
        "billing_wallet_entries",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("payment_id", sa.String(length=24), nullable=True),
        sa.Column("invoice_id", sa.String(length=24), nullable=True),
        sa.Column("subscription_id", sa.String(length=24), nullable=True),
        sa.Column("created_by_user_id", sa.String(length=24), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        _workspace_fk("billing_wallet_entries"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_wallet_entries")),
        sa.UniqueConstraint(
            "workspace_id",
            "idempotency_key",
            name=op.f("uq_billing_wallet_entries_workspace_id_idempotency_key"),
        ),
    )
    _index("billing_wallet_entries", "workspace_id")

    op.create_table(
        "billing_payments",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("purpose", sa.String(length=16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("provider_ref", sa.String(length=255), nullable=True),
        sa.Column("checkout_url", sa.String(length=2048), nullable=True),
        sa.Column("reason", sa.String(length=300), nullable=True),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("failure_message", sa.String(length=500), nullable=True),
        sa.Column("recorded_by_user_id", sa.String(length=24), nullable=True),
        sa.Column("succeeded_at", UTC(timezone=True), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        _workspace_fk("billing_payments"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_payments")),
    )
    for column in ("workspace_id", "status", "provider_ref", "reason"):
        _index("billing_payments", column)

    op.create_table(
        "billing_subscriptions",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("plan_id", sa.String(length=24), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("anchor_at", UTC(timezone=True), nullable=False),
        sa.Column("periods_started", sa.Integer(), nullable=False),
        sa.Column("current_period_start", UTC(timezone=True), nullable=False),
        sa.Column("current_period_end", UTC(timezone=True), nullable=False),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("canceled_at", UTC(timezone=True), nullable=True),
        sa.Column("ended_at", UTC(timezone=True), nullable=True),
        sa.Column("past_due_since", UTC(timezone=True), nullable=True),
        sa.Column("suspended_at", UTC(timezone=True), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["billing_plans.id"],
            name=op.f("fk_billing_subscriptions_plan_id_billing_plans"),
        ),
        _workspace_fk("billing_subscriptions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_subscriptions")),
    )
    for column in ("workspace_id", "plan_id", "status", "current_period_end"):
        _index("billing_subscriptions", column)

    op.create_table(
        "billing_mailbox_removals",
        sa.Column("mailbox_id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("subscription_id", sa.String(length=24), nullable=False),
        sa.Column("remove_at", UTC(timezone=True), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_billing_mailbox_removals_mailbox_id_mailboxes"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["billing_subscriptions.id"],
            name=op.f("fk_billing_mailbox_removals_subscription_id_billing_subscriptions"),
            ondelete="CASCADE",
        ),
        _workspace_fk("billing_mailbox_removals"),
        sa.PrimaryKeyConstraint("mailbox_id", name=op.f("pk_billing_mailbox_removals")),
    )
    for column in ("workspace_id", "subscription_id"):
        _index("billing_mailbox_removals", column)

    op.create_table(
        "billing_suspended_mailboxes",
        sa.Column("mailbox_id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["mailbox_id"],
            ["mailboxes.id"],
            name=op.f("fk_billing_suspended_mailboxes_mailbox_id_mailboxes"),
            ondelete="CASCADE",
        ),
        _workspace_fk("billing_suspended_mailboxes"),
        sa.PrimaryKeyConstraint("mailbox_id", name=op.f("pk_billing_suspended_mailboxes")),
    )
    _index("billing_suspended_mailboxes", "workspace_id")

    op.create_table(
        "billing_invoices",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("subtotal", sa.BigInteger(), nullable=False),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("bill_to", sa.JSON(), nullable=True),
        sa.Column("subscription_id", sa.String(length=24), nullable=True),
        sa.Column("payment_id", sa.String(length=24), nullable=True),
        sa.Column("period_start", UTC(timezone=True), nullable=True),
        sa.Column("period_end", UTC(timezone=True), nullable=True),
        sa.Column("issued_at", UTC(timezone=True), nullable=False),
        sa.Column("paid_at", UTC(timezone=True), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        _workspace_fk("billing_invoices"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_billing_invoices_number")),
    )
    for column in ("workspace_id", "subscription_id"):
        _index("billing_invoices", column)

    op.create_table(
        "billing_details",
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("company_name", sa.String(length=200), nullable=False),
        sa.Column("address_line1", sa.String(length=200), nullable=False),
        sa.Column("address_line2", sa.String(length=200), nullable=True),
        sa.Column("city", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=100), nullable=True),
        sa.Column("postal_code", sa.String(length=20), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("tax_id", sa.String(length=40), nullable=True),
        sa.Column("billing_email", sa.String(length=320), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.Column("updated_at", UTC(timezone=True), nullable=False),
        _workspace_fk("billing_details"),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_billing_details")),
    )

    op.create_table(
        "billing_idempotent_requests",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("workspace_id", sa.String(length=24), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        _workspace_fk("billing_idempotent_requests"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_idempotent_requests")),
        sa.UniqueConstraint(
            "workspace_id", "key", name=op.f("uq_billing_idempotent_requests_workspace_id_key")
        ),
    )
    _index("billing_idempotent_requests", "workspace_id")

    op.create_table(
        "billing_provider_events",
        sa.Column("id", sa.String(length=24), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("created_at", UTC(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_provider_events")),
        sa.UniqueConstraint(
            "provider", "event_id", name=op.f("uq_billing_provider_events_provider_event_id")
        ),
    )

    op.create_table(
        "billing_counters",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_billing_counters")),
    )


def downgrade() -> None:
    op.drop_table("billing_counters")
    op.drop_table("billing_provider_events")
    for table, columns in (
        ("billing_idempotent_requests", ("workspace_id",)),
        ("billing_invoices", ("workspace_id", "subscription_id")),
        ("billing_suspended_mailboxes", ("workspace_id",)),
        ("billing_mailbox_removals", ("workspace_id", "subscription_id")),
        ("billing_subscriptions", ("workspace_id", "plan_id", "status", "current_period_end")),
        ("billing_payments", ("workspace_id", "status", "provider_ref", "reason")),
        ("billing_wallet_entries", ("workspace_id",)),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in columns:
                batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
    for table in (
        "billing_idempotent_requests",
        "billing_details",
        "billing_invoices",
        "billing_suspended_mailboxes",
        "billing_mailbox_removals",
        "billing_subscriptions",
        "billing_payments",
        "billing_wallet_entries",
        "billing_accounts",
        "billing_plans",
    ):
        op.drop_table(table)
