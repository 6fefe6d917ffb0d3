"""Buying domains: Porkbun and Namecheap faked on loopback (tests/registrars/fakes.py),
zones hosted on a real PowerDNS on loopback, billing and Stripe as billing's tests
have them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mailfleet.config import Settings
from mailfleet.domains import purchases
from tests.billing.conftest import admin, billing_on, fake_stripe  # noqa: F401
from tests.conftest import Account
from tests.registrars.fakes import (
    NAMECHEAP_IP,
    NAMECHEAP_KEY,
    NAMECHEAP_USER,
    PORKBUN_KEY,
    PORKBUN_SECRET,
    FakeNamecheap,
    FakePorkbun,
)
from tests.servers.powerdns import PowerDnsServer
from tests.webhooks.conftest import receiver  # noqa: F401

NAMESERVERS = ["ns1.mailfleet.test", "ns2.mailfleet.test"]
_SETTINGS = (
    "registrar",
    "porkbun_api_key",
    "porkbun_secret_key",
    "porkbun_api_url",
    "namecheap_api_user",
    "namecheap_api_key",
    "namecheap_client_ip",
    "namecheap_api_url",
    "domain_markup_percent",
    "dns_nameservers",
    "pdns_api_url",
    "pdns_api_key",
    "pdns_server_id",
    "nameservers",
    "cloudflare_api_url",
)


@pytest.fixture(scope="session")
def powerdns() -> Iterator[PowerDnsServer]:
    with PowerDnsServer() as server:
        yield server


@pytest.fixture
def registrar_settings(settings: Settings, powerdns: PowerDnsServer) -> Iterator[Settings]:
    """Zones on PowerDNS, names resolved there; every setting restored after the test."""
    saved = {name: getattr(settings, name) for name in _SETTINGS}
    settings.dns_nameservers = [powerdns.nameserver]
    settings.pdns_api_url = powerdns.api_url
    settings.pdns_api_key = powerdns.api_key
    settings.pdns_server_id = "localhost"
    settings.nameservers = list(NAMESERVERS)
    settings.domain_markup_percent = 0.0
    purchases.forget_quotes()
    yield settings
    for name, value in saved.items():
        setattr(settings, name, value)
    purchases.forget_quotes()
    powerdns.delete_all_zones()


@pytest.fixture
def porkbun(registrar_settings: Settings) -> Iterator[FakePorkbun]:
    with FakePorkbun() as fake:
        registrar_settings.registrar = "porkbun"
        registrar_settings.porkbun_api_key = PORKBUN_KEY
        registrar_settings.porkbun_secret_key = PORKBUN_SECRET
        registrar_settings.porkbun_api_url = fake.url
        yield fake
        fake.release_creates()


@pytest.fixture
def namecheap(registrar_settings: Settings) -> Iterator[FakeNamecheap]:
    with FakeNamecheap() as fake:
        registrar_settings.registrar = "namecheap"
        registrar_settings.namecheap_api_user = NAMECHEAP_USER
        registrar_settings.namecheap_api_key = NAMECHEAP_KEY
        registrar_settings.namecheap_client_ip = NAMECHEAP_IP
        registrar_settings.namecheap_api_url = f"{fake.url}/xml.response"
        yield fake


async def buy(
    client: httpx.AsyncClient, account: Account, names: list[str], **fields: Any
) -> httpx.Response:
    body = {"domains": names, "dnsProvider": "mailfleet", "mailProvider": "self-hosted", **fields}
    return await client.post("/v1/domains/purchase", json=body, headers=account.headers)


async def settled(client: httpx.AsyncClient, account: Account, order_id: str) -> dict[str, Any]:
    """The order once its workflow finished (completed), polled through the API."""
    for _ in range(600):
        response = await client.get(f"/v1/domains/orders/{order_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        order: dict[str, Any] = response.json()["data"]
        if order["status"] == "completed":
            return order
        await asyncio.sleep(0.1)
    raise AssertionError(f"order {order_id} did not finish: {order}")
