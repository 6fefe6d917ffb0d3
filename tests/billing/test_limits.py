"""Mailbox limits: SendKit's 403 bodies verbatim, and seats that two concurrent
requests cannot both take."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from sqlalchemy import func, select

from mailfleet.billing import seats, subscriptions
from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.deps import SessionDep, WorkspaceDep
from mailfleet.kit.errors import LimitReached, SubscriptionRequired
from mailfleet.models import Mailbox
from tests.billing.conftest import (
    add_mailboxes,
    create_plan,
    grant,
    new_mailbox,
    subscribe,
)
from tests.conftest import Account

# Seed 002 (SendKit, Add SMTP mailbox), the two 403 answers, verbatim.
SENDKIT_SUBSCRIPTION_REQUIRED = {
    "success": False,
    "error": {
        "code": "SUBSCRIPTION_REQUIRED",
        "message": "Workspace owner needs an active subscription to add mailboxes",
    },
}
SENDKIT_LIMIT_REACHED = {
    "success": False,
    "error": {
        "code": "LIMIT_REACHED",
        "message": "Mailbox limit reached for your plan",
        "currentUsage": 10,
        "maxMailboxes": 10,
        "requested": 1,
    },
}


@pytest.fixture
async def quota_client(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """The app plus a test-only route that takes a seat the way a create path does:
    reserve, then insert the mailbox, in the request's transaction."""
    router = APIRouter()

    @router.post("/v1/_test/mailboxes")
    async def add_one(body: dict[str, Any], ctx: WorkspaceDep, session: SessionDep) -> Any:
        await seats.reserve_mailbox_seats(session, ctx.workspace_id, 1)
        session.add(new_mailbox(ctx.workspace_id, body["email"]))
        await session.flush()
        return {"success": True}

    app.include_router(router)
    try:
        yield client
    finally:
        app.router.routes[:] = [
            r for r in app.router.routes if getattr(r, "path", "") != "/v1/_test/mailboxes"
        ]


async def test_sendkit_subscription_required_verbatim(
    quota_client: httpx.AsyncClient, billing_on: Settings, owner: Account
) -> None:
    response = await quota_client.post(
        "/v1/_test/mailboxes", json={"email": "a@example.test"}, headers=owner.headers
    )
    assert response.status_code == 403
    assert response.json() == SENDKIT_SUBSCRIPTION_REQUIRED


