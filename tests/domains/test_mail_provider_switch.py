"""PUT /v1/domains/{id}/mail-provider: a connected domain's mail moves to another
provider. Its mail records are rewritten at PowerDNS (looked up live here), the
customer's own records stay, and a self-hosted domain with mailboxes stays put."""

from __future__ import annotations

from typing import Any

import dns.asyncresolver
import httpx
import pytest

from mailfleet.dns.resolver import make_resolver
from tests.conftest import Account
from tests.domains.conftest import connect, detail, dns_check
from tests.servers.powerdns import PowerDnsServer

CUSTOMER_DKIM = "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAcustomer"


@pytest.fixture
def resolver(powerdns: PowerDnsServer) -> dns.asyncresolver.Resolver:
    return make_resolver([powerdns.nameserver], timeout=2.0)


async def served(resolver: dns.asyncresolver.Resolver, name: str) -> dict[str, Any]:
    """What PowerDNS answers for the apex: MX as (preference, host), and TXT."""
    mx = await resolver.resolve(name, "MX", raise_on_no_answer=False)
    txt = await resolver.resolve(name, "TXT", raise_on_no_answer=False)
    return {
        "mx": sorted((r.preference, r.exchange.to_text()) for r in mx),
        "txt": sorted(b"".join(r.strings).decode() for r in txt),
    }


async def switch(
    client: httpx.AsyncClient, owner: Account, domain_id: str, provider: str
) -> httpx.Response:
    return await client.put(
        f"/v1/domains/{domain_id}/mail-provider",
        json={"mailProvider": provider},
        headers=owner.headers,
    )


def records(data: dict[str, Any], kind: str) -> list[str]:
    return sorted(r["content"] for r in data["records"] if r["type"] == kind)


async def test_google_to_self_hosted_and_back_keeps_the_customers_records(
    client: httpx.AsyncClient,
    owner: Account,
    resolver: dns.asyncresolver.Resolver,
) -> None:
    domain = await connect(client, owner, "switching.test", mailProvider="google")
    domain_id = domain["id"]
    info = await detail(client, owner, domain_id)
    [spf] = [r for r in info["records"] if r["purpose"] == "spf"]
    # The customer's own SPF mechanism and Google DKIM key, added after the connect.
    edited = await client.put(
        f"/v1/domains/{domain_id}/dns-records/{spf['id']}",
        json={"type": "TXT", "content": "v=spf1 ip4:198.51.100.7 include:_spf.google.com ~all"},
        headers=owner.headers,
    )
    assert edited.status_code == 200, edited.text
    added = await client.post(
        f"/v1/domains/{domain_id}/dns-records",
        json={"type": "TXT", "name": "google._domainkey", "content": CUSTOMER_DKIM},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text

    moved = await switch(client, owner, domain_id, "self-hosted")

    assert moved.status_code == 200, moved.text
    assert "now gets its mail from self-hosted (was google)" in moved.json()["message"]
    hosted = moved.json()["data"]
    assert hosted["mailProvider"] == "self-hosted"
    assert hosted["dnsCheckedAt"] is None
    [key] = hosted["dkim"]
    assert key["status"] == "active"
    assert "PRIVATE" not in moved.text
    assert records(hosted, "MX") == ["mail.switching.test"]
    assert await served(resolver, "switching.test") == {
        "mx": [(10, "mail.switching.test.")],
        "txt": ["v=spf1 ip4:198.51.100.7 mx ~all"],
    }
    ours = f"{key['selector']}._domainkey.switching.test"
    [dkim] = [r for r in hosted["records"] if r["name"] == ours]
    assert dkim["purpose"] == "dkim"
    assert any(r["name"] == "google._domainkey.switching.test" for r in hosted["records"])
    checked = await dns_check(client, owner, domain_id)
    assert {name: checked[name]["status"] for name in ("mx", "spf", "dkim")} == {
        "mx": "pass",
        "spf": "pass",
        "dkim": "pass",
    }, checked

    # Mailfleet's mail server takes the domain's mailboxes now; they pin it there.
    assigned = await client.post(
        f"/v1/domains/{domain_id}/mailboxes",
        json={"username": "ann", "firstName": "Ann"},
        headers=owner.headers,
    )
    assert assigned.status_code == 201, assigned.text
    [created] = assigned.json()["data"]["results"]
    refused = await switch(client, owner, domain_id, "google")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["hostedMailboxCount"] == 1
    assert (await detail(client, owner, domain_id))["mailProvider"] == "self-hosted"
    assert (await served(resolver, "switching.test"))["mx"] == [(10, "mail.switching.test.")]

    removed = await client.delete(f"/v1/mailboxes/{created['mailboxId']}", headers=owner.headers)
    assert removed.status_code == 200, removed.text
    back = await switch(client, owner, domain_id, "google")

    assert back.status_code == 200, back.text
    google = back.json()["data"]
    # Retired as a rotation retires a key: published through the grace, never signing.
    assert [(k["selector"], k["status"]) for k in google["dkim"]] == [(key["selector"], "retired")]
    assert any(r["name"] == ours for r in google["records"])
    assert any(r["name"] == "google._domainkey.switching.test" for r in google["records"])
    assert await served(resolver, "switching.test") == {
        "mx": [(1, "smtp.google.com.")],
        "txt": ["v=spf1 ip4:198.51.100.7 include:_spf.google.com ~all"],
    }
    assert google["setupInstructions"][0]["name"] == "google._domainkey.switching.test"

    again = await switch(client, owner, domain_id, "google")
    assert again.status_code == 200
    assert "already gets its mail from google" in again.json()["message"]

    # A provider of the customer's choosing: Google's MX and include go, theirs stay.
    custom = await switch(client, owner, domain_id, "custom")
    assert custom.status_code == 200, custom.text
    assert await served(resolver, "switching.test") == {
        "mx": [],
        "txt": ["v=spf1 ip4:198.51.100.7 ~all"],
    }

    # Hosted again: a fresh key, under a selector the zone never published.
    rehosted = await switch(client, owner, domain_id, "self-hosted")
    assert rehosted.status_code == 200, rehosted.text
    [fresh] = [k for k in rehosted.json()["data"]["dkim"] if k["status"] == "active"]
    assert fresh["selector"] != key["selector"]
    assert fresh["publicKey"] != key["publicKey"]


async def test_microsoft_to_zoho_and_bad_input(
    client: httpx.AsyncClient, owner: Account, resolver: dns.asyncresolver.Resolver
) -> None:
    domain = await connect(client, owner, "moving.test", mailProvider="microsoft")
    domain_id = domain["id"]
    before = await detail(client, owner, domain_id)
    assert records(before, "CNAME") == ["autodiscover.outlook.com"]

    moved = await switch(client, owner, domain_id, "zoho")

    assert moved.status_code == 200, moved.text
    zoho = moved.json()["data"]
    assert records(zoho, "CNAME") == []
    assert await served(resolver, "moving.test") == {
        "mx": [(10, "mx.zoho.com."), (20, "mx2.zoho.com."), (50, "mx3.zoho.com.")],
        "txt": ["v=spf1 include:zoho.com ~all"],
    }
    assert zoho["dkim"] == []
    assert [step["name"] for step in zoho["setupInstructions"]] == ["zmail._domainkey.moving.test"]

    bad = await switch(client, owner, domain_id, "gmail")
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["field"] == "mailProvider"
    missing = await switch(client, owner, "000000000000000000000000", "google")
    assert missing.status_code == 404
