"""Connect domains to zones hosted on PowerDNS, and check them with live lookups."""

from __future__ import annotations

import base64
from typing import Any

import dns.asyncresolver
import httpx
import pytest

from mailfleet.dns.resolver import make_resolver
from tests.conftest import Account
from tests.domains.conftest import NAMESERVERS, connect, detail, dns_check, record
from tests.servers.powerdns import PowerDnsServer


@pytest.fixture
def pdns_resolver(powerdns: PowerDnsServer) -> dns.asyncresolver.Resolver:
    return make_resolver([powerdns.nameserver], timeout=2.0)


async def txt(resolver: dns.asyncresolver.Resolver, name: str) -> list[list[bytes]]:
    answer = await resolver.resolve(name, "TXT")
    return sorted(list(rdata.strings) for rdata in answer)


async def test_connect_self_hosted_domain_is_served_and_passes_the_check(
    client: httpx.AsyncClient,
    owner: Account,
    powerdns: PowerDnsServer,
    pdns_resolver: dns.asyncresolver.Resolver,
) -> None:
    data = await connect(client, owner, "Mail-Example.TEST.")
    assert data["name"] == "mail-example.test"
    assert data["status"] == "pending"
    assert data["dnsProvider"] == "mailfleet"
    assert data["nameservers"] == NAMESERVERS
    assert powerdns.zones() == ["mail-example.test"]

    domain = await detail(client, owner, data["id"])
    [key] = domain["dkim"]
    assert key["status"] == "active"
    assert key["selector"].startswith("mf2")
    assert "PRIVATE" not in str(domain)

    # What PowerDNS serves is what Mailfleet stored.
    mx = await pdns_resolver.resolve("mail-example.test", "MX")
    assert [(r.preference, r.exchange.to_text()) for r in mx] == [(10, "mail.mail-example.test.")]
    assert await txt(pdns_resolver, "mail-example.test") == [[b"v=spf1 mx ~all"]]
    assert await txt(pdns_resolver, "_dmarc.mail-example.test") == [[b"v=DMARC1; p=quarantine"]]
    [dkim_strings] = await txt(pdns_resolver, f"{key['selector']}._domainkey.mail-example.test")
    assert len(dkim_strings) == 2  # a 2048-bit key is longer than one 255-byte string
    assert b"".join(dkim_strings).decode() == f"v=DKIM1; k=rsa; p={key['publicKey']}"
    assert len(base64.b64decode(key["publicKey"])) > 256
    ns = await pdns_resolver.resolve("mail-example.test", "NS")
    assert sorted(r.target.to_text() for r in ns) == [f"{n}." for n in NAMESERVERS]
    dkim_record = record(domain, "dkim")
    assert dkim_record["strings"] == [s.decode() for s in dkim_strings]

    result = await dns_check(client, owner, data["id"])
    assert {name: result[name]["status"] for name in ("mx", "spf", "dkim", "dmarc")} == {
        "mx": "pass",
        "spf": "pass",
        "dkim": "pass",
        "dmarc": "pass",
    }, result
    assert result["status"] == "active"
    assert result["overall"] == "pass"
    assert result["dkim"]["details"]["matchingSelectors"] == [key["selector"]]

    assignable = await client.get("/v1/domains/assignable", headers=owner.headers)
    assert [d["name"] for d in assignable.json()["data"]] == ["mail-example.test"]
    listed = await client.get("/v1/domains?status=active", headers=owner.headers)
    assert listed.json()["pagination"] == {"total": 1, "limit": 100, "skip": 0, "hasMore": False}


