"""Stripe top-ups: the Checkout Session Mailfleet asks for, and the signed webhook
that credits the wallet exactly once per payment, however often it arrives."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from mailfleet.config import Settings
from mailfleet.db import Database
from tests.billing.conftest import WEBHOOK_SECRET, assert_ledger_consistent
from tests.billing.fake_stripe import FakeStripe, event, sign
from tests.conftest import Account

SUCCESS_URL = "https://app.example.test/billing/done"
CANCEL_URL = "https://app.example.test/billing"


async def start_topup(client: httpx.AsyncClient, owner: Account, amount: int) -> dict[str, Any]:
    response = await client.post(
        "/v1/wallet/balance",
        json={"amount": amount, "successUrl": SUCCESS_URL, "cancelUrl": CANCEL_URL},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def deliver(client: httpx.AsyncClient, payload: bytes, secret: str = WEBHOOK_SECRET) -> Any:
    return await client.post(
        "/v1/billing/stripe/webhook",
        content=payload,
        headers={"stripe-signature": sign(payload, secret), "content-type": "application/json"},
    )


def checkout_completed(event_id: str, payment: dict[str, Any], owner: Account) -> bytes:
    return event(
        event_id,
        "checkout.session.completed",
        {
            "id": "cs_test_2",
            "object": "checkout.session",
            "mode": "payment",
            "payment_status": "paid",
            "status": "complete",
            "amount_total": payment["amount"],
            "currency": "usd",
            "customer": "cus_test_1",
            "client_reference_id": payment["id"],
            "payment_intent": "pi_from_checkout",
            "metadata": {"payment_id": payment["id"], "workspace_id": owner.workspace_id},
        },
    )


async def test_topup_creates_a_checkout_session(
    client: httpx.AsyncClient, fake_stripe: FakeStripe, owner: Account
) -> None:
    topup = await start_topup(client, owner, 2500)
    payment = topup["payment"]
    assert payment["status"] == "pending"
    assert topup["balance"] == 0
    assert payment["checkoutUrl"] == "https://checkout.stripe.com/c/pay/cs_test_2"
    [customer] = fake_stripe.posts("/v1/customers")
    # No billing details yet: the user's email and the workspace's name.
    assert customer.form == {
        "email": owner.email,
        "name": "Default workspace",
        "metadata[workspace_id]": owner.workspace_id,
    }
    assert customer.headers["idempotency-key"] == f"mailfleet-customer-{owner.workspace_id}"
    [checkout] = fake_stripe.posts("/v1/checkout/sessions")
    assert checkout.form == {
        "mode": "payment",
        "customer": "cus_test_1",
        "client_reference_id": payment["id"],
        "line_items[0][price_data][currency]": "usd",
        "line_items[0][price_data][unit_amount]": "2500",
        "line_items[0][price_data][product_data][name]": "Mailfleet wallet top-up",
        "line_items[0][quantity]": "1",
        "payment_intent_data[setup_future_usage]": "off_session",
        "payment_intent_data[metadata][payment_id]": payment["id"],
        "payment_intent_data[metadata][workspace_id]": owner.workspace_id,
        "metadata[payment_id]": payment["id"],
        "metadata[workspace_id]": owner.workspace_id,
        "success_url": SUCCESS_URL,
        "cancel_url": CANCEL_URL,
    }
    assert checkout.headers["idempotency-key"] == f"mailfleet-checkout-{payment['id']}"
    assert checkout.headers["authorization"] == "Bearer sk_test_mailfleet"
    # The customer is remembered: a second top-up makes no new one.
    await start_topup(client, owner, 1000)
    assert len(fake_stripe.posts("/v1/customers")) == 1
    assert fake_stripe.posts("/v1/checkout/sessions")[1].form["customer"] == "cus_test_1"


async def test_topup_without_a_return_url_is_400(
    client: httpx.AsyncClient, fake_stripe: FakeStripe, owner: Account
) -> None:
    response = await client.post("/v1/wallet/balance", json={"amount": 100}, headers=owner.headers)
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "successUrl"
    assert fake_stripe.requests == []


async def test_webhook_credits_once_per_event_and_per_payment(
    client: httpx.AsyncClient, fake_stripe: FakeStripe, database: Database, owner: Account
) -> None:
    payment = (await start_topup(client, owner, 2500))["payment"]
    completed = checkout_completed("evt_checkout_1", payment, owner)
    first = await deliver(client, completed)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "outcome": "credited"}
    again = await deliver(client, completed)
    assert again.json() == {"received": True, "outcome": "duplicate"}
    assert await assert_ledger_consistent(client, owner, database) == 2500

    # The PaymentIntent's own event for the same payment saves the card, credits nothing.
    succeeded = event(
        "evt_intent_1",
        "payment_intent.succeeded",
        {
            "id": "pi_from_checkout",
            "object": "payment_intent",
            "amount": 2500,
            "amount_received": 2500,
            "currency": "usd",
            "customer": "cus_test_1",
            "payment_method": "pm_card_visa",
            "setup_future_usage": "off_session",
            "status": "succeeded",
            "metadata": {"payment_id": payment["id"], "workspace_id": owner.workspace_id},
        },
    )
    assert (await deliver(client, succeeded)).json()["outcome"] == "already_credited"
    wallet = (await client.get("/v1/wallet", headers=owner.headers)).json()["data"]
    assert wallet["hasPaymentMethod"] is True
    assert wallet["balance"] == 2500
    status = await client.get(f"/v1/billing/payments/{payment['id']}", headers=owner.headers)
    assert status.json()["data"]["status"] == "succeeded"
    invoices = (await client.get("/v1/billing/invoices", headers=owner.headers)).json()["data"]
    assert [(i["kind"], i["total"], i["paymentId"]) for i in invoices] == [
        ("topup", 2500, payment["id"])
    ]


async def test_simultaneous_redeliveries_credit_once(
    client: httpx.AsyncClient, fake_stripe: FakeStripe, database: Database, owner: Account
) -> None:
    payment = (await start_topup(client, owner, 900))["payment"]
    completed = checkout_completed("evt_race", payment, owner)
    answers = await asyncio.gather(*(deliver(client, completed) for _ in range(3)))
    outcomes = sorted(answer.json()["outcome"] for answer in answers)
    assert outcomes == ["credited", "duplicate", "duplicate"]
    assert await assert_ledger_consistent(client, owner, database) == 900


async def test_forged_or_stale_events_are_refused(
    client: httpx.AsyncClient, fake_stripe: FakeStripe, database: Database, owner: Account
) -> None:
    payment = (await start_topup(client, owner, 700))["payment"]
    completed = checkout_completed("evt_forged", payment, owner)
    forged = await deliver(client, completed, secret="whsec_someone_else")
    assert forged.status_code == 400
    assert forged.json()["error"]["details"][0]["field"] == "Stripe-Signature"
    unsigned = await client.post("/v1/billing/stripe/webhook", content=completed)
    assert unsigned.status_code == 400
    stale = await client.post(
        "/v1/billing/stripe/webhook",
        content=completed,
        headers={"stripe-signature": sign(completed, WEBHOOK_SECRET, timestamp=1_000_000)},
    )
    assert stale.status_code == 400
    tampered = completed.replace(b'"amount_total": 700', b'"amount_total": 70000')
    assert tampered != completed
    replay = await client.post(
        "/v1/billing/stripe/webhook",
        content=tampered,
        headers={"stripe-signature": sign(completed, WEBHOOK_SECRET)},
    )
    assert replay.status_code == 400
    assert await assert_ledger_consistent(client, owner, database) == 0
    # A real delivery after all that still credits.
    assert (await deliver(client, completed)).json()["outcome"] == "credited"


async def test_failed_and_unrelated_events(
    client: httpx.AsyncClient, fake_stripe: FakeStripe, database: Database, owner: Account
) -> None:
    payment = (await start_topup(client, owner, 700))["payment"]
    expired = event(
        "evt_expired",
        "checkout.session.expired",
        {
            "id": "cs_test_2",
            "object": "checkout.session",
            "metadata": {"payment_id": payment["id"]},
        },
    )
    assert (await deliver(client, expired)).json()["outcome"] == "failed"
    other = event("evt_other", "customer.created", {"id": "cus_x", "object": "customer"})
    assert (await deliver(client, other)).json()["outcome"] == "ignored"
    # Another product's payment on the same Stripe account: not ours, acknowledged.
    foreign = event(
        "evt_foreign",
        "checkout.session.completed",
        {"id": "cs_foreign", "mode": "payment", "payment_status": "paid", "metadata": {}},
    )
    assert (await deliver(client, foreign)).json()["outcome"] == "ignored"
    # One of ours not committed yet: 404, and not recorded, so Stripe's retry is applied.
    early = checkout_completed("evt_early", {"id": "6b0000000000000000000000", "amount": 5}, owner)
    early = early.replace(b'"cs_test_2"', b'"cs_early"')
    for _ in range(2):
        response = await deliver(client, early)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
    status = await client.get(f"/v1/billing/payments/{payment['id']}", headers=owner.headers)
    assert status.json()["data"]["status"] == "failed"
    assert await assert_ledger_consistent(client, owner, database) == 0


async def test_webhook_is_not_served_without_stripe(
    client: httpx.AsyncClient, billing_on: Settings
) -> None:
    payload = json.dumps({"id": "evt_1", "type": "x"}).encode()
    response = await client.post("/v1/billing/stripe/webhook", content=payload)
    assert response.status_code == 404
