"""Breaking a domain's DNS and seeing the check say why; DKIM rotation; DMARC;
nameserver propagation; resolver timeouts; the periodic recheck."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailfleet import jobs
from mailfleet.config import Settings
from mailfleet.domains.workflows import CHECK_QUEUE, enqueue_due_dns_checks, recheck_domain_dns
from tests.conftest import Account
from tests.domains.conftest import NAMESERVERS, connect, detail, dns_check, record
from tests.servers.dnsserver import LocalDnsServer, SilentDnsServer
from tests.servers.powerdns import PowerDnsServer


async def test_two_spf_records_then_eleven_lookups_fail_with_the_reason(
    client: httpx.AsyncClient, owner: Account, powerdns: PowerDnsServer
) -> None:
    domain = await connect(client, owner, "spf.test")
    assert (await dns_check(client, owner, domain["id"]))["spf"]["status"] == "pass"

    # Someone adds a second SPF record at the DNS server, behind Mailfleet's back.
    powerdns.replace("spf.test", "spf.test", "TXT", ['"v=spf1 mx ~all"', '"v=spf1 a -all"'])
    result = await dns_check(client, owner, domain["id"])
    assert result["spf"]["status"] == "fail"
    assert "multiple SPF records" in result["spf"]["message"]
    assert result["status"] == "misconfigured"
    assert result["changes"] == [{"check": "spf", "from": "pass", "to": "fail"}]

    # Through the API: eleven includes, each a real SPF record in the zone.
    url = f"/v1/domains/{domain['id']}/dns-records"
    for index in range(1, 12):
        response = await client.post(
            url,
            json={"type": "TXT", "name": f"_s{index}", "content": "v=spf1 -all"},
            headers=owner.headers,
        )
        assert response.status_code == 201, response.text
    spf = record(await detail(client, owner, domain["id"]), "spf")
    includes = " ".join(f"include:_s{i}.spf.test" for i in range(1, 12))
    response = await client.put(
        f"{url}/{spf['id']}",
        json={"type": "TXT", "name": "@", "content": f"v=spf1 {includes} ~all"},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    result = await dns_check(client, owner, domain["id"])
    assert result["spf"]["status"] == "fail"
    assert "needs 11 DNS lookups, more than the limit of 10" in result["spf"]["message"]
    assert result["spf"]["details"]["lookupCount"] == 11

    history = await client.get(
        f"/v1/domains/{domain['id']}/dns-check/history", headers=owner.headers
    )
    changes = [entry["changes"] for entry in history.json()["data"]]
    # Newest first; the eleven-lookup check changed nothing (still "fail"), so no entry.
    assert changes[0] == [{"check": "spf", "from": "pass", "to": "fail"}]
    assert len(changes) == 2


async def test_dkim_mismatch_and_rotation_keeping_the_old_selector(
    client: httpx.AsyncClient, owner: Account, powerdns: PowerDnsServer
) -> None:
    domain = await connect(client, owner, "dkim.test")
    [old] = (await detail(client, owner, domain["id"]))["dkim"]
    name = old["recordName"]

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = other.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    wrong = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    powerdns.replace(
        "dkim.test",
        name,
        "TXT",
        [" ".join(f'"{wrong[i : i + 255]}"' for i in range(0, len(wrong), 255))],
    )
    result = await dns_check(client, owner, domain["id"])
    assert result["dkim"]["status"] == "fail"
    assert "DKIM key mismatch" in result["dkim"]["message"]

    # The DKIM record holding Mailfleet's key is changed by rotating only.
    dkim_row = record(await detail(client, owner, domain["id"]), "dkim")
    refused = await client.delete(
        f"/v1/domains/{domain['id']}/dns-records/{dkim_row['id']}", headers=owner.headers
    )
    assert refused.status_code == 409

    rotated = await client.post(f"/v1/domains/{domain['id']}/dkim/rotate", headers=owner.headers)
    assert rotated.status_code == 202, rotated.text
    new = rotated.json()["data"]
    assert new["status"] == "pending"
    assert new["selector"] == old["selector"] + "b"
    again = await client.post(f"/v1/domains/{domain['id']}/dkim/rotate", headers=owner.headers)
    assert again.status_code == 409

    # PowerDNS serves the new key at once; the next check sees it and switches over.
    await dns_check(client, owner, domain["id"])
    keys = {k["selector"]: k for k in (await detail(client, owner, domain["id"]))["dkim"]}
    assert keys[new["selector"]]["status"] == "active"
    assert keys[old["selector"]]["status"] == "retired"
    records = [r["name"] for r in (await detail(client, owner, domain["id"]))["records"]]
    assert name in records  # the old selector stays published for a grace period
    result = await dns_check(client, owner, domain["id"])
    assert result["dkim"]["status"] == "pass", result["dkim"]
    assert result["dkim"]["details"]["matchingSelectors"] == [new["selector"]]

    google = await connect(client, owner, "g.test", mailProvider="google")
    refused = await client.post(f"/v1/domains/{google['id']}/dkim/rotate", headers=owner.headers)
    assert refused.status_code == 409


async def test_dmarc_policy_is_validated_and_published(
    client: httpx.AsyncClient, owner: Account, powerdns: PowerDnsServer
) -> None:
    domain = await connect(client, owner, "dmarc.test")
    url = f"/v1/domains/{domain['id']}/dmarc"
    response = await client.post(
        url,
        json={
            "p": "reject",
            "sp": "quarantine",
            "pct": 100,
            "rua": ["Reports@Dmarc.test"],
            "ruf": "mailto:forensic@dmarc.test",
            "adkim": "s",
            "aspf": "r",
        },
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    expected = (
        "v=DMARC1; p=reject; sp=quarantine; pct=100; rua=mailto:reports@dmarc.test; "
        "ruf=mailto:forensic@dmarc.test; adkim=s; aspf=r"
    )
    assert response.json()["data"]["content"] == expected
    info = await detail(client, owner, domain["id"])
    assert [r["content"] for r in info["records"] if r["purpose"] == "dmarc"] == [expected]
    assert info["dmarc"]["p"] == "reject"
    result = await dns_check(client, owner, domain["id"])
    assert result["dmarc"]["status"] == "pass"
    assert result["dmarc"]["found"] == [expected]

    for body, field in [
        ({"p": "bogus"}, "p"),
        ({"p": "none", "pct": 101}, "pct"),
        ({"p": "none", "rua": ["not-an-address"]}, "rua"),
        ({"p": "none", "adkim": "x"}, "adkim"),
        ({}, "p"),
    ]:
        response = await client.post(url, json=body, headers=owner.headers)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["details"][0]["field"] == field


async def test_nameservers_pending_then_propagated_per_resolver(
    client: httpx.AsyncClient,
    owner: Account,
    settings: Settings,
    powerdns: PowerDnsServer,
    dns_zone: LocalDnsServer,
) -> None:
    domain = await connect(client, owner, "ns.test")
    response = await client.get(f"/v1/domains/{domain['id']}/nameservers", headers=owner.headers)
    assert response.json()["data"]["nameservers"] == NAMESERVERS

    # The dnslib server stands in for a public resolver that still has the old delegation.
    settings.dns_nameservers = [dns_zone.nameserver]
    url = f"/v1/domains/{domain['id']}/nameservers/verify"
    result = (await client.get(url, headers=owner.headers)).json()["data"]
    assert result["status"] == "pending"
    assert result["resolvers"][0]["status"] == "pending"

    dns_zone.set_records("ns.test", "NS", ["ns1.mailfleet.test", "ns.old-host.test"])
    result = (await client.get(url, headers=owner.headers)).json()["data"]
    assert result["status"] == "partial"
    assert "missing ns2.mailfleet.test" in result["resolvers"][0]["message"]

    settings.dns_nameservers = [dns_zone.nameserver, powerdns.nameserver]
    dns_zone.set_records("ns.test", "NS", NAMESERVERS)
    result = (await client.get(url, headers=owner.headers)).json()["data"]
    assert result["status"] == "propagated"
    assert [r["status"] for r in result["resolvers"]] == ["propagated", "propagated"]
    assert result["resolvers"][1]["found"] == NAMESERVERS
    assert (await detail(client, owner, domain["id"]))["nameserverStatus"] == "propagated"

    manual = await connect(client, owner, "manual.test", dnsProvider="manual")
    response = await client.get(
        f"/v1/domains/{manual['id']}/nameservers/verify", headers=owner.headers
    )
    assert response.status_code == 409


@pytest.fixture
def silent_resolver(settings: Settings) -> Iterator[None]:
    with SilentDnsServer() as server:
        previous = settings.dns_nameservers, settings.dns_timeout
        settings.dns_nameservers, settings.dns_timeout = [server.nameserver], 0.5
        yield
        settings.dns_nameservers, settings.dns_timeout = previous


async def test_a_resolver_timeout_is_unknown_and_changes_nothing(
    client: httpx.AsyncClient, owner: Account, settings: Settings
) -> None:
    domain = await connect(client, owner, "slow.test")
    assert (await dns_check(client, owner, domain["id"]))["status"] == "active"
    with SilentDnsServer() as server:
        settings.dns_nameservers, settings.dns_timeout = [server.nameserver], 0.5
        try:
            result = await dns_check(client, owner, domain["id"])
            verify = await client.get(
                f"/v1/domains/{domain['id']}/nameservers/verify", headers=owner.headers
            )
        finally:
            settings.dns_timeout = 1.0
    assert {result[n]["status"] for n in ("mx", "spf", "dkim", "dmarc")} == {"unknown"}
    assert "missing" not in str(result).lower()
    assert result["status"] == "active"  # an unknown never demotes a domain
    assert verify.json()["data"]["status"] == "unknown"
    assert (await detail(client, owner, domain["id"]))["nameserverStatus"] is None


async def wait_checked(
    client: httpx.AsyncClient, owner: Account, domain_id: str, after: str | None
) -> dict[str, object]:
    for _ in range(200):
        info = await detail(client, owner, domain_id)
        if info["dnsCheckedAt"] and info["dnsCheckedAt"] != after:
            return info
        await asyncio.sleep(0.05)
    raise AssertionError("the recheck did not run")


async def test_periodic_recheck_records_changes(
    client: httpx.AsyncClient, owner: Account, powerdns: PowerDnsServer
) -> None:
    domain = await connect(client, owner, "periodic.test")
    assert await enqueue_due_dns_checks() == 1
    first = await wait_checked(client, owner, domain["id"], None)
    assert first["status"] == "active"
    # Just checked: not due again until MAILFLEET_DNS_RECHECK_INTERVAL has passed.
    assert await enqueue_due_dns_checks() == 0

    powerdns.replace("periodic.test", "periodic.test", "TXT", ['"v=spf1 mx ~all"', '"v=spf1 -all"'])
    await jobs.enqueue(
        CHECK_QUEUE, recheck_domain_dns, domain["id"], workflow_id=f"test-{domain['id']}"
    )
    second = await wait_checked(client, owner, domain["id"], str(first["dnsCheckedAt"]))
    assert second["status"] == "misconfigured"
    history = await client.get(
        f"/v1/domains/{domain['id']}/dns-check/history", headers=owner.headers
    )
    latest = history.json()["data"][0]
    assert latest["changes"] == [{"check": "spf", "from": "pass", "to": "fail"}]
    assert latest["overall"] == "fail"