async def test_names_are_validated_and_idna_normalised(
    client: httpx.AsyncClient, owner: Account
) -> None:
    response = await client.post(
        "/v1/domains/connect",
        json={"domains": ["bücher.test", "Other.test", "faß.test"], "dnsProvider": "manual"},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    names = [(d["name"], d["unicodeName"]) for d in response.json()["data"]]
    # faß is not fass (IDNA 2003 mapped one to the other: another domain).
    assert names == [
        ("xn--bcher-kva.test", "bücher.test"),
        ("other.test", "other.test"),
        ("xn--fa-hia.test", "faß.test"),
    ]

    cases: list[tuple[dict[str, Any], str]] = [
        ({"domains": ["ok.test", "not a domain"]}, "domains.1"),
        ({"domain": "http://x.test/path"}, "domain"),
        ({"domain": "localhost"}, "domain"),
        ({"domain": "1.2.3.4"}, "domain"),
        ({"domain": "xn--zz.com"}, "domain"),
        ({"domains": ["dup.test", "DUP.test."]}, "domains.1"),
        ({"domain": "x.test", "dnsProvider": "route53"}, "dnsProvider"),
        ({"domain": "x.test", "mailProvider": "yahoo"}, "mailProvider"),
        ({"domain": "x.test", "colour": "blue"}, "colour"),
        ({}, "body"),
    ]
    for body, field in cases:
        response = await client.post("/v1/domains/connect", json=body, headers=owner.headers)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert error["details"][0]["field"] == field, (body, error)

    again = await client.post(
        "/v1/domains/connect",
        json={"domain": "BÜCHER.test", "dnsProvider": "manual"},
        headers=owner.headers,
    )
    assert again.status_code == 409
    assert again.json()["error"]["domains"] == ["xn--bcher-kva.test"]


async def test_records_are_validated_and_written_through_powerdns(
    client: httpx.AsyncClient, owner: Account, pdns_resolver: dns.asyncresolver.Resolver
) -> None:
    domain = await connect(client, owner, "records.test", mailProvider="google")
    url = f"/v1/domains/{domain['id']}/dns-records"

    async def post(body: dict[str, Any]) -> httpx.Response:
        return await client.post(url, json=body, headers=owner.headers)

    created = await post({"type": "A", "name": "www", "content": "192.0.2.10", "ttl": 300})
    assert created.status_code == 201, created.text
    www = created.json()["data"]
    assert (www["name"], www["host"], www["managed"]) == ("www.records.test", "www", False)
    answer = await pdns_resolver.resolve("www.records.test", "A")
    assert [r.address for r in answer] == ["192.0.2.10"]

    long_text = "k=" + "x" * 600
    response = await post({"type": "TXT", "name": "long", "content": long_text})
    assert response.status_code == 201
    assert [len(s) for s in response.json()["data"]["strings"]] == [255, 255, 92]
    assert await txt(pdns_resolver, "long.records.test") == [
        [long_text[:255].encode(), long_text[255:510].encode(), long_text[510:].encode()]
    ]

    good: list[dict[str, Any]] = [
        {"type": "SRV", "name": "_sip._tcp", "content": "5 5060 sip.records.test", "priority": 10},
        {"type": "CAA", "name": "@", "content": "0 issue letsencrypt.org"},
        {"type": "AAAA", "name": "v6", "content": "2001:DB8::1"},
        {"type": "MX", "name": "sub", "content": "mx.records.test", "priority": 5},
        {"type": "NS", "name": "delegated", "content": "ns.elsewhere.test"},
        {"type": "CNAME", "name": "alias", "content": "www.records.test."},
    ]
    for body in good:
        response = await post(body)
        assert response.status_code == 201, (body, response.text)
    caa = await pdns_resolver.resolve("records.test", "CAA")
    assert [r.to_text() for r in caa] == ['0 issue "letsencrypt.org"']
    srv = await pdns_resolver.resolve("_sip._tcp.records.test", "SRV")
    assert [r.to_text() for r in srv] == ["10 5 5060 sip.records.test."]

    bad: list[tuple[dict[str, Any], str, str]] = [
        ({"type": "A", "name": "x", "content": "999.1.1.1"}, "content", "IPv4"),
        ({"type": "AAAA", "name": "x", "content": "192.0.2.1"}, "content", "IPv6"),
        ({"type": "MX", "name": "@", "content": "mx.test"}, "priority", "required"),
        ({"type": "MX", "content": "mx.test", "priority": 70000}, "priority", "65535"),
        ({"type": "A", "name": "x", "content": "192.0.2.1", "priority": 1}, "priority", "MX"),
        ({"type": "CNAME", "name": "@", "content": "x.test"}, "name", "apex"),
        ({"type": "CNAME", "name": "www", "content": "x.test"}, "name", "CNAME"),
        ({"type": "A", "name": "alias", "content": "192.0.2.1"}, "name", "CNAME"),
        ({"type": "TXT", "name": "@", "content": "v=spf1 -all"}, "content", "two SPF"),
        ({"type": "TXT", "name": "@", "content": "a\nb"}, "content", "control"),
        ({"type": "PTR", "name": "x", "content": "x.test"}, "type", "type must be"),
        ({"type": "A", "name": "x.other.test.", "content": "192.0.2.1"}, "name", "outside"),
        ({"type": "A", "name": "x", "content": "192.0.2.1", "ttl": 5}, "ttl", "between"),
        ({"type": "SRV", "name": "sip", "content": "1 2 x.test", "priority": 1}, "name", "_"),
        ({"type": "CAA", "content": '0 issue x"y'}, "content", "CAA"),
        ({"type": "NS", "name": "@", "content": "ns.x.test"}, "name", "apex NS"),
        ({"type": "A", "name": "www", "content": "192.0.2.10"}, "content", "already"),
    ]
    for body, field, words in bad:
        response = await post(body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["details"][0]["field"] == field, (body, error)
        assert words in error["message"], (body, error)

    update = await client.put(
        f"{url}/{www['id']}",
        json={"type": "A", "name": "www", "content": "192.0.2.11"},
        headers=owner.headers,
    )
    assert update.status_code == 200, update.text
    answer = await pdns_resolver.resolve("www.records.test", "A")
    assert [r.address for r in answer] == ["192.0.2.11"]
    deleted = await client.delete(f"{url}/{www['id']}", headers=owner.headers)
    assert deleted.status_code == 200
    with pytest.raises(dns.resolver.NXDOMAIN):
        await pdns_resolver.resolve("www.records.test", "A")
    missing = await client.delete(f"{url}/{www['id']}", headers=owner.headers)
    assert missing.status_code == 404

    # The apex NS set belongs to the provider.
    listed = (await client.get(url, headers=owner.headers)).json()["data"]
    ns = next(r for r in listed if r["purpose"] == "ns")
    refused = await client.delete(f"{url}/{ns['id']}", headers=owner.headers)
    assert refused.status_code == 409


async def test_google_domain_records_and_console_instructions(
    client: httpx.AsyncClient, owner: Account, powerdns: PowerDnsServer
) -> None:
    # Google's SPF include must resolve for the check: host it on the same server.
    powerdns.create_zone(
        "google.com",
        [
            {
                "name": "_spf.google.com.",
                "type": "TXT",
                "ttl": 300,
                "changetype": "REPLACE",
                "records": [{"content": '"v=spf1 ip4:192.0.2.0/24 ~all"', "disabled": False}],
            }
        ],
    )
    domain = await connect(client, owner, "gsuite.test", mailProvider="google")
    info = await detail(client, owner, domain["id"])
    assert record(info, "mx")["content"] == "smtp.google.com"
    assert record(info, "mx")["priority"] == 1
    assert record(info, "spf")["content"] == "v=spf1 include:_spf.google.com ~all"
    [step] = info["setupInstructions"]
    assert step["name"] == "google._domainkey.gsuite.test"
    assert "Admin console" in step["instructions"]
    assert domain["id"] in step["instructions"]

    first = await dns_check(client, owner, domain["id"])
    assert first["spf"]["status"] == "pass", first["spf"]
    assert first["dkim"]["status"] == "fail"
    assert first["status"] == "pending"

    # The customer pastes the key from Google's console; the check then wants that key.
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    der = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    value = "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()
    response = await client.post(
        f"/v1/domains/{domain['id']}/dns-records",
        json={"type": "TXT", "name": "google._domainkey", "content": value},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    second = await dns_check(client, owner, domain["id"])
    assert second["dkim"]["status"] == "pass", second["dkim"]
    assert second["status"] == "active"
    assert {c["check"] for c in second["changes"]} == {"dkim"}
