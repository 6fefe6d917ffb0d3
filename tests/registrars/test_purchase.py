"""Buying domains through the API against the registrar fakes: the order, the wallet
debit and refunds adding up, bad input charging nothing, the payment link through
the fake Stripe, and bought names ending connected with their records on PowerDNS."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dns.asyncresolver
import httpx
import pytest
from sqlalchemy import func, select

from mailfleet.billing import ledger
from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.dns.resolver import make_resolver
from mailfleet.domains.purchase_workflows import requeue_unfinished_orders
from mailfleet.models import DomainOrder, DomainOrderItem
from mailfleet.models.billing import WalletEntry
from tests.billing.conftest import WEBHOOK_SECRET, assert_ledger_consistent, grant
from tests.billing.fake_stripe import FakeStripe, event, sign
from tests.conftest import Account
from tests.domains.fake_cloudflare import FakeCloudflare
from tests.jobs.ticks import clear_of_sweeper_ticks
from tests.registrars.conftest import NAMESERVERS, buy, settled
from tests.registrars.fakes import (
    NAMECHEAP_IP,
    NAMECHEAP_KEY,
    NAMECHEAP_USER,
    PORKBUN_KEY,
    PORKBUN_SECRET,
    FakeNamecheap,
    FakePorkbun,
)
from tests.servers.http_receiver import HttpReceiver
from tests.servers.powerdns import PowerDnsServer
from tests.webhooks.conftest import register

AUTH = {"apikey": PORKBUN_KEY, "secretapikey": PORKBUN_SECRET}
CONTACT = {
    "firstName": "Ada",
    "lastName": "Lovelace",
    "address1": "1 Analytical Way",
    "city": "London",
    "stateProvince": "London",
    "postalCode": "N1 7AA",
    "country": "GB",
    "phone": "+44.2071234567",
    "email": "ada@brand.example",
}


@pytest.fixture
def pdns_resolver(powerdns: PowerDnsServer) -> dns.asyncresolver.Resolver:
    return make_resolver([powerdns.nameserver], timeout=2.0)


async def order_count(database: Database) -> int:
    async with database.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(DomainOrder)) or 0)


async def test_bought_domain_ends_connected_on_powerdns(
    client: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    porkbun: FakePorkbun,
    owner: Account,
    powerdns: PowerDnsServer,
    pdns_resolver: dns.asyncresolver.Resolver,
) -> None:
    caplog.set_level(logging.INFO)
    for chatty in ("httpx", "httpcore"):
        caplog.set_level(logging.DEBUG, logger=chatty)
    response = await buy(client, owner, ["brandmail.com"], autoRenew=True)
    assert response.status_code == 201, response.text
    created = response.json()["data"]
    # Billing is off: nothing to pay, the order goes straight on.
    assert created["charged"] is False
    assert created["total"] == 968
    assert created["items"][0]["price"] == {"amount": 968, "currency": "USD", "years": 1}

    order = await settled(client, owner, created["id"])
    [item] = order["items"]
    assert item["status"] == "connected", item
    assert item["reason"] is None
    assert item["registeredAt"]
    assert item["connectedAt"]

    # Porkbun was asked exactly as its documents say: create with the quoted
    # pennies and agreeToTerms, then the nameservers of Mailfleet's zone.
    [create] = porkbun.posts("/domain/create/")
    assert create.path == "/domain/create/brandmail.com"
    assert create.body == {**AUTH, "cost": 968, "agreeToTerms": "yes"}
    assert create.headers["idempotency-key"] == f"mailfleet-{item['id']}"
    [update_ns] = porkbun.posts("/domain/updateNs/")
    assert update_ns.path == "/domain/updateNs/brandmail.com"
    assert update_ns.body == {**AUTH, "ns": NAMESERVERS}
    assert porkbun.nameservers["brandmail.com"] == NAMESERVERS
    # The first attempt asks nobody whether the name is ours: nothing was sent before.
    assert porkbun.posts("/domain/listAll") == []

    # Connected through the domain connect: the zone on PowerDNS, mail records, DKIM.
    domain = (await client.get(f"/v1/domains/{item['domainId']}", headers=owner.headers)).json()[
        "data"
    ]
    assert domain["name"] == "brandmail.com"
    assert domain["dnsProvider"] == "mailfleet"
    assert domain["mailProvider"] == "self-hosted"
    assert domain["dnsCheckedAt"] is not None
    assert powerdns.zones() == ["brandmail.com"]
    mx = await pdns_resolver.resolve("brandmail.com", "MX")
    assert [r.exchange.to_text() for r in mx] == ["mail.brandmail.com."]
    dmarc = await pdns_resolver.resolve("_dmarc.brandmail.com", "TXT")
    assert [b"".join(r.strings) for r in dmarc] == [b"v=DMARC1; p=quarantine"]
    [key] = domain["dkim"]
    dkim = await pdns_resolver.resolve(f"{key['selector']}._domainkey.brandmail.com", "TXT")
    assert b"".join(next(iter(dkim)).strings).decode().endswith(key["publicKey"])

    listed = await client.get("/v1/domains/orders", headers=owner.headers)
    assert [o["id"] for o in listed.json()["data"]] == [order["id"]]
    assert "brandmail.com" in caplog.text
    # The key pair travels in request bodies only: no log line (HTTP client debug
    # lines included) and no answer carries it.
    assert PORKBUN_KEY not in caplog.text
    assert PORKBUN_SECRET not in caplog.text
    assert PORKBUN_SECRET not in listed.text


async def test_wallet_debit_and_refund_add_up(
    client: httpx.AsyncClient,
    receiver: HttpReceiver,
    porkbun: FakePorkbun,
    billing_on: Settings,
    admin: Account,
    owner: Account,
    database: Database,
) -> None:
    billing_on.domain_markup_percent = 20.0
    await grant(client, admin, owner.workspace_id, 5000)
    webhook = await register(
        client,
        owner,
        receiver.url(),
        eventTypes=["domain.purchased", "domain.purchase_failed"],
    )
    receiver.secret = webhook["secret"]
    quote = await client.get(
        "/v1/domains/available", params={"domains": "brandhq.com,brand.co"}, headers=owner.headers
    )
    prices = {r["domain"]: r["price"]["amount"] for r in quote.json()["data"]["results"]}
    # 9.68 and 11.50 USD plus 20 %.
    assert prices == {"brandhq.com": 1162, "brand.co": 1380}
    # The registrar's price of brand.co changes between the quote and the purchase.
    porkbun.set_name("brand.co", price="14.00")

    response = await buy(
        client, owner, ["brandhq.com", "brand.co"], dnsProvider="manual", mailProvider="google"
    )
    assert response.status_code == 201, response.text
    created = response.json()["data"]
    assert created["charged"] is True
    assert created["total"] == 1162 + 1380
    assert created["status"] == "processing"

    order = await settled(client, owner, created["id"])
    items = {i["domain"]: i for i in order["items"]}
    assert items["brandhq.com"]["status"] == "connected"
    failed = items["brand.co"]
    assert failed["status"] == "failed"
    assert "price changed" in failed["reason"]
    # The new price, as the customer would pay it (markup included).
    assert failed["newPrice"] == {"amount": 1680, "currency": "USD", "years": 1}
    assert failed["refunded"] is True
    # Never bought at the new price: one create, for the other name.
    assert [c.path for c in porkbun.posts("/domain/create/")] == ["/domain/create/brandhq.com"]

    balance = await assert_ledger_consistent(client, owner, database)
    assert balance == 5000 - 1162
    async with database.transaction() as session:
        entries = list(
            await session.scalars(
                select(WalletEntry)
                .where(WalletEntry.workspace_id == owner.workspace_id)
                .order_by(WalletEntry.created_at, WalletEntry.id)
            )
        )
    assert [(e.kind, e.amount, e.idempotency_key) for e in entries] == [
        ("credit", 5000, entries[0].idempotency_key),
        ("charge", -2542, f"domain-order:{order['id']}"),
        ("refund", 1380, f"domain-refund:{failed['id']}"),
    ]

    received = await receiver.wait_for(2)
    assert all(r.verified for r in received)
    events = {r.payload["type"]: r.payload["data"] for r in received}
    assert events["domain.purchased"] == {
        "orderId": order["id"],
        "domain": "brandhq.com",
        "registrar": "porkbun",
        "years": 1,
        "amount": 1162,
        "currency": "USD",
    }
    assert events["domain.purchase_failed"]["domain"] == "brand.co"
    assert events["domain.purchase_failed"]["newPrice"] == 1680
    assert events["domain.purchase_failed"]["refunded"] is True
    assert PORKBUN_SECRET.encode() not in b"".join(r.body for r in received)

    # The same Idempotency-Key and body: the same order, charged once.
    key = {"Idempotency-Key": "order-1"}
    body = {"domains": ["brandteam.com"], "dnsProvider": "manual", "mailProvider": "google"}
    first = await client.post("/v1/domains/purchase", json=body, headers={**owner.headers, **key})
    assert first.status_code == 201, first.text
    again = await client.post("/v1/domains/purchase", json=body, headers={**owner.headers, **key})
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    other = await client.post(
        "/v1/domains/purchase",
        json={**body, "domains": ["brandteam.io"]},
        headers={**owner.headers, **key},
    )
    assert other.status_code == 400
    assert other.json()["error"]["details"][0]["field"] == "Idempotency-Key"
    await settled(client, owner, first.json()["data"]["id"])
    assert await assert_ledger_consistent(client, owner, database) == 5000 - 1162 - 1162


async def test_bad_input_names_the_name_and_charges_nothing(
    client: httpx.AsyncClient,
    porkbun: FakePorkbun,
    billing_on: Settings,
    admin: Account,
    owner: Account,
    database: Database,
) -> None:
    await grant(client, admin, owner.workspace_id, 300_000)
    porkbun.set_name("getbrand.com", price="2500.00", premium="yes")
    porkbun.owned.add("ownedbrand.com")
    cases: list[tuple[list[str], dict[str, Any], int, str]] = [
        (["not a domain"], {}, 400, "domains.0"),
        (["ok-brand.com", "brand.test"], {}, 400, "domains.1"),
        (["example.com"], {}, 400, "domains.0"),
        (["brand.xyz"], {}, 400, "domains.0"),
        (["ok-brand.com", "getbrand.com"], {}, 400, "domains.1"),
        ([f"brand{n}.com" for n in range(51)], {}, 400, "domains"),
        (["ok-brand.com", "ok-brand.com"], {}, 400, "domains.1"),
        (["ok-brand.com"], {"years": 2}, 400, "years"),
    ]
    for names, extra, status, field in cases:
        response = await buy(client, owner, names, **extra)
        assert response.status_code == status, (names, response.text)
        error = response.json()["error"]
        assert error["details"][0]["field"] == field, (names, error)
    # Taken at the registrar (by anyone, or by us outside Mailfleet): 409 naming it.
    taken = await buy(client, owner, ["ok-brand.com", "ownedbrand.com"])
    assert taken.status_code == 409
    assert taken.json()["error"]["domains"] == ["ownedbrand.com"]
    # Premium with allowPremium: bought at its price.
    premium = await buy(client, owner, ["getbrand.com"], allowPremium=True, dnsProvider="manual")
    assert premium.status_code == 201, premium.text
    assert premium.json()["data"]["total"] == 250000
    await settled(client, owner, premium.json()["data"]["id"])
    # A second purchase of a name Mailfleet holds: 409 naming it, nothing charged.
    again = await buy(client, owner, ["getbrand.com"], allowPremium=True)
    assert again.status_code == 409
    assert again.json()["error"]["domains"] == ["getbrand.com"]
    assert await order_count(database) == 1
    # Only the one order was charged: every refused request left the wallet alone.
    assert await assert_ledger_consistent(client, owner, database) == 300_000 - 250_000


async def test_payment_link_through_stripe_then_the_order_goes_on(
    client: httpx.AsyncClient,
    porkbun: FakePorkbun,
    fake_stripe: FakeStripe,
    owner: Account,
    database: Database,
) -> None:
    response = await buy(client, owner, ["paybrand.com"], dnsProvider="manual")
    assert response.status_code == 201, response.text
    created = response.json()["data"]
    assert created["status"] == "pending_payment"
    assert created["items"][0]["status"] == "pending_payment"
    assert porkbun.posts("/domain/create/") == []

    link = await client.get(
        "/v1/domains/payment-link",
        params={"orderId": created["id"], "successUrl": "https://app.example.com/paid"},
        headers=owner.headers,
    )
    assert link.status_code == 200, link.text
    payment = link.json()["data"]
    assert payment["amount"] == 968
    assert payment["checkoutUrl"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    [session] = fake_stripe.posts("/v1/checkout/sessions")
    assert session.form["line_items[0][price_data][unit_amount]"] == "968"
    # Asked again while it is open: the same checkout, not a second one.
    again = await client.get(
        "/v1/domains/payment-link", params={"orderId": created["id"]}, headers=owner.headers
    )
    assert again.json()["data"]["paymentId"] == payment["paymentId"]
    assert len(fake_stripe.posts("/v1/checkout/sessions")) == 1

    completed = event(
        "evt_domain_paid",
        "checkout.session.completed",
        {
            "id": payment["checkoutUrl"].rsplit("/", 1)[1],
            "object": "checkout.session",
            "mode": "payment",
            "payment_status": "paid",
            "status": "complete",
            "amount_total": 968,
            "currency": "usd",
            "customer": "cus_test_1",
            "client_reference_id": payment["paymentId"],
            "metadata": {"payment_id": payment["paymentId"], "workspace_id": owner.workspace_id},
        },
    )
    delivered = await client.post(
        "/v1/billing/stripe/webhook",
        content=completed,
        headers={
            "stripe-signature": sign(completed, WEBHOOK_SECRET),
            "content-type": "application/json",
        },
    )
    assert delivered.status_code == 200, delivered.text

    order = await settled(client, owner, created["id"])
    assert order["charged"] is True
    assert order["items"][0]["status"] == "connected"
    assert len(porkbun.posts("/domain/create/")) == 1
    # Paid 9.68, charged 9.68: the wallet is back where it was.
    assert await assert_ledger_consistent(client, owner, database) == 0
    paid_twice = await client.get(
        "/v1/domains/payment-link", params={"orderId": created["id"]}, headers=owner.headers
    )
    assert paid_twice.status_code == 409


async def test_namecheap_purchase_sends_the_documented_create(
    client: httpx.AsyncClient, namecheap: FakeNamecheap, owner: Account
) -> None:
    missing = await buy(client, owner, ["brand.com"], dnsProvider="manual")
    assert missing.status_code == 400
    assert missing.json()["error"]["details"][0]["field"] == "contact"

    response = await buy(
        client, owner, ["brand.com"], dnsProvider="manual", years=2, contact=CONTACT
    )
    assert response.status_code == 201, response.text
    order = await settled(client, owner, response.json()["data"]["id"])
    assert order["items"][0]["status"] == "connected", order
    assert order["total"] == 2056
    globals_ = {
        "ApiUser": NAMECHEAP_USER,
        "ApiKey": NAMECHEAP_KEY,
        "UserName": NAMECHEAP_USER,
        "ClientIp": NAMECHEAP_IP,
    }
    [create] = namecheap.commands("namecheap.domains.create")
    expected = {**globals_, "Command": "namecheap.domains.create", "DomainName": "brand.com"}
    expected["Years"] = "2"
    for role in ("Registrant", "Tech", "Admin", "AuxBilling"):
        expected.update(
            {
                f"{role}FirstName": "Ada",
                f"{role}LastName": "Lovelace",
                f"{role}Address1": "1 Analytical Way",
                f"{role}City": "London",
                f"{role}StateProvince": "London",
                f"{role}PostalCode": "N1 7AA",
                f"{role}Country": "GB",
                f"{role}Phone": "+44.2071234567",
                f"{role}EmailAddress": "ada@brand.example",
            }
        )
    expected.update({"AddFreeWhoisguard": "yes", "WGEnabled": "yes"})
    assert create.body == expected
    [set_custom] = namecheap.commands("namecheap.domains.dns.setCustom")
    assert set_custom.body == {
        **globals_,
        "Command": "namecheap.domains.dns.setCustom",
        "SLD": "brand",
        "TLD": "com",
        "Nameservers": ",".join(NAMESERVERS),
    }
    assert namecheap.commands("namecheap.domains.getList") == []


async def test_cloudflare_zone_nameservers_are_set_at_the_registrar(
    client: httpx.AsyncClient,
    porkbun: FakePorkbun,
    registrar_settings: Settings,
    owner: Account,
) -> None:
    with FakeCloudflare() as cloudflare:
        registrar_settings.cloudflare_api_url = cloudflare.base_url
        saved = await client.post(
            "/v1/cloudflare",
            json={"apiToken": cloudflare.token, "accountId": "a" * 32},
            headers=owner.headers,
        )
        assert saved.status_code == 200, saved.text
        response = await buy(
            client, owner, ["cloudbrand.com"], dnsProvider="cloudflare", mailProvider="zoho"
        )
        assert response.status_code == 201, response.text
        order = await settled(client, owner, response.json()["data"]["id"])
        [zone] = cloudflare.zones.values()
    assert order["items"][0]["status"] == "connected", order
    assert zone.name == "cloudbrand.com"
    assert sorted(r["content"] for r in zone.records.values() if r["type"] == "MX") == [
        "mx.zoho.com",
        "mx2.zoho.com",
        "mx3.zoho.com",
    ]
    # The registrar now delegates the name to the Cloudflare zone's nameservers.
    [update_ns] = porkbun.posts("/domain/updateNs/")
    assert update_ns.body == {**AUTH, "ns": zone.name_servers}


async def test_sweeper_settles_a_name_left_registering(
    client: httpx.AsyncClient, porkbun: FakePorkbun, owner: Account, database: Database
) -> None:
    """An order whose workflow never ran (its enqueue lost to a crash) with a name a
    create may have reached: the sweeper starts it, and the name is found ours at
    the registrar rather than bought again."""
    await clear_of_sweeper_ticks()
    async with database.transaction() as session:
        order = DomainOrder(
            workspace_id=owner.workspace_id,
            status="processing",
            registrar="porkbun",
            years=1,
            dns_provider="manual",
            mail_provider="google",
            auto_renew=False,
            total=968,
            currency="USD",
            charged=False,
        )
        session.add(order)
        await session.flush()
        session.add(
            DomainOrderItem(
                order_id=order.id,
                workspace_id=owner.workspace_id,
                name="lostbrand.com",
                unicode_name="lostbrand.com",
                status="registering",
                premium=False,
                cost=968,
                price=968,
                register_attempts=1,
                refunded=False,
            )
        )
        order_id = order.id
    porkbun.owned.add("lostbrand.com")
    assert await requeue_unfinished_orders() == 1
    settled_order = await settled(client, owner, order_id)
    assert settled_order["items"][0]["status"] == "connected"
    assert porkbun.posts("/domain/create/") == []
    assert len(porkbun.posts("/domain/listAll")) == 1


async def test_concurrent_purchases_of_a_name_charge_once(
    client: httpx.AsyncClient,
    porkbun: FakePorkbun,
    billing_on: Settings,
    admin: Account,
    owner: Account,
    database: Database,
) -> None:
    await grant(client, admin, owner.workspace_id, 5000)
    body = {"domains": ["racebrand.com"], "dnsProvider": "manual", "mailProvider": "google"}
    first, second = await asyncio.gather(
        client.post("/v1/domains/purchase", json=body, headers=owner.headers),
        client.post("/v1/domains/purchase", json=body, headers=owner.headers),
    )
    assert sorted([first.status_code, second.status_code]) == [201, 409], (
        first.text,
        second.text,
    )
    won = first if first.status_code == 201 else second
    lost = second if won is first else first
    assert lost.json()["error"]["domains"] == ["racebrand.com"]
    await settled(client, owner, won.json()["data"]["id"])
    assert len(porkbun.posts("/domain/create/")) == 1
    assert await order_count(database) == 1
    assert await assert_ledger_consistent(client, owner, database) == 5000 - 968


async def test_payment_link_for_an_order_the_wallet_covers_now_charges_it(
    client: httpx.AsyncClient,
    porkbun: FakePorkbun,
    fake_stripe: FakeStripe,
    owner: Account,
    database: Database,
) -> None:
    """Money that came in without charging the waiting order (its credit listener
    failed, say): the payment link charges the order instead, answers 409 saying
    so, and the charge stands although the answer is an error."""
    response = await buy(client, owner, ["coveredbrand.com"], dnsProvider="manual")
    created = response.json()["data"]
    assert created["status"] == "pending_payment"
    async with database.transaction() as session:
        account = await ledger.lock_account(session, owner.workspace_id, "usd")
        await ledger.post_entry(
            session,
            account,
            amount=5_000,
            kind="credit",
            description="credit whose listener did not run",
            key="test-credit-without-listener",
        )

    link = await client.get(
        "/v1/domains/payment-link", params={"orderId": created["id"]}, headers=owner.headers
    )
    assert link.status_code == 409, link.text
    assert link.json()["error"]["orderStatus"] != "pending_payment"
    assert fake_stripe.posts("/v1/checkout/sessions") == []
    order = await settled(client, owner, created["id"])
    assert order["charged"] is True
    assert len(porkbun.posts("/domain/create/")) == 1
    assert await assert_ledger_consistent(client, owner, database) == 5_000 - 968
