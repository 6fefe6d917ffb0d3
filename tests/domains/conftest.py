"""Domain tests run against a real PowerDNS on loopback: Mailfleet hosts zones there
through its API, and the app's resolver asks it, so every record a test writes is
looked up for real. Cloudflare is a fake API server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mailfleet.config import Settings
from mailfleet.domains import forwarding
from tests.conftest import Account
from tests.domains.fake_cloudflare import FakeCloudflare
from tests.servers.powerdns import PowerDnsServer

NAMESERVERS = ["ns1.mailfleet.test", "ns2.mailfleet.test"]
PUBLIC_IP = "192.0.2.80"


@pytest.fixture(scope="session")
def powerdns() -> Iterator[PowerDnsServer]:
    with PowerDnsServer() as server:
        yield server


@pytest.fixture(autouse=True)
def pdns_settings(settings: Settings, powerdns: PowerDnsServer) -> Iterator[Settings]:
    """Point the app's resolver and DNS hosting at PowerDNS for one test, then restore."""
    names = (
        "dns_nameservers",
        "pdns_api_url",
        "pdns_api_key",
        "pdns_server_id",
        "nameservers",
        "public_ip",
        "cloudflare_api_url",
    )
    previous = {name: getattr(settings, name) for name in names}
    settings.dns_nameservers = [powerdns.nameserver]
    settings.pdns_api_url = powerdns.api_url
    settings.pdns_api_key = powerdns.api_key
    settings.pdns_server_id = "localhost"
    settings.nameservers = list(NAMESERVERS)
    settings.public_ip = PUBLIC_IP
    yield settings
    for name, value in previous.items():
        setattr(settings, name, value)
    powerdns.delete_all_zones()
    forwarding.table.invalidate()


@pytest.fixture
def cloudflare(settings: Settings) -> Iterator[FakeCloudflare]:
    with FakeCloudflare() as fake:
        settings.cloudflare_api_url = fake.base_url
        yield fake


async def connect(
    client: httpx.AsyncClient, account: Account, name: str, **fields: Any
) -> dict[str, Any]:
    body = {"domain": name, "dnsProvider": "mailfleet", "mailProvider": "self-hosted", **fields}
    response = await client.post("/v1/domains/connect", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"][0]
    return data


async def detail(client: httpx.AsyncClient, account: Account, domain_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/domains/{domain_id}", headers=account.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def dns_check(client: httpx.AsyncClient, account: Account, domain_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/domains/{domain_id}/dns-check", headers=account.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def record(data: dict[str, Any], purpose: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [r for r in data["records"] if r["purpose"] == purpose]
    assert len(found) == 1, (purpose, data["records"])
    return found[0]
