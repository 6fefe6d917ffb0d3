"""Cloudflare through its official SDK, against a fake API on loopback; the exact
requests are those of Cloudflare's API documents."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Account
from tests.domains.fake_cloudflare import PREFIX, FakeCloudflare

ACCOUNT = "a" * 32


async def save_token(client: httpx.AsyncClient, owner: Account, fake: FakeCloudflare) -> None:
    response = await client.post(
        "/v1/cloudflare", json={"apiToken": fake.token, "accountId": ACCOUNT}, headers=owner.headers
    )
    assert response.status_code == 200, response.text


async def test_credentials_are_verified_and_never_shown(
    client: httpx.AsyncClient, owner: Account, cloudflare: FakeCloudflare
) -> None:
    cloudflare.add_zone("listed.test")
    bad = await client.post(
        "/v1/cloudflare", json={"apiToken": "wrong-token-" + "y" * 20}, headers=owner.headers
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "DNS_PROVIDER_REJECTED"
    assert "Invalid access token" in bad.json()["error"]["message"]
    empty = await client.get("/v1/cloudflare", headers=owner.headers)
    assert empty.json()["data"]["configured"] is False

    cloudflare.clear_requests()
    response = await client.post(
        "/v1/cloudflare", json={"apiToken": cloudflare.token}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    assert cloudflare.token not in response.text
    [verify, zones] = cloudflare.requests
    assert verify.route == f"GET {PREFIX}/user/tokens/verify"
    assert verify.headers["authorization"] == f"Bearer {cloudflare.token}"
    assert zones.route == f"GET {PREFIX}/zones"
    assert zones.query == {"page": "1", "per_page": "100"}

    listed = await client.get("/v1/cloudflare", headers=owner.headers)
    assert cloudflare.token not in listed.text
    data = listed.json()["data"]
    assert data["configured"] is True
    assert [(z["name"], z["connected"]) for z in data["zones"]] == [("listed.test", False)]


async def test_connect_merges_spf_and_writes_records_in_one_batch(
    client: httpx.AsyncClient, owner: Account, cloudflare: FakeCloudflare
) -> None:
    zone = cloudflare.add_zone(
        "cf.test",
        [
            {"name": "cf.test", "type": "MX", "content": "mx.old.test", "priority": 10, "ttl": 1},
            {
                "name": "cf.test",
                "type": "TXT",
                "content": "v=spf1 include:mailgun.org ~all",
                "ttl": 1,
            },
            {"name": "www.cf.test", "type": "A", "content": "192.0.2.7", "ttl": 300},
        ],
    )
    old_mx, old_spf = list(zone.records)[:2]
    await save_token(client, owner, cloudflare)
    cloudflare.clear_requests()

    response = await client.post(
        "/v1/cloudflare",
        json={"domain": "cf.test", "mailProvider": "google"},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    [connected] = response.json()["data"]["domains"]
    assert (connected["name"], connected["dnsProvider"]) == ("cf.test", "cloudflare")
    assert connected["nameservers"] == ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"]

    routes = cloudflare.routes()
    assert routes[:3] == [
        f"GET {PREFIX}/zones",
        f"GET {PREFIX}/zones/{zone.id}/dns_records",
        f"POST {PREFIX}/zones/{zone.id}/dns_records/batch",
    ]
    assert cloudflare.requests[0].query == {"name": "cf.test"}
    assert cloudflare.requests[1].query == {"page": "1", "per_page": "100"}
    batch: dict[str, Any] = cloudflare.requests[2].body
    assert batch == {
        "deletes": [{"id": old_mx}],
        "puts": [
            {
                "id": old_spf,
                "name": "cf.test",
                "type": "TXT",
                "ttl": 300,
                "content": "v=spf1 include:mailgun.org include:_spf.google.com ~all",
            }
        ],
        "posts": [
            {
                "name": "cf.test",
                "type": "MX",
                "ttl": 3600,
                "content": "smtp.google.com",
                "priority": 1,
            },
            {
                "name": "_dmarc.cf.test",
                "type": "TXT",
                "ttl": 3600,
                "content": "v=DMARC1; p=quarantine",
            },
        ],
    }
    contents = sorted((r["type"], r["content"]) for r in zone.records.values())
    assert ("MX", "smtp.google.com") in contents
    assert ("MX", "mx.old.test") not in contents

    domain_id = connected["id"]
    url = f"/v1/domains/{domain_id}/dns-records"
    cloudflare.clear_requests()
    created = await client.post(
        url,
        json={"type": "SRV", "name": "_sip._tcp", "content": "5 5060 sip.cf.test", "priority": 10},
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    [post] = cloudflare.requests
    assert post.route == f"POST {PREFIX}/zones/{zone.id}/dns_records"
    assert post.body == {
        "name": "_sip._tcp.cf.test",
        "type": "SRV",
        "ttl": 3600,
        "data": {"priority": 10, "weight": 5, "port": 5060, "target": "sip.cf.test"},
    }
    record = created.json()["data"]
    assert record["providerRecordId"] in zone.records

    cloudflare.clear_requests()
    updated = await client.put(
        f"{url}/{record['id']}",
        json={"type": "SRV", "name": "_sip._tcp", "content": "5 5061 sip.cf.test", "priority": 10},
        headers=owner.headers,
    )
    assert updated.status_code == 200, updated.text
    [put] = cloudflare.requests
    assert put.route == f"PUT {PREFIX}/zones/{zone.id}/dns_records/{record['providerRecordId']}"
    assert put.body["data"]["port"] == 5061

    # A refusal leaves both sides as they were.
    cloudflare.fail_next_write = (9005, "Content for A record is invalid.")
    before = len(zone.records)
    refused = await client.post(
        url, json={"type": "A", "name": "new", "content": "192.0.2.9"}, headers=owner.headers
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "DNS_PROVIDER_REJECTED"
    assert "Content for A record is invalid." in refused.json()["error"]["message"]
    listed = (await client.get(url, headers=owner.headers)).json()["data"]
    assert "new.cf.test" not in [r["name"] for r in listed]
    assert len(zone.records) == before

    cloudflare.clear_requests()
    deleted = await client.delete(f"{url}/{record['id']}", headers=owner.headers)
    assert deleted.status_code == 200
    assert cloudflare.routes() == [
        f"DELETE {PREFIX}/zones/{zone.id}/dns_records/{record['providerRecordId']}"
    ]

    cloudflare.clear_requests()
    ns = await client.get(f"/v1/domains/{domain_id}/nameservers", headers=owner.headers)
    assert ns.json()["data"]["nameservers"] == ["ada.ns.cloudflare.com", "bob.ns.cloudflare.com"]
    assert cloudflare.routes() == [f"GET {PREFIX}/zones/{zone.id}"]

    # Removing the domain leaves the customer's Cloudflare zone alone.
    cloudflare.clear_requests()
    removed = await client.delete(f"/v1/domains/{domain_id}", headers=owner.headers)
    assert removed.status_code == 200
    assert cloudflare.routes() == []


async def test_connect_creates_a_missing_zone_under_the_account(
    client: httpx.AsyncClient, owner: Account, cloudflare: FakeCloudflare
) -> None:
    await save_token(client, owner, cloudflare)
    cloudflare.clear_requests()
    response = await client.post(
        "/v1/domains/connect",
        json={"domain": "fresh.test", "dnsProvider": "cloudflare", "mailProvider": "zoho"},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    create = cloudflare.requests[1]
    assert create.route == f"POST {PREFIX}/zones"
    assert create.body == {"account": {"id": ACCOUNT}, "name": "fresh.test", "type": "full"}
    [zone] = cloudflare.zones.values()
    assert sorted(r["content"] for r in zone.records.values() if r["type"] == "MX") == [
        "mx.zoho.com",
        "mx2.zoho.com",
        "mx3.zoho.com",
    ]


async def test_cloudflare_needs_saved_credentials(
    client: httpx.AsyncClient, owner: Account, cloudflare: FakeCloudflare
) -> None:
    response = await client.post(
        "/v1/domains/connect",
        json={"domain": "x.test", "dnsProvider": "cloudflare"},
        headers=owner.headers,
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "dnsProvider"
    assert cloudflare.requests == []
