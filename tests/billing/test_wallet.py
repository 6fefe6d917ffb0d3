"""The wallet with manual payments, credit grants, auto-recharge settings, billing
details, printable invoices, and the billing events webhooks receive."""

from __future__ import annotations

from typing import Any

import httpx

from mailfleet.config import Settings
from mailfleet.db import Database
from tests.billing.conftest import (
    assert_ledger_consistent,
    create_plan,
    grant,
    subscribe,
)
from tests.billing.fake_stripe import FakeStripe
from tests.conftest import Account
from tests.servers.http_receiver import HttpReceiver


async def test_manual_payments_are_recorded_by_superusers(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    refused = await client.post("/v1/wallet/balance", json={"amount": 5000}, headers=owner.headers)
    assert refused.status_code == 403
    recorded = await client.post(
        "/v1/wallet/balance",
        json={"amount": 5000, "note": "wire 2026-11-20 ref 8812"},
        headers={**admin.headers, "x-workspace-id": owner.workspace_id},
    )
    assert recorded.status_code == 201, recorded.text
    data = recorded.json()["data"]
    assert data["payment"]["status"] == "succeeded"
    assert data["payment"]["provider"] == "manual"
    assert data["payment"]["note"] == "wire 2026-11-20 ref 8812"
    assert data["balance"] == 5000
    entries = (await client.get("/v1/wallet/transactions", headers=owner.headers)).json()
    assert [(e["kind"], e["amount"], e["balanceAfter"]) for e in entries["data"]] == [
        ("topup", 5000, 5000)
    ]
    invoices = (await client.get("/v1/billing/invoices", headers=owner.headers)).json()["data"]
    assert [(i["kind"], i["total"]) for i in invoices] == [("topup", 5000)]
    assert invoices[0]["number"].startswith("MF-")
    await grant(client, admin, owner.workspace_id, 250)
    assert await assert_ledger_consistent(client, owner, database) == 5250
    wallet = (await client.get("/v1/wallet", headers=owner.headers)).json()["data"]
    assert wallet["formattedBalance"] == "USD 52.50"


async def test_money_input_is_validated(
    client: httpx.AsyncClient, billing_on: Settings, owner: Account, admin: Account
) -> None:
    headers = {**admin.headers, "x-workspace-id": owner.workspace_id}
    for body, field in (
        ({"amount": 10.5, "reason": "x"}, "amount"),
        ({"amount": 0, "reason": "x"}, "amount"),
        ({"amount": True, "reason": "x"}, "amount"),
        ({"amount": 10}, "reason"),
    ):
        response = await client.post("/v1/wallet/credits", json=body, headers=headers)
        assert response.status_code == 400, body
        assert response.json()["error"]["details"][0]["field"] == field
    manual = await client.post(
        "/v1/wallet/auto-recharge",
        json={"enabled": True, "threshold": 100, "amount": 500},
        headers=owner.headers,
    )
    assert manual.status_code == 400
    assert manual.json()["error"]["details"][0]["field"] == "enabled"


async def test_auto_recharge_settings(
    client: httpx.AsyncClient, fake_stripe: FakeStripe, owner: Account
) -> None:
    missing = await client.post(
        "/v1/wallet/auto-recharge", json={"enabled": True, "threshold": 100}, headers=owner.headers
    )
    assert missing.status_code == 400
    assert missing.json()["error"]["details"][0]["field"] == "amount"
    enabled = await client.post(
        "/v1/wallet/auto-recharge",
        json={"enabled": True, "threshold": 1000, "amount": 5000},
        headers=owner.headers,
    )
    assert enabled.status_code == 200
    assert enabled.json()["message"].startswith("Enabled; it starts once a card is saved")
    disabled = await client.post(
        "/v1/wallet/auto-recharge", json={"enabled": False}, headers=owner.headers
    )
    assert disabled.json()["data"] == {"enabled": False, "threshold": 1000, "amount": 5000}
    wallet = (await client.get("/v1/wallet", headers=owner.headers)).json()["data"]
    assert wallet["autoRecharge"] == {"enabled": False, "threshold": 1000, "amount": 5000}
    assert wallet["paymentProvider"] == "stripe"
    assert wallet["hasPaymentMethod"] is False


DETAILS: dict[str, Any] = {
    "companyName": "Acme <b>GmbH</b>",
    "addressLine1": "Hauptstrasse 1",
    "city": "Berlin",
    "postalCode": "10115",
    "country": "de",
    "taxId": "DE 136,695 976",
    "billingEmail": "Billing@Acme.test",
}


async def test_billing_details_check_the_tax_id(
    client: httpx.AsyncClient, billing_on: Settings, owner: Account
) -> None:
    assert (await client.get("/v1/billing/details", headers=owner.headers)).json()["data"] is None
    saved = await client.post("/v1/billing/details", json=DETAILS, headers=owner.headers)
    assert saved.status_code == 200, saved.text
    data = saved.json()["data"]
    assert (data["country"], data["taxId"], data["billingEmail"]) == (
        "DE",
        "DE136695976",
        "billing@acme.test",
    )
    for change, field in (
        ({"taxId": "DE123"}, "taxId"),
        ({"country": "XX"}, "country"),
        ({"billingEmail": "not-an-email"}, "billingEmail"),
        ({"vatNumber": "1"}, "vatNumber"),
    ):
        response = await client.post(
            "/v1/billing/details", json={**DETAILS, **change}, headers=owner.headers
        )
        assert response.status_code == 400, change
        assert response.json()["error"]["details"][0]["field"] == field
    read = (await client.get("/v1/billing/details", headers=owner.headers)).json()["data"]
    assert read["taxId"] == "DE136695976"


async def test_invoice_html_is_printable_and_escaped(
    client: httpx.AsyncClient, billing_on: Settings, owner: Account, admin: Account
) -> None:
    await client.post("/v1/billing/details", json=DETAILS, headers=owner.headers)
    plan = await create_plan(client, admin, name="Pro <script>", pricePerMailbox=1234)
    await grant(client, admin, owner.workspace_id, 5000)
    await subscribe(client, owner, plan["id"], 2)
    [invoice] = (await client.get("/v1/billing/invoices", headers=owner.headers)).json()["data"]
    assert invoice["billTo"]["taxId"] == "DE136695976"
    assert invoice["htmlUrl"] == f"/v1/billing/invoices/{invoice['id']}.html"
    page = await client.get(invoice["htmlUrl"], headers=owner.headers)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert f"Invoice {invoice['number']}" in html
    assert "USD 24.68" in html
    assert "USD 12.34" in html
    assert "Acme &lt;b&gt;GmbH&lt;/b&gt;" in html
    assert "<b>GmbH" not in html
    assert "Pro &lt;script&gt;" in html
    assert "<script>" not in html
    assert "DE136695976" in html
    one = await client.get(f"/v1/billing/invoices/{invoice['id']}", headers=owner.headers)
    assert one.json()["data"]["number"] == invoice["number"]
    other = await client.get(invoice["htmlUrl"], headers=admin.headers)
    assert other.status_code == 404, "another workspace's invoice"


async def test_billing_events_reach_webhooks(
    client: httpx.AsyncClient,
    billing_on: Settings,
    owner: Account,
    admin: Account,
) -> None:
    with HttpReceiver() as receiver:
        registered = await client.post(
            "/v1/webhooks",
            json={
                "url": receiver.url(),
                "eventTypes": ["subscription.created", "wallet.credited", "invoice.created"],
            },
            headers=owner.headers,
        )
        assert registered.status_code == 201, registered.text
        plan = await create_plan(client, admin, pricePerMailbox=100)
        await grant(client, admin, owner.workspace_id, 300)
        await subscribe(client, owner, plan["id"], 3)
        received = await receiver.wait_for(3)
    by_type = {request.payload["type"]: request.payload["data"] for request in received}
    assert set(by_type) == {"wallet.credited", "invoice.created", "subscription.created"}
    assert by_type["wallet.credited"]["amount"] == 300
    assert by_type["wallet.credited"]["kind"] == "credit"
    assert by_type["invoice.created"]["total"] == 300
    assert by_type["subscription.created"]["quantity"] == 3
    assert by_type["subscription.created"]["planId"] == plan["id"]
