"""Plans, subscriptions, proration and Idempotency-Key, through the API."""

from __future__ import annotations

from datetime import timedelta

import httpx

from mailfleet.billing import subscriptions
from mailfleet.billing.schemas import SubscriptionUpdate
from mailfleet.config import Settings
from mailfleet.db import Database
from tests.billing.conftest import (
    assert_ledger_consistent,
    at,
    create_plan,
    grant,
    subscribe,
)
from tests.conftest import Account, make_account


async def test_plans_are_managed_by_superusers(
    client: httpx.AsyncClient, billing_on: Settings, owner: Account, admin: Account
) -> None:
    body = {"name": "Growth", "pricePerMailbox": 250, "period": "month", "maxMailboxes": 100}
    refused = await client.post("/v1/plans", json=body, headers=owner.headers)
    assert refused.status_code == 403
    plan = await create_plan(client, admin, **body)
    assert plan["currency"] == "USD"
    assert plan["maxMailboxes"] == 100
    assert plan["maxDomains"] is None
    duplicate = await client.post("/v1/plans", json=body, headers=admin.headers)
    assert duplicate.status_code == 409
    updated = await client.put(
        f"/v1/plans/{plan['id']}",
        json={"pricePerMailbox": 275, "maxMailboxes": None},
        headers=admin.headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["pricePerMailbox"] == 275
    assert updated.json()["data"]["maxMailboxes"] is None
    await client.put(f"/v1/plans/{plan['id']}", json={"active": False}, headers=admin.headers)
    listed = await client.get("/v1/plans", headers=owner.headers)
    assert listed.json()["data"] == []
    everything = await client.get("/v1/plans?includeInactive=true", headers=admin.headers)
    assert [p["name"] for p in everything.json()["data"]] == ["Growth"]


async def test_bad_plan_input_is_400_naming_the_field(
    client: httpx.AsyncClient, billing_on: Settings, admin: Account
) -> None:
    cases = [
        ({"name": "x", "pricePerMailbox": 2.5}, "pricePerMailbox"),
        ({"name": "x", "pricePerMailbox": "300"}, "pricePerMailbox"),
        ({"name": "x", "pricePerMailbox": -1}, "pricePerMailbox"),
        ({"name": "x", "pricePerMailbox": 1, "period": "week"}, "period"),
        ({"name": "x", "pricePerMailbox": 1, "currency": "EUR"}, "currency"),
        ({"name": "x", "pricePerMailbox": 1, "maxMailboxes": 0}, "maxMailboxes"),
    ]
    for body, field in cases:
        response = await client.post("/v1/plans", json=body, headers=admin.headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["details"][0]["field"] == field, body


async def test_billing_off_every_workspace_holds_self_hosted(
    client: httpx.AsyncClient, owner: Account, settings: Settings
) -> None:
    assert settings.billing == "off"
    plans = (await client.get("/v1/plans", headers=owner.headers)).json()["data"]
    assert plans[0]["id"] == "self-hosted"
    assert plans[0]["builtin"] is True
    assert plans[0]["maxMailboxes"] is None
    assert plans[0]["pricePerMailbox"] == 0
    subscriptions = (await client.get("/v1/subscriptions", headers=owner.headers)).json()
    assert [s["planId"] for s in subscriptions["data"]] == ["self-hosted"]
    assert subscriptions["data"][0]["status"] == "active"
    refused = await client.post(
        "/v1/subscriptions", json={"planId": "self-hosted", "quantity": 1}, headers=owner.headers
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "BILLING_DISABLED"
    wallet = (await client.get("/v1/wallet", headers=owner.headers)).json()["data"]
    assert wallet["balance"] == 0
    assert wallet["billing"] == "off"


async def test_subscribe_pays_the_first_period_from_the_wallet(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=300)
    short = await client.post(
        "/v1/subscriptions", json={"planId": plan["id"], "quantity": 4}, headers=owner.headers
    )
    assert short.status_code == 402
    assert short.json()["error"] == {
        "code": "INSUFFICIENT_FUNDS",
        "message": "The wallet balance is too low: top it up with POST /v1/wallet/balance",
        "balance": 0,
        "required": 1200,
        "currency": "USD",
    }
    assert (await client.get("/v1/subscriptions", headers=owner.headers)).json()["data"] == []
    await grant(client, admin, owner.workspace_id, 1500)
    sub = await subscribe(client, owner, plan["id"], 4)
    assert sub["status"] == "active"
    assert sub["amount"] == 1200
    assert at(sub["currentPeriodEnd"]) > at(sub["currentPeriodStart"])
    assert await assert_ledger_consistent(client, owner, database) == 300
    invoices = (await client.get("/v1/billing/invoices", headers=owner.headers)).json()["data"]
    assert [(i["kind"], i["total"], i["status"]) for i in invoices] == [
        ("subscription", 1200, "paid")
    ]
    assert invoices[0]["lines"][0]["quantity"] == 4
    assert invoices[0]["lines"][0]["unitAmount"] == 300
    again = await client.post(
        "/v1/subscriptions", json={"planId": plan["id"], "quantity": 1}, headers=owner.headers
    )
    assert again.status_code == 409


async def test_members_cannot_manage_billing(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=0)
    member = await make_account(database, "member@example.test")
    added = await client.post(
        f"/v1/workspaces/{owner.workspace_id}/members",
        json={"email": member.email, "role": "member"},
        headers=owner.headers,
    )
    assert added.status_code in (200, 201), added.text
    headers = {**member.headers, "x-workspace-id": owner.workspace_id}
    refused = await client.post(
        "/v1/subscriptions", json={"planId": plan["id"], "quantity": 1}, headers=headers
    )
    assert refused.status_code == 403
    assert (await client.get("/v1/subscriptions", headers=headers)).status_code == 200
    credit = await client.post(
        "/v1/wallet/credits", json={"amount": 5, "reason": "mine"}, headers=owner.headers
    )
    assert credit.status_code == 403, "only superusers grant credit"


async def test_idempotency_key_replays_and_charges_once(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 1000)
    headers = {**owner.headers, "Idempotency-Key": "subscribe-1"}
    body = {"planId": plan["id"], "quantity": 3}
    first = await client.post("/v1/subscriptions", json=body, headers=headers)
    second = await client.post("/v1/subscriptions", json=body, headers=headers)
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert await assert_ledger_consistent(client, owner, database) == 700
    other = await client.post("/v1/subscriptions", json={**body, "quantity": 4}, headers=headers)
    assert other.status_code == 400
    assert other.json()["error"]["details"][0]["field"] == "Idempotency-Key"

    credit_headers = {
        **admin.headers,
        "x-workspace-id": owner.workspace_id,
        "Idempotency-Key": "grant-7",
    }
    for _ in range(2):
        response = await client.post(
            "/v1/wallet/credits", json={"amount": 50, "reason": "goodwill"}, headers=credit_headers
        )
        assert response.status_code == 201
    assert await assert_ledger_consistent(client, owner, database) == 750


async def test_upgrade_and_downgrade_are_prorated(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    small = await create_plan(client, admin, name="Small", pricePerMailbox=300)
    large = await create_plan(client, admin, name="Large", pricePerMailbox=500)
    await grant(client, admin, owner.workspace_id, 10_000)
    sub = await subscribe(client, owner, small["id"], 2)
    start, end = at(sub["currentPeriodStart"]), at(sub["currentPeriodEnd"])
    period = int((end - start).total_seconds())
    # A quarter of the period gone (whole seconds), so the arithmetic is known exactly.
    now = end - timedelta(seconds=period * 3 // 4)
    remaining = int((end - now).total_seconds())
    async with database.transaction() as session:
        subscription = await subscriptions.get_subscription(session, owner.workspace_id, sub["id"])
        change = await subscriptions.change_subscription(
            session,
            billing_on,
            subscription,
            SubscriptionUpdate(plan_id=large["id"], quantity=3),
            now=now,
        )
    expected_up = (1500 - 600) * remaining // period
    assert change.proration.amount == expected_up
    assert change.invoice is not None
    assert change.invoice.total == expected_up
    async with database.transaction() as session:
        subscription = await subscriptions.get_subscription(session, owner.workspace_id, sub["id"])
        change = await subscriptions.change_subscription(
            session, billing_on, subscription, SubscriptionUpdate(quantity=1), now=now
        )
    expected_down = -((1500 - 500) * remaining // period)
    assert change.proration.amount == expected_down
    balance = await assert_ledger_consistent(client, owner, database)
    assert balance == 10_000 - 600 - expected_up - expected_down
    kinds = [
        (i["kind"], i["total"])
        for i in (await client.get("/v1/billing/invoices", headers=owner.headers)).json()["data"]
    ]
    assert kinds == [("change", expected_down), ("change", expected_up), ("subscription", 600)]

    # Through the API: the answer carries the proration and the invoice.
    response = await client.put(
        f"/v1/subscriptions/{sub['id']}", json={"quantity": 2}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["subscription"]["quantity"] == 2
    assert data["subscription"]["planId"] == large["id"]
    assert 0 < data["proration"]["amount"] <= 500
    assert data["proration"]["invoiceId"]


async def test_cancel_at_period_end_and_undo(
    client: httpx.AsyncClient, billing_on: Settings, owner: Account, admin: Account
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 100)
    sub = await subscribe(client, owner, plan["id"], 1)
    canceled = await client.delete(f"/v1/subscriptions/{sub['id']}", headers=owner.headers)
    assert canceled.status_code == 200
    data = canceled.json()["data"]
    assert data["status"] == "active"
    assert data["cancelAtPeriodEnd"] is True
    undone = await client.put(
        f"/v1/subscriptions/{sub['id']}", json={"cancelAtPeriodEnd": False}, headers=owner.headers
    )
    assert undone.json()["data"]["subscription"]["cancelAtPeriodEnd"] is False
    assert undone.json()["data"]["proration"]["amount"] == 0
