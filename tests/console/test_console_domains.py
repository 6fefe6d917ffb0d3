"""The console's domain pages over HTTP: nameserver propagation, web forwarding,
hosted mailboxes, email forwarding, catch-all, deleting a domain, and buying
domains, each through the real services (zones on a loopback PowerDNS, the
registrar and Stripe faked at their HTTP boundary), and what a viewer may not do."""

from __future__ import annotations

import asyncio
import html
import re
from typing import Any

import httpx
from sqlalchemy import func, select

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.mailserver.passwords import verify_dovecot_hash
from mailfleet.models import DomainOrder, Mailbox
from tests.billing.conftest import admin, billing_on, fake_stripe, grant  # noqa: F401
from tests.billing.fake_stripe import FakeStripe
from tests.conftest import Account, HeldMailbox, make_account
from tests.console.test_console_http import sign_in
from tests.domains.conftest import PUBLIC_IP, connect, detail, pdns_settings, powerdns  # noqa: F401
from tests.registrars.conftest import porkbun, registrar_settings  # noqa: F401
from tests.registrars.fakes import FakePorkbun
from tests.servers.powerdns import PowerDnsServer


def post_forms(html: str) -> set[str]:
    return set(re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', html))


def alert(html: str) -> str:
    """The text of the page's error messages (beside a form, or flashed)."""
    return " ".join(re.findall(r'class="flash error" role="alert">([^<]*)<', html))


async def join(
    client: httpx.AsyncClient, owner: Account, database: Database, email: str, role: str
) -> str:
    """A new user with `role` in the owner's workspace, signed in there: the CSRF token."""
    account = await make_account(database, email)
    added = await client.post(
        f"/v1/workspaces/{owner.workspace_id}/members",
        json={"email": account.email, "role": role},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    token = await sign_in(client, account)
    switched = await client.post(
        "/workspace", data={"csrf_token": token, "workspace_id": owner.workspace_id}
    )
    assert switched.status_code == 303
    return token


async def hosted_mailboxes(
    client: httpx.AsyncClient, owner: Account, name: str
) -> list[dict[str, Any]]:
    response = await client.get(
        "/v1/mailboxes", params={"domain": name, "limit": 100}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


# Nameservers


async def test_domain_page_checks_nameserver_propagation(
    client: httpx.AsyncClient, owner: Account
) -> None:
    domain = await connect(client, owner, "ns-console.test")
    await sign_in(client, owner)

    page = await client.get(f"/domains/{domain['id']}")
    assert "ns1.mailfleet.test, ns2.mailfleet.test" in page.text
    assert "data-ns-status>not checked<" in page.text

    # htmx asks for the panel alone; PowerDNS (the resolver here) serves the zone.
    panel = await client.get(f"/domains/{domain['id']}/nameservers", headers={"hx-request": "1"})
    assert panel.status_code == 200
    assert panel.text.lstrip().startswith('<section id="nameservers"')
    assert "data-ns-status>propagated<" in panel.text
    assert "serves the expected nameservers" in panel.text
    assert (await detail(client, owner, domain["id"]))["nameserverStatus"] == "propagated"
    # Without JavaScript: the whole page, with the results in it.
    whole = await client.get(f"/domains/{domain['id']}/nameservers")
    assert "<h2>DNS records</h2>" in whole.text
    assert "serves the expected nameservers" in whole.text

    manual = await connect(client, owner, "ns-manual.test", dnsProvider="manual")
    page = await client.get(f"/domains/{manual['id']}")
    assert "Check propagation now" not in page.text
    refused = await client.get(f"/domains/{manual['id']}/nameservers")
    assert refused.status_code == 200
    assert "no delegation to verify" in alert(refused.text)


# Mail provider


async def test_moving_a_domains_mail_and_the_refusal_beside_the_form(
    client: httpx.AsyncClient, owner: Account
) -> None:
    domain = await connect(client, owner, "move-console.test", mailProvider="google")
    token = await sign_in(client, owner)
    url = f"/domains/{domain['id']}/mail-provider"
    page = await client.get(f"/domains/{domain['id']}")
    assert '<option value="google" selected>google</option>' in page.text
    assert "move-console.test gets its mail from google." in page.text

    moved = await client.post(url, data={"csrf_token": token, "mail_provider": "self-hosted"})
    assert moved.status_code == 303, moved.text
    assert (await detail(client, owner, domain["id"]))["mailProvider"] == "self-hosted"
    page = await client.get(moved.headers["location"])
    assert "now gets its mail from self-hosted" in page.text
    assert "data-mail-provider>self-hosted<" in page.text
    assert "gets its mail from google." not in page.text  # the hosted mailboxes' form
    assert 'action="/domains/{}/mailboxes"'.format(domain["id"]) in page.text

    made = await client.post(
        f"/domains/{domain['id']}/mailboxes",
        data={"csrf_token": token, "username": "ann", "first_name": "Ann"},
    )
    assert made.status_code == 200, made.text
    refused = await client.post(url, data={"csrf_token": token, "mail_provider": "zoho"})
    assert refused.status_code == 409
    assert "hosts 1 mailbox(es)" in alert(refused.text)
    assert 'id="mail-provider"' in refused.text
    assert (await detail(client, owner, domain["id"]))["mailProvider"] == "self-hosted"

    unknown = await client.post(url, data={"csrf_token": token, "mail_provider": "gmail"})
    assert unknown.status_code == 400
    assert "Mail provider" in alert(unknown.text)


# Web forwarding


async def test_web_forwarding_set_refused_and_removed(
    client: httpx.AsyncClient, owner: Account, settings: Settings
) -> None:
    domain = await connect(client, owner, "fwd-console.test")
    token = await sign_in(client, owner)
    url = f"/domains/{domain['id']}/forwarding"

    bad = await client.post(url, data={"csrf_token": token, "url": "https://fwd-console.test/x"})
    assert bad.status_code == 400
    assert "loop" in alert(bad.text)
    # The form comes back as typed.
    assert 'value="https://fwd-console.test/x"' in bad.text
    assert (await detail(client, owner, domain["id"]))["forwarding"] is None

    done = await client.post(
        url, data={"csrf_token": token, "url": "https://target.test/landing", "keep_path": "on"}
    )
    assert done.status_code == 303, done.text
    assert (await detail(client, owner, domain["id"]))["forwarding"] == {
        "url": "https://target.test/landing",
        "permanent": False,
        "keepPath": True,
    }
    redirected = await client.get(
        "/a/b", headers={"host": "fwd-console.test"}, follow_redirects=False
    )
    assert redirected.status_code == 302
    assert redirected.headers["location"] == "https://target.test/landing/a/b"
    page = await client.get(f"/domains/{domain['id']}")
    assert "data-forward-url>https://target.test/landing<" in page.text
    assert re.search(
        rf"<td[^>]*>{re.escape(PUBLIC_IP)}</td>.*?managed: forwarding", page.text, re.S
    )

    previous, settings.public_ip = settings.public_ip, None
    try:
        unconfigured = await client.post(url, data={"csrf_token": token, "url": "https://b.test"})
    finally:
        settings.public_ip = previous
    assert unconfigured.status_code == 409
    assert "MAILFLEET_PUBLIC_IP" in alert(unconfigured.text)

    removed = await client.post(url, data={"csrf_token": token, "action": "remove"})
    assert removed.status_code == 303
    assert (await detail(client, owner, domain["id"]))["forwarding"] is None
    again = await client.post(url, data={"csrf_token": token, "action": "remove"})
    assert again.status_code == 404
    assert "has no forwarding" in alert(again.text)


# The records editor


async def test_records_the_api_refuses_to_change_are_shown_read_only(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Save and Delete are offered on exactly the records the API would change: the
    nameserver records, the forwarding record and the DKIM key's record are shown
    read-only with the reason the API gives."""
    domain = await connect(client, owner, "locked-console.test")
    token = await sign_in(client, owner)
    forwarded = await client.post(
        f"/domains/{domain['id']}/forwarding",
        data={"csrf_token": token, "url": "https://target.test/"},
    )
    assert forwarded.status_code == 303, forwarded.text
    listed = await client.get(f"/v1/domains/{domain['id']}/dns-records", headers=owner.headers)
    records = listed.json()["data"]
    page = (await client.get(f"/domains/{domain['id']}")).text
    forms = post_forms(page)

    refused: dict[str, str] = {}
    for record in records:
        # The same values back: it changes nothing, and tells what the API allows.
        body = {key: record[key] for key in ("type", "name", "content", "ttl", "priority")}
        answer = await client.put(
            f"/v1/domains/{domain['id']}/dns-records/{record['id']}",
            json=body,
            headers=owner.headers,
        )
        assert answer.status_code in (200, 409), answer.text
        if answer.status_code == 409:
            refused[record["id"]] = answer.json()["error"]["message"]
    assert {r["purpose"] for r in records if r["id"] in refused} >= {"ns", "forwarding", "dkim"}
    assert len(refused) < len(records)

    for record in records:
        row = re.search(rf'<tr id="record-{record["id"]}">(.*?)</tr>', page, re.S)
        assert row is not None, record
        editable = f"/domains/{domain['id']}/records/{record['id']}" in forms
        if record["id"] in refused:
            assert not editable, record
            assert "<input" not in row.group(1)
            locked = re.search(r"data-locked>([^<]*)<", row.group(1))
            assert locked is not None
            assert refused[record["id"]] in html.unescape(locked.group(1))
        else:
            assert editable, record
            assert "data-locked" not in row.group(1)


# Hosted mail


async def test_hosted_mailboxes_added_refused_reset_and_deleted(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    domain = await connect(client, owner, "hosted-console.test")
    token = await sign_in(client, owner)
    url = f"/domains/{domain['id']}/mailboxes"

    made = await client.post(
        url, data={"csrf_token": token, "username": "Alice", "first_name": "Alice"}
    )
    assert made.status_code == 200, made.text
    shown = re.search(r"data-new-password>([^<]+)<", made.text)
    assert shown, made.text
    [mailbox] = await hosted_mailboxes(client, owner, "hosted-console.test")
    assert mailbox["email"] == "alice@hosted-console.test"
    assert mailbox["status"] == "active"
    # Shown that once: the page on its own never has it.
    page = await client.get(f"/domains/{domain['id']}")
    assert shown.group(1) not in page.text
    assert 'href="/mailboxes/{}">alice@hosted-console.test<'.format(mailbox["id"]) in page.text

    chosen = await client.post(
        url,
        data={
            "csrf_token": token,
            "username": "bo",
            "first_name": "Bo",
            "password": "a-long-password-1",
        },
    )
    assert chosen.status_code == 303
    duplicate = await client.post(
        url, data={"csrf_token": token, "username": "alice", "first_name": "Al"}
    )
    assert duplicate.status_code == 409
    assert "alice@hosted-console.test already exists" in alert(duplicate.text)
    invalid = await client.post(
        url, data={"csrf_token": token, "username": "no good@", "first_name": "X"}
    )
    assert invalid.status_code == 400
    assert "Username" in alert(invalid.text)
    assert 'value="no good@"' in invalid.text
    assert len(await hosted_mailboxes(client, owner, "hosted-console.test")) == 2

    reset = await client.post(f"{url}/{mailbox['id']}/password", data={"csrf_token": token})
    assert reset.status_code == 200
    renewed = re.search(r"data-new-password>([^<]+)<", reset.text)
    assert renewed
    assert renewed.group(1) != shown.group(1)
    async with database.transaction() as session:
        stored = await session.get(Mailbox, mailbox["id"])
        assert stored is not None
        assert stored.password_hash
        assert verify_dovecot_hash(stored.password_hash, renewed.group(1))
        assert not verify_dovecot_hash(stored.password_hash, shown.group(1))

    deleted = await client.post(f"{url}/{mailbox['id']}/delete", data={"csrf_token": token})
    assert deleted.status_code == 303
    remaining = await hosted_mailboxes(client, owner, "hosted-console.test")
    assert [m["email"] for m in remaining] == ["bo@hosted-console.test"]


async def test_email_forwarding_and_catch_all(client: httpx.AsyncClient, owner: Account) -> None:
    domain = await connect(client, owner, "routes-console.test")
    token = await sign_in(client, owner)
    base = f"/domains/{domain['id']}"
    for name in ("ann", "ben"):
        made = await client.post(
            f"{base}/mailboxes",
            data={"csrf_token": token, "username": name, "first_name": name.title()},
        )
        assert made.status_code == 200
    ann, ben = await hosted_mailboxes(client, owner, "routes-console.test")

    looping = await client.post(
        f"{base}/email-forwarding",
        data={"csrf_token": token, "forward_to": ann["email"], "keep_copy": "on"},
    )
    assert looping.status_code == 400
    assert "loop" in alert(looping.text)
    malformed = await client.post(
        f"{base}/email-forwarding", data={"csrf_token": token, "forward_to": "nobody"}
    )
    assert malformed.status_code == 400
    assert "Forward to" in alert(malformed.text)

    forwarded = await client.post(
        f"{base}/email-forwarding",
        data={"csrf_token": token, "forward_to": "team@example.com", "mailbox_ids": ben["id"]},
    )
    assert forwarded.status_code == 303
    routing = (await detail(client, owner, domain["id"]))["hostedMail"]
    assert routing["emailForwarding"] == [
        {"forwardTo": "team@example.com", "keepCopy": False, "mailboxIds": [ben["id"]]}
    ]
    page = await client.get(base)
    assert "data-forward-to>team@example.com<" in page.text

    stranger = await client.post(
        f"{base}/catch-all", data={"csrf_token": token, "destination": "x@routes-console.test"}
    )
    assert stranger.status_code == 400
    assert "back to itself" in alert(stranger.text)
    caught = await client.post(
        f"{base}/catch-all", data={"csrf_token": token, "destination": ann["email"]}
    )
    assert caught.status_code == 303
    routing = (await detail(client, owner, domain["id"]))["hostedMail"]
    assert routing["catchAll"] == {"destination": ann["email"]}

    stop = await client.post(
        f"{base}/email-forwarding",
        data={"csrf_token": token, "action": "remove", "mailbox_ids": ben["id"]},
    )
    assert stop.status_code == 303
    off = await client.post(f"{base}/catch-all", data={"csrf_token": token, "action": "remove"})
    assert off.status_code == 303
    routing = (await detail(client, owner, domain["id"]))["hostedMail"]
    assert routing == {"emailForwarding": [], "catchAll": None}


async def test_hosted_forms_on_a_domain_not_self_hosted(
    client: httpx.AsyncClient, owner: Account
) -> None:
    domain = await connect(client, owner, "google-console.test", mailProvider="google")
    token = await sign_in(client, owner)
    page = await client.get(f"/domains/{domain['id']}")
    assert "gets its mail from google" in page.text
    assert f"/domains/{domain['id']}/catch-all" not in post_forms(page.text)

    refused = await client.post(
        f"/domains/{domain['id']}/catch-all",
        data={"csrf_token": token, "destination": "a@example.com"},
    )
    assert refused.status_code == 409
    assert "not from Mailfleet" in alert(refused.text)


# Deleting a domain


async def test_deleting_a_domain_needs_its_name_and_no_mailbox(
    client: httpx.AsyncClient,
    owner: Account,
    held_mailbox: HeldMailbox,
    powerdns: PowerDnsServer,  # noqa: F811
) -> None:
    domain = await connect(client, owner, "gone-console.test")
    token = await sign_in(client, owner)
    url = f"/domains/{domain['id']}/delete"

    confirm = await client.get(url)
    assert "Type <strong>gone-console.test</strong> to confirm" in confirm.text
    wrong = await client.post(url, data={"csrf_token": token, "confirm": "other.test"})
    assert wrong.status_code == 400
    assert "to confirm" in alert(wrong.text)

    mailbox_id = await held_mailbox(owner.workspace_id, "held@gone-console.test")
    used = await client.post(url, data={"csrf_token": token, "confirm": "gone-console.test"})
    assert used.status_code == 409
    assert "remove them first" in alert(used.text)
    assert (await client.get(f"/v1/domains/{domain['id']}", headers=owner.headers)).is_success

    await client.delete(f"/v1/mailboxes/{mailbox_id}", headers=owner.headers)
    gone = await client.post(url, data={"csrf_token": token, "confirm": "GONE-console.test"})
    assert gone.status_code == 303
    assert gone.headers["location"] == "/domains"
    after = await client.get(f"/v1/domains/{domain['id']}", headers=owner.headers)
    assert after.status_code == 404
    assert powerdns.api("GET", "/zones/gone-console.test.").status_code == 404


# Buying domains


async def settled_page(client: httpx.AsyncClient, order_id: str) -> str:
    """The order's panel, polled as htmx does, once the order completed."""
    for _ in range(600):
        panel = await client.get(f"/domains/orders/{order_id}/progress")
        assert panel.status_code == 200
        if "data-order-status>completed<" in panel.text:
            return panel.text
        assert 'hx-trigger="every 2s"' in panel.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} did not complete: {panel.text}")


async def test_search_buy_and_follow_the_order(
    client: httpx.AsyncClient,
    owner: Account,
    porkbun: FakePorkbun,  # noqa: F811
    database: Database,
) -> None:
    porkbun.set_name("takenbrand.com", avail="no")
    token = await sign_in(client, owner)

    found = await client.get("/domains/buy", params={"query": "shopbrand", "tlds": "com,io"})
    assert found.status_code == 200
    assert re.search(r'data-result="shopbrand.com">.*?data-price>USD 9.68<', found.text, re.S)
    assert re.search(r'data-result="shopbrand.io">.*?data-price>USD 28.12<', found.text, re.S)
    assert 'data-suggestion="getshopbrand.com"' in found.text
    key = re.search(r'name="order_key" value="([^"]+)"', found.text)
    assert key

    form = {
        "csrf_token": token,
        "order_key": key.group(1),
        "years": "1",
        "domains": "shopbrand.com",
        "dns_provider": "mailfleet",
        "mail_provider": "self-hosted",
    }
    bought = await client.post("/domains/orders", data=form)
    assert bought.status_code == 303, bought.text
    location = bought.headers["location"]
    assert location.startswith("/domains/orders/")
    order_id = location.rsplit("/", 1)[1]
    # The same form sent twice (a double click): the same order, not a second one.
    twice = await client.post("/domains/orders", data=form)
    assert twice.headers["location"] == location

    panel = await settled_page(client, order_id)
    assert "hx-trigger" not in panel
    assert "data-item-status>connected<" in panel
    [item] = (await client.get(f"/v1/domains/orders/{order_id}", headers=owner.headers)).json()[
        "data"
    ]["items"]
    assert f'href="/domains/{item["domainId"]}">shopbrand.com<' in panel
    assert len(porkbun.posts("/domain/create/shopbrand.com")) == 1
    orders = await client.get("/domains/orders")
    assert f'href="/domains/orders/{order_id}"' in orders.text

    taken = await client.post(
        "/domains/orders",
        data={**form, "order_key": "another-key", "domains": "takenbrand.com"},
    )
    assert taken.status_code == 409
    assert "takenbrand.com" in alert(taken.text)
    none_ticked = await client.post(
        "/domains/orders", data={**form, "order_key": "third-key", "domains": ""}
    )
    assert none_ticked.status_code == 400
    assert "Tick at least one name" in alert(none_ticked.text)
    async with database.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(DomainOrder)) == 1


async def test_search_without_a_registrar_says_so(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await sign_in(client, owner)
    page = await client.get("/domains/buy", params={"query": "brand"})
    assert page.status_code >= 400
    assert "Buying domains is not configured" in alert(page.text)


async def test_an_order_the_wallet_cannot_cover_links_to_checkout(
    client: httpx.AsyncClient,
    owner: Account,
    porkbun: FakePorkbun,  # noqa: F811
    fake_stripe: FakeStripe,  # noqa: F811
    admin: Account,  # noqa: F811
) -> None:
    token = await sign_in(client, owner)
    bought = await client.post(
        "/domains/orders",
        data={"csrf_token": token, "domains": "paybrand.com", "dns_provider": "manual"},
    )
    assert bought.status_code == 303, bought.text
    order_page = await client.get(bought.headers["location"])
    assert "data-order-status>pending_payment<" in order_page.text
    assert "The wallet does not cover this order" in order_page.text
    pay = next(action for action in post_forms(order_page.text) if action.endswith("/pay"))

    checkout = await client.post(pay, data={"csrf_token": token})
    assert checkout.status_code == 303
    assert checkout.headers["location"].startswith("https://checkout.stripe.com/c/pay/cs_test_")
    [made] = fake_stripe.posts("/v1/checkout/sessions")
    assert made.form["line_items[0][price_data][unit_amount]"] == "968"
    assert made.form["success_url"].endswith(bought.headers["location"])
    assert porkbun.posts("/domain/create/") == []

    # A credit covers it before the checkout is paid: the order is charged and goes
    # on, and asking to pay again says so.
    await grant(client, admin, owner.workspace_id, 968)
    again = await client.post(pay, data={"csrf_token": token})
    assert again.status_code == 303
    assert again.headers["location"] == bought.headers["location"]
    page = await client.get(bought.headers["location"])
    assert re.search(r'class="flash notice" role="status">Order \w+ is not waiting', page.text)
    assert "data-order-status>pending_payment<" not in page.text
    panel = await settled_page(client, bought.headers["location"].rsplit("/", 1)[1])
    assert "data-item-status>connected<" in panel


async def test_a_member_searches_but_does_not_buy(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    porkbun: FakePorkbun,  # noqa: F811
) -> None:
    token = await join(client, owner, database, "member@example.test", "member")
    page = await client.get("/domains/buy", params={"query": "memberbrand"})
    assert 'data-result="memberbrand.com"' in page.text
    assert 'name="domains"' not in page.text
    assert post_forms(page.text) <= {"/workspace", "/logout"}
    assert "Only the workspace's owners and admins buy domains" in page.text
    refused = await client.post(
        "/domains/orders", data={"csrf_token": token, "domains": "memberbrand.com"}
    )
    assert refused.status_code == 403
    assert porkbun.posts("/domain/create/") == []


# Viewers


async def test_a_viewer_sees_no_controls_and_every_forged_post_is_refused(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    domain = await connect(client, owner, "viewed-console.test")
    await client.post(
        f"/v1/domains/{domain['id']}/mailboxes",
        json={"username": "vic", "firstName": "Vic"},
        headers=owner.headers,
    )
    [mailbox] = await hosted_mailboxes(client, owner, "viewed-console.test")
    token = await join(client, owner, database, "viewer@example.test", "viewer")

    base = f"/domains/{domain['id']}"
    for path in (base, "/domains", "/domains/buy", "/domains/orders"):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert post_forms(page.text) <= {"/workspace", "/logout"}, (path, post_forms(page.text))
    assert "Delete domain" not in (await client.get(base)).text
    assert (await client.get(f"{base}/delete")).status_code == 403

    forged = {
        f"{base}/forwarding": {"url": "https://target.test"},
        f"{base}/mailboxes": {"username": "eve", "first_name": "Eve"},
        f"{base}/mailboxes/{mailbox['id']}/delete": {},
        f"{base}/mailboxes/{mailbox['id']}/password": {},
        f"{base}/email-forwarding": {"forward_to": "eve@example.com"},
        f"{base}/catch-all": {"destination": "eve@example.com"},
        f"{base}/delete": {"confirm": "viewed-console.test"},
        "/domains/orders": {"domains": "viewerbrand.com"},
    }
    for path, data in forged.items():
        response = await client.post(path, data={"csrf_token": token, **data})
        assert response.status_code == 403, path
        assert "read-only" in response.text
    after = await detail(client, owner, domain["id"])
    assert after["forwarding"] is None
    assert after["hostedMail"] == {"emailForwarding": [], "catchAll": None}
    assert len(await hosted_mailboxes(client, owner, "viewed-console.test")) == 1
