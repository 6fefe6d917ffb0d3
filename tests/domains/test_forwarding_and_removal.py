"""Domain forwarding answered by Mailfleet itself, and removing domains."""

from __future__ import annotations

import httpx
from sqlalchemy import delete

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.models import Mailbox
from tests.conftest import Account
from tests.domains.conftest import PUBLIC_IP, connect, detail
from tests.servers.powerdns import PowerDnsServer


async def test_forwarding_redirects_by_host_and_the_api_keeps_working(
    client: httpx.AsyncClient, owner: Account, powerdns: PowerDnsServer, settings: Settings
) -> None:
    domain = await connect(client, owner, "fwd.test", dnsProvider="mailfleet")
    await client.post(
        f"/v1/domains/{domain['id']}/dns-records",
        json={"type": "A", "name": "@", "content": "192.0.2.1"},
        headers=owner.headers,
    )
    url = f"/v1/domains/{domain['id']}/forwarding"
    response = await client.post(
        url,
        json={"url": "https://target.test/landing", "permanent": False, "keepPath": True},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["forwarding"] == {
        "url": "https://target.test/landing",
        "permanent": False,
        "keepPath": True,
    }
    apex = [
        r
        for r in (await detail(client, owner, domain["id"]))["records"]
        if r["name"] == "fwd.test" and r["type"] == "A"
    ]
    assert [(r["content"], r["purpose"]) for r in apex] == [(PUBLIC_IP, "forwarding")]
    answer = powerdns.api("GET", "/zones/fwd.test.").json()
    a_sets = [s for s in answer["rrsets"] if s["name"] == "fwd.test." and s["type"] == "A"]
    assert [r["content"] for r in a_sets[0]["records"]] == [PUBLIC_IP]

    redirected = await client.get(
        "/some/path?q=1", headers={"host": "FWD.test:8080"}, follow_redirects=False
    )
    assert redirected.status_code == 302
    assert redirected.headers["location"] == "https://target.test/landing/some/path?q=1"
    assert redirected.headers["x-request-id"]
    # The API answers on its own host as before.
    health = await client.get("/v1/health")
    assert health.status_code == 200

    response = await client.post(url, json={"url": "https://target.test/"}, headers=owner.headers)
    assert response.status_code == 200
    permanent = await client.get("/x", headers={"host": "fwd.test"}, follow_redirects=False)
    assert (permanent.status_code, permanent.headers["location"]) == (301, "https://target.test/")

    for body in [
        {"url": "ftp://target.test"},
        {"url": "https://fwd.test/loop"},
        {"url": "https://user:pw@target.test"},
        {"url": "not a url"},
    ]:
        response = await client.post(url, json=body, headers=owner.headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["details"][0]["field"] == "url"

    removed = await client.delete(url, headers=owner.headers)
    assert removed.status_code == 200
    assert removed.json()["data"]["forwarding"] is None
    passed = await client.get("/x", headers={"host": "fwd.test"}, follow_redirects=False)
    assert passed.status_code == 404  # no longer forwarded: the API answers
    assert not [
        r for r in (await detail(client, owner, domain["id"]))["records"] if r["type"] == "A"
    ]

    settings.public_ip = None
    response = await client.post(url, json={"url": "https://t.test"}, headers=owner.headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "NOT_CONFIGURED"


async def test_a_domain_in_use_cannot_be_removed(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    powerdns: PowerDnsServer,
) -> None:
    domain = await connect(client, owner, "used.test")
    async with database.transaction() as session:
        session.add(
            Mailbox(
                workspace_id=owner.workspace_id,
                email="a@used.test",
                domain="used.test",
                display_name="a",
                smtp_host="smtp.used.test",
                smtp_port=587,
                smtp_secure=True,
                smtp_username="a@used.test",
                smtp_password_enc=keyring.encrypt("x"),
                imap_host="imap.used.test",
                imap_port=993,
                imap_secure=True,
                imap_username="a@used.test",
                imap_password_enc=keyring.encrypt("x"),
            )
        )
    assert (await detail(client, owner, domain["id"]))["mailboxCount"] == 1
    listed = await client.get("/v1/domains", headers=owner.headers)
    assert listed.json()["data"][0]["mailboxCount"] == 1

    refused = await client.delete(f"/v1/domains/{domain['id']}", headers=owner.headers)
    assert refused.status_code == 409
    assert refused.json()["error"]["mailboxCount"] == 1
    assert powerdns.zones() == ["used.test"]

    async with database.transaction() as session:
        await session.execute(delete(Mailbox))
    removed = await client.delete(f"/v1/domains/{domain['id']}", headers=owner.headers)
    assert removed.status_code == 200
    assert powerdns.zones() == []
    gone = await client.get(f"/v1/domains/{domain['id']}", headers=owner.headers)
    assert gone.status_code == 404


async def test_mailfleet_hosting_needs_its_settings(
    client: httpx.AsyncClient, owner: Account, settings: Settings
) -> None:
    settings.pdns_api_url = None
    response = await client.post(
        "/v1/domains/connect", json={"domain": "x.test"}, headers=owner.headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "dnsProvider"
