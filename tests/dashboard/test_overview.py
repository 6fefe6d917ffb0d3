"""GET /v1/dashboard/overview: every number is a count of rows the test put there."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.clock import utcnow
from mailfleet.models import (
    BulkJob,
    Domain,
    Mailbox,
    PlacementResult,
    PlacementTest,
    WalletEntry,
    WarmupMessage,
    WarmupSettings,
    WebhookEndpoint,
)
from tests.conftest import Account, HeldMailbox, make_account


@pytest.fixture
def billing_on(settings: Settings) -> Iterator[None]:
    previous = settings.billing
    settings.billing = "on"
    yield
    settings.billing = previous


def _message(
    workspace_id: str, sender: str, receiver: str, seq: int, placement: str
) -> WarmupMessage:
    now = utcnow()
    return WarmupMessage(
        workspace_id=workspace_id,
        sender_id=sender,
        receiver_id=receiver,
        kind="warmup",
        day=now.date(),
        seq=seq,
        tracking_code=f"code-{sender}-{seq}",
        message_id=f"<{sender}-{seq}@example.test>",
        subject="hello",
        planned_at=now,
        status="sent",
        sent_at=now,
        placement=placement,
        seen_at=now,
    )


async def _populate(database: Database, held_mailbox: HeldMailbox, owner: Account) -> list[str]:
    ws = owner.workspace_id
    ids = [
        await held_mailbox(ws, "a@gmail.test", provider="gmail"),
        await held_mailbox(ws, "b@gmail.test", provider="gmail"),
        await held_mailbox(ws, "c@outlook.test", provider="outlook"),
    ]
    async with database.transaction() as session:
        await session.execute(update(Mailbox).where(Mailbox.id == ids[0]).values(status="active"))
        await session.execute(update(Mailbox).where(Mailbox.id == ids[2]).values(status="error"))
        for name, status in (("one.test", "active"), ("two.test", "misconfigured")):
            session.add(
                Domain(
                    workspace_id=ws,
                    name=name,
                    unicode_name=name,
                    dns_provider="manual",
                    mail_provider="custom",
                    status=status,
                )
            )
        # Two warmup senders: one lands in the inbox, one lands in spam.
        for mailbox_id in ids[:2]:
            session.add(
                WarmupSettings(
                    mailbox_id=mailbox_id, workspace_id=ws, enabled=True, state="warming"
                )
            )
        session.add(_message(ws, ids[0], ids[1], 1, "inbox"))
        session.add(_message(ws, ids[1], ids[0], 1, "spam"))
        session.add(
            BulkJob(
                workspace_id=ws,
                status="running",
                source="csv",
                total=10,
                connected_count=3,
                failed_count=1,
            )
        )
        session.add(BulkJob(workspace_id=ws, status="completed", source="csv", total=5))
        session.add(
            WebhookEndpoint(
                workspace_id=ws,
                url="https://hooks.example.test/a",
                event_types=["*"],
                secret_enc="unused",
                failed_deliveries_in_row=4,
                failing_since=utcnow(),
            )
        )
        session.add(
            WebhookEndpoint(
                workspace_id=ws,
                url="https://hooks.example.test/ok",
                event_types=["*"],
                secret_enc="unused",
            )
        )
    return ids


async def test_overview_counts_each_area(
    client: httpx.AsyncClient, owner: Account, held_mailbox: HeldMailbox, database: Database
) -> None:
    ids = await _populate(database, held_mailbox, owner)

    response = await client.get("/v1/dashboard/overview", headers=owner.headers)

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["mailboxes"] == {
        "total": 3,
        "byStatus": {"inactive": 1, "active": 1, "paused": 0, "error": 1},
        "byProvider": [{"key": "gmail", "count": 2}, {"key": "outlook", "count": 1}],
        "pendingTests": 3,
    }
    assert data["domains"] == {
        "total": 2,
        "byHealth": {"pending": 0, "active": 1, "misconfigured": 1},
    }
    warmup = data["warmup"]
    assert warmup["enabled"] == 2
    assert warmup["byState"]["warming"] == 2
    # inbox: 0.5*100 + 0.3*100 + 0.2*100 = 100; spam: 0.5*0 + 0.3*0 + 0.2*100 = 20.
    assert warmup["averageHealthScore"] == 60.0
    assert [(w["mailboxId"], w["healthScore"]) for w in warmup["weakest"]] == [
        (ids[1], 20.0),
        (ids[0], 100.0),
    ]
    daily = warmup["daily"]
    assert len(daily) == warmup["periodDays"] == 14
    assert daily[-1] == {"date": utcnow().date().isoformat(), "sent": 2, "inbox": 1, "spam": 1}
    assert all(day["sent"] == 0 for day in daily[:-1])
    assert [(j["kind"], j["total"], j["done"]) for j in data["runningJobs"]] == [
        ("bulk_connect", 10, 4)
    ]
    assert [(w["url"], w["failedDeliveriesInRow"]) for w in data["failingWebhooks"]] == [
        ("https://hooks.example.test/a", 4)
    ]
    assert data["wallet"] is None
    assert data["placement"] == {"latest": [], "latestCompletedId": None, "providers": []}


async def test_overview_is_per_workspace_and_readable_by_viewers(
    client: httpx.AsyncClient, owner: Account, held_mailbox: HeldMailbox, database: Database
) -> None:
    await _populate(database, held_mailbox, owner)
    viewer = await make_account(database, "viewer@example.test")
    added = await client.post(
        f"/v1/workspaces/{owner.workspace_id}/members",
        json={"email": viewer.email, "role": "viewer"},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text

    own = await client.get("/v1/dashboard/overview", headers=viewer.headers)
    shared = await client.get(
        "/v1/dashboard/overview", headers={**viewer.headers, "x-workspace-id": owner.workspace_id}
    )

    assert own.json()["data"]["mailboxes"]["total"] == 0
    assert own.json()["data"]["runningJobs"] == []
    assert shared.json()["data"]["mailboxes"]["total"] == 3


async def test_overview_shows_the_wallet_when_billing_is_on(
    client: httpx.AsyncClient, owner: Account, database: Database, billing_on: None
) -> None:
    async with database.transaction() as session:
        session.add(
            WalletEntry(
                workspace_id=owner.workspace_id,
                amount=2500,
                balance_after=2500,
                currency="USD",
                kind="top_up",
                idempotency_key="test-top-up",
                description="test",
            )
        )

    response = await client.get("/v1/dashboard/overview", headers=owner.headers)

    assert response.json()["data"]["wallet"] == {"balance": 2500, "currency": "USD"}


async def test_overview_shows_the_latest_placement_results_per_provider(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    now = utcnow()
    async with database.transaction() as session:
        older = PlacementTest(
            workspace_id=owner.workspace_id,
            name="older",
            code="code-older",
            subject="s",
            status="completed",
            created_at=now - timedelta(days=2),
            completed_at=now - timedelta(days=2),
        )
        done = PlacementTest(
            workspace_id=owner.workspace_id,
            name="done",
            code="code-done",
            subject="s",
            status="completed",
            created_at=now - timedelta(hours=2),
            completed_at=now - timedelta(hours=1),
        )
        running = PlacementTest(
            workspace_id=owner.workspace_id,
            name="running",
            code="code-running",
            subject="s",
            status="waiting",
            created_at=now,
        )
        session.add_all([older, done, running])
        await session.flush()
        landed = [("google", "inbox"), ("google", "spam"), ("microsoft", "inbox")]
        for seq, (provider, folder) in enumerate(landed):
            session.add(
                PlacementResult(
                    test_id=done.id,
                    seq=seq,
                    sender_id="sender",
                    sender_email="a@example.test",
                    seed_id=f"seed{seq}",
                    seed_email=f"seed{seq}@example.test",
                    provider=provider,
                    tracking_code=f"track-{seq}",
                    message_id=f"<{seq}@example.test>",
                    status="sent",
                    folder=folder,
                )
            )
        session.add(
            PlacementResult(
                test_id=older.id,
                seq=0,
                sender_id="sender",
                sender_email="a@example.test",
                seed_id="seed0",
                seed_email="seed0@example.test",
                provider="yahoo",
                tracking_code="track-older",
                message_id="<older@example.test>",
                status="sent",
                folder="spam",
            )
        )

    response = await client.get("/v1/dashboard/overview", headers=owner.headers)

    data = response.json()["data"]["placement"]
    assert [t["name"] for t in data["latest"]] == ["running", "done", "older"]
    assert data["latestCompletedId"] == done.id
    assert [
        (p["provider"], p["messages"], p["inbox"], p["spam"], p["inboxRate"])
        for p in data["providers"]
    ] == [("google", 2, 1, 1, 50.0), ("microsoft", 1, 1, 0, 100.0)]


async def test_overview_needs_credentials(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/dashboard/overview")
    assert response.status_code == 401