async def test_sendkit_limit_reached_verbatim(
    quota_client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(quota_client, admin, pricePerMailbox=100)
    await grant(quota_client, admin, owner.workspace_id, 1000)
    await subscribe(quota_client, owner, plan["id"], 10)
    await add_mailboxes(database, owner.workspace_id, 10)
    response = await quota_client.post(
        "/v1/_test/mailboxes", json={"email": "eleventh@example.test"}, headers=owner.headers
    )
    assert response.status_code == 403
    assert response.json() == SENDKIT_LIMIT_REACHED
    assert list(response.json()["error"]) == list(SENDKIT_LIMIT_REACHED["error"])  # key order


async def test_a_past_due_subscription_adds_no_mailboxes(
    quota_client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(quota_client, admin, pricePerMailbox=100)
    await grant(quota_client, admin, owner.workspace_id, 500)
    sub = await subscribe(quota_client, owner, plan["id"], 5)
    async with database.transaction() as session:
        subscription = await subscriptions.get_subscription(session, owner.workspace_id, sub["id"])
        subscription.status = "past_due"
    response = await quota_client.post(
        "/v1/_test/mailboxes", json={"email": "late@example.test"}, headers=owner.headers
    )
    assert response.json() == SENDKIT_SUBSCRIPTION_REQUIRED


async def test_billing_off_means_no_limit(
    quota_client: httpx.AsyncClient, database: Database, owner: Account, settings: Settings
) -> None:
    assert settings.billing == "off"
    for number in range(3):
        response = await quota_client.post(
            "/v1/_test/mailboxes", json={"email": f"m{number}@example.test"}, headers=owner.headers
        )
        assert response.status_code == 200, response.text
    async with database.transaction() as session:
        quota = await seats.mailbox_quota(session, owner.workspace_id)
    assert quota.max_mailboxes is None
    assert quota.current_usage == 3


async def _count(database: Database, workspace_id: str) -> int:
    async with database.transaction() as session:
        return int(
            await session.scalar(
                select(func.count())
                .select_from(Mailbox)
                .where(Mailbox.workspace_id == workspace_id)
            )
            or 0
        )


async def test_two_concurrent_reservations_for_the_last_seat(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    """Each transaction reserves, dawdles, inserts and commits: with the check
    alone both would see one free seat; the lock lets exactly one through."""
    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 300)
    await subscribe(client, owner, plan["id"], 3)
    await add_mailboxes(database, owner.workspace_id, 2)
    gate = asyncio.Event()

    async def take_last_seat(email: str) -> str:
        async with database.transaction() as session:
            # A read first, as a create path does (the duplicate check).
            await session.scalar(select(Mailbox.id).where(Mailbox.email == email))
            await gate.wait()
            await seats.reserve_mailbox_seats(session, owner.workspace_id, 1)
            await asyncio.sleep(0.2)
            session.add(new_mailbox(owner.workspace_id, email))
            await session.flush()
        return email

    tasks = [
        asyncio.create_task(take_last_seat(f"racer{number}@example.test")) for number in (1, 2)
    ]
    await asyncio.sleep(0.05)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    winners = [r for r in results if isinstance(r, str)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1, results
    assert len(losers) == 1, results
    assert isinstance(losers[0], LimitReached), results
    assert losers[0].extra == {"currentUsage": 3, "maxMailboxes": 3, "requested": 1}
    assert await _count(database, owner.workspace_id) == 3


async def test_a_batch_fails_items_over_the_limit_one_by_one(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    """How a batch dialect uses it: one reservation per item in one transaction."""
    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 500)
    await subscribe(client, owner, plan["id"], 5)
    await add_mailboxes(database, owner.workspace_id, 3)
    outcomes: list[str] = []
    async with database.transaction() as session:
        for number in range(4):
            try:
                await seats.reserve_mailbox_seats(session, owner.workspace_id, 1)
            except (LimitReached, SubscriptionRequired) as exc:
                outcomes.append(exc.code)
                continue
            session.add(new_mailbox(owner.workspace_id, f"batch{number}@example.test"))
            await session.flush()
            outcomes.append("created")
    assert outcomes == ["created", "created", "LIMIT_REACHED", "LIMIT_REACHED"]
    assert await _count(database, owner.workspace_id) == 5


async def test_plan_limit_caps_seats_and_domains(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=100, maxMailboxes=4, maxDomains=2)
    await grant(client, admin, owner.workspace_id, 1000)
    too_many = await client.post(
        "/v1/subscriptions", json={"planId": plan["id"], "quantity": 5}, headers=owner.headers
    )
    assert too_many.status_code == 400
    assert too_many.json()["error"]["details"][0]["field"] == "quantity"
    await subscribe(client, owner, plan["id"], 4)
    async with database.transaction() as session:
        await seats.check_domain_quota(session, owner.workspace_id, current_domains=1)
        with pytest.raises(LimitReached) as raised:
            await seats.check_domain_quota(session, owner.workspace_id, current_domains=2)
    assert raised.value.message == "Domain limit reached for your plan"
    assert raised.value.extra == {"currentUsage": 2, "maxDomains": 2, "requested": 1}


async def test_seat_batch_counts_once_and_fails_the_rest(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 400)
    await subscribe(client, owner, plan["id"], 4)
    await add_mailboxes(database, owner.workspace_id, 1)
    outcomes: list[Any] = []
    async with database.transaction() as session:
        batch = await seats.reserve_seat_batch(session, owner.workspace_id)
        for number in range(5):
            try:
                batch.take()
            except LimitReached as exc:
                outcomes.append(exc.extra)
                continue
            if number == 1:  # this item fails for another reason: its seat goes back
                batch.give_back()
                outcomes.append("duplicate")
                continue
            session.add(new_mailbox(owner.workspace_id, f"bulk{number}@example.test"))
            outcomes.append("created")
    assert outcomes == [
        "created",
        "duplicate",
        "created",
        "created",
        {"currentUsage": 4, "maxMailboxes": 4, "requested": 1},
    ]
    assert await _count(database, owner.workspace_id) == 4
