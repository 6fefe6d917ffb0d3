"""Fixtures for billing: billing switched on, a superuser, plans, a funded wallet,
mailbox rows, and Stripe faked on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.models import Mailbox, User
from mailfleet.models.billing import WalletEntry
from tests.billing.fake_stripe import FakeStripe
from tests.conftest import Account, make_account

WEBHOOK_SECRET = "whsec_test_billing"


@pytest.fixture
def billing_on(settings: Settings) -> Iterator[Settings]:
    """MAILFLEET_BILLING=on with manual payments for one test."""
    saved = {
        name: getattr(settings, name)
        for name in (
            "billing",
            "billing_grace_days",
            "payment_provider",
            "stripe_secret_key",
            "stripe_webhook_secret",
            "stripe_api_base",
            "billing_return_url",
        )
    }
    settings.billing = "on"
    settings.billing_grace_days = 3
    settings.payment_provider = "manual"
    yield settings
    for name, value in saved.items():
        setattr(settings, name, value)


@pytest.fixture
def fake_stripe(billing_on: Settings) -> Iterator[FakeStripe]:
    """Stripe as the payment provider, its API on loopback."""
    with FakeStripe() as server:
        billing_on.payment_provider = "stripe"
        billing_on.stripe_secret_key = "sk_test_mailfleet"
        billing_on.stripe_webhook_secret = WEBHOOK_SECRET
        billing_on.stripe_api_base = server.url
        yield server


@pytest.fixture
async def admin(database: Database) -> Account:
    account = await make_account(database, "admin@example.test")
    async with database.transaction() as session:
        await session.execute(
            update(User).where(User.id == account.user_id).values(is_superuser=True)
        )
    return account


async def create_plan(client: httpx.AsyncClient, admin: Account, **fields: Any) -> dict[str, Any]:
    body = {"name": "Starter", "pricePerMailbox": 300, "period": "month", **fields}
    response = await client.post("/v1/plans", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def grant(
    client: httpx.AsyncClient, admin: Account, workspace_id: str, amount: int
) -> dict[str, Any]:
    response = await client.post(
        "/v1/wallet/credits",
        json={"amount": amount, "reason": "test funds"},
        headers={**admin.headers, "x-workspace-id": workspace_id},
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def subscribe(
    client: httpx.AsyncClient, account: Account, plan_id: str, quantity: int
) -> dict[str, Any]:
    response = await client.post(
        "/v1/subscriptions",
        json={"planId": plan_id, "quantity": quantity},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def add_mailboxes(
    database: Database, workspace_id: str, count: int, *, status: str = "active", start: int = 0
) -> list[str]:
    """Mailbox rows as a verified import leaves them (the seats billing counts)."""
    ids = []
    async with database.transaction() as session:
        for number in range(start, start + count):
            mailbox = new_mailbox(workspace_id, f"box{number}@example.test", status=status)
            session.add(mailbox)
            await session.flush()
            ids.append(mailbox.id)
    return ids


def new_mailbox(workspace_id: str, email: str, *, status: str = "active") -> Mailbox:
    return Mailbox(
        workspace_id=workspace_id,
        email=email,
        domain=email.rsplit("@", 1)[1],
        display_name=email.split("@", 1)[0],
        provider="custom",
        status=status,
        connection_type="smtp",
        daily_send_limit=15,
        sending_enabled=status == "active",
        smtp_host="smtp.example.test",
        smtp_port=587,
        smtp_secure=True,
        smtp_username=email,
        smtp_password_enc="not-a-real-ciphertext",
        imap_host="imap.example.test",
        imap_port=993,
        imap_secure=True,
        imap_username=email,
        imap_password_enc="not-a-real-ciphertext",
    )


async def mailbox_states(database: Database, workspace_id: str) -> dict[str, tuple[str, bool]]:
    async with database.transaction() as session:
        rows = await session.execute(
            select(Mailbox.email, Mailbox.status, Mailbox.sending_enabled).where(
                Mailbox.workspace_id == workspace_id
            )
        )
        return {email: (status, enabled) for email, status, enabled in rows}


async def assert_ledger_consistent(
    client: httpx.AsyncClient, account: Account, database: Database
) -> int:
    """The wallet's balance is the sum of its ledger, and every entry's
    balanceAfter is the running sum up to it. Returns the balance."""
    wallet = (await client.get("/v1/wallet", headers=account.headers)).json()["data"]
    async with database.transaction() as session:
        entries = list(
            await session.scalars(
                select(WalletEntry)
                .where(WalletEntry.workspace_id == account.workspace_id)
                .order_by(WalletEntry.created_at, WalletEntry.id)
            )
        )
        total = await session.scalar(
            select(func.coalesce(func.sum(WalletEntry.amount), 0)).where(
                WalletEntry.workspace_id == account.workspace_id
            )
        )
    running = 0
    for entry in entries:
        assert isinstance(entry.amount, int)
        running += entry.amount
        assert entry.balance_after == running, "balanceAfter is the running sum"
        assert entry.balance_after >= 0, "the wallet never goes below zero"
    assert wallet["balance"] == running == total
    assert isinstance(wallet["balance"], int)
    return running


def at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
