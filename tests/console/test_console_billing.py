"""The console's billing actions through the billing services: a top-up opens Stripe
Checkout (faked on loopback), a manual payment a superuser records, subscribing,
canceling and keeping a subscription, errors in the form, members refused."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from mailfleet.db import Database
from mailfleet.models import Payment
from tests.billing.conftest import (  # noqa: F401
    admin,
    billing_on,
    create_plan,
    fake_stripe,
    grant,
)
from tests.billing.fake_stripe import FakeStripe
from tests.conftest import Account, make_account
from tests.console.test_console_http import sign_in


def _forms(html: str) -> set[str]:
    return set(re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', html))


async def test_top_up_opens_stripe_checkout(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    fake_stripe: FakeStripe,  # noqa: F811
) -> None:
    token = await sign_in(client, owner)
    page = await client.get("/billing")
    assert "/billing/top-up" in _forms(page.text)
    assert "Pay by card" in page.text

    answer = await client.post("/billing/top-up", data={"csrf_token": token, "amount": "25.50"})

    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("https://checkout.stripe.com/")
    [checkout] = fake_stripe.posts("/v1/checkout/sessions")
    assert checkout.form["line_items[0][price_data][unit_amount]"] == "2550"
    assert checkout.form["success_url"] == "http://mailfleet.test/billing?paid=1"
    assert checkout.form["cancel_url"] == "http://mailfleet.test/billing"
    async with database.transaction() as session:
        [payment] = list(await session.scalars(select(Payment)))
    assert (payment.amount, payment.status, payment.workspace_id) == (
        2550,
        "pending",
        owner.workspace_id,
    )
    back = await client.get("/billing?paid=1")
    assert "credited as soon as the payment provider confirms" in back.text
    assert "<strong data-balance>USD 0.00</strong>" in back.text


async def test_a_bad_amount_is_shown_in_the_form(
    client: httpx.AsyncClient,
    owner: Account,
    fake_stripe: FakeStripe,  # noqa: F811
) -> None:
    token = await sign_in(client, owner)
    for amount in ("lots", "1.234", "0", "-5"):
        answer = await client.post("/billing/top-up", data={"csrf_token": token, "amount": amount})
        assert answer.status_code == 400, (amount, answer.text)
        assert "data-form-error>Amount" in answer.text, amount
    assert fake_stripe.posts("/v1/checkout/sessions") == []


async def test_manual_payments_are_recorded_by_a_superuser_only(
    client: httpx.AsyncClient,
    owner: Account,
    admin: Account,  # noqa: F811
    billing_on: object,  # noqa: F811
) -> None:
    token = await sign_in(client, owner)
    refused = await client.post("/billing/top-up", data={"csrf_token": token, "amount": "10"})
    assert refused.status_code == 403
    assert "recorded by an administrator" in refused.text
    assert 'value="10"' in refused.text

    client.cookies.clear()
    token = await sign_in(client, admin)
    recorded = await client.post(
        "/billing/top-up", data={"csrf_token": token, "amount": "10", "note": "wire 42"}
    )
    assert recorded.status_code == 303
    page = await client.get(recorded.headers["location"])
    assert "<strong data-balance>USD 10.00</strong>" in page.text
    assert "USD 10.00 recorded" in page.text


async def test_subscribe_cancel_and_keep(
    client: httpx.AsyncClient,
    owner: Account,
    admin: Account,  # noqa: F811
    billing_on: object,  # noqa: F811
) -> None:
    plan = await create_plan(client, admin, name="Starter", pricePerMailbox=300)
    token = await sign_in(client, owner)
    page = await client.get("/billing")
    assert f'<option value="{plan["id"]}"' in page.text

    broke = await client.post(
        "/billing/subscriptions", data={"csrf_token": token, "plan_id": plan["id"], "quantity": "2"}
    )
    assert broke.status_code == 402
    assert "data-form-error>" in broke.text
    # The subscription row written before the charge failed is not kept.
    assert (await client.get("/v1/subscriptions", headers=owner.headers)).json()["data"] == []
    assert f'<option value="{plan["id"]}"' in broke.text
    too_many = await client.post(
        "/billing/subscriptions", data={"csrf_token": token, "plan_id": plan["id"], "quantity": "x"}
    )
    assert too_many.status_code == 400
    assert "Mailboxes" in too_many.text

    await grant(client, admin, owner.workspace_id, 1000)
    made = await client.post(
        "/billing/subscriptions", data={"csrf_token": token, "plan_id": plan["id"], "quantity": "2"}
    )
    assert made.status_code == 303, made.text
    [subscription] = (await client.get("/v1/subscriptions", headers=owner.headers)).json()["data"]
    assert (subscription["quantity"], subscription["status"]) == (2, "active")
    page = await client.get("/billing")
    assert "<strong data-balance>USD 4.00</strong>" in page.text
    # An invoice for the first period, linked to its printable page.
    [invoice] = (await client.get("/v1/billing/invoices", headers=owner.headers)).json()["data"]
    assert f'href="/billing/invoices/{invoice["id"]}"' in page.text
    printable = await client.get(f"/billing/invoices/{invoice['id']}")
    assert invoice["number"] in printable.text
    # One live subscription at a time: no second subscribe form.
    assert "/billing/subscriptions" not in _forms(page.text)

    cancel = f"/billing/subscriptions/{subscription['id']}/cancel"
    assert cancel in _forms(page.text)
    assert (await client.post(cancel, data={"csrf_token": token})).status_code == 303
    api = await client.get(f"/v1/subscriptions/{subscription['id']}", headers=owner.headers)
    assert api.json()["data"]["cancelAtPeriodEnd"] is True
    page = await client.get("/billing")
    assert "data-ends>(ends at the period's end)<" in page.text

    keep = f"/billing/subscriptions/{subscription['id']}/resume"
    assert keep in _forms(page.text)
    assert (await client.post(keep, data={"csrf_token": token})).status_code == 303
    api = await client.get(f"/v1/subscriptions/{subscription['id']}", headers=owner.headers)
    assert api.json()["data"]["cancelAtPeriodEnd"] is False


async def test_members_and_viewers_see_no_controls_and_are_refused(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    admin: Account,  # noqa: F811
    billing_on: object,  # noqa: F811
) -> None:
    plan = await create_plan(client, admin)
    await grant(client, admin, owner.workspace_id, 1000)
    subscribed = await client.post(
        "/v1/subscriptions", json={"planId": plan["id"], "quantity": 1}, headers=owner.headers
    )
    assert subscribed.status_code == 201
    subscription_id = subscribed.json()["data"]["id"]
    for role in ("member", "viewer"):
        person = await make_account(database, f"{role}@example.test")
        added = await client.post(
            f"/v1/workspaces/{owner.workspace_id}/members",
            json={"email": person.email, "role": role},
            headers=owner.headers,
        )
        assert added.status_code == 201
        client.cookies.clear()
        token = await sign_in(client, person)
        await client.post(
            "/workspace", data={"csrf_token": token, "workspace_id": owner.workspace_id}
        )
        page = await client.get("/billing")
        assert page.status_code == 200
        assert "<strong data-balance>USD 7.00</strong>" in page.text
        assert _forms(page.text) <= {"/workspace", "/logout"}, (role, _forms(page.text))
        for path, data in (
            ("/billing/top-up", {"amount": "10"}),
            ("/billing/subscriptions", {"plan_id": plan["id"]}),
            (f"/billing/subscriptions/{subscription_id}/cancel", {}),
        ):
            forged = await client.post(path, data={"csrf_token": token, **data})
            assert forged.status_code == 403, (role, path)
    api = await client.get(f"/v1/subscriptions/{subscription_id}", headers=owner.headers)
    assert api.json()["data"]["cancelAtPeriodEnd"] is False
