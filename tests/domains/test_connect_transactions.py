"""Domain connect talks to the DNS provider with no database transaction open: a
slow provider (up to 100 names a request, 20 s timeouts) must not lock other
writers out, which on SQLite means every other write in the whole server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from sqlalchemy import func, select

from mailfleet.db import Database
from mailfleet.dns.providers import DnsProviderError, OpenedZone
from mailfleet.dns.providers.pdns import PowerDnsProvider
from mailfleet.models import Domain
from tests.conftest import Account, HeldMailbox
from tests.servers.powerdns import PowerDnsServer

OpenZone = Callable[[PowerDnsProvider, str], Awaitable[OpenedZone]]


class GatedProvider:
    """PowerDNS whose open_zone waits, for one name, until the test lets it go on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
        self.name = name
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        original: OpenZone = PowerDnsProvider.open_zone

        async def open_zone(provider: PowerDnsProvider, zone: str) -> OpenedZone:
            if zone == self.name:
                self.entered.set()
                await self.release.wait()
            return await original(provider, zone)

        monkeypatch.setattr(PowerDnsProvider, "open_zone", open_zone)


async def domain_count(database: Database) -> int:
    async with database.transaction() as session:
        return await session.scalar(select(func.count()).select_from(Domain)) or 0


async def test_other_writers_go_on_while_a_provider_call_is_in_flight(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    held_mailbox: HeldMailbox,
    powerdns: PowerDnsServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = GatedProvider(monkeypatch, "slow.test")
    body = {
        "domains": ["fast.test", "slow.test"],
        "dnsProvider": "mailfleet",
        "mailProvider": "self-hosted",
    }
    connecting = asyncio.create_task(
        client.post("/v1/domains/connect", json=body, headers=owner.headers)
    )
    try:
        await gate.entered.wait()
        # The provider is mid-call. Before the fix this write waited for the
        # connect's write lock (SQLite) and failed after the busy timeout.
        mailbox_id = await held_mailbox(owner.workspace_id, "other@example.test")
        # The claim is already visible: the same name cannot be connected twice.
        twice = await client.post(
            "/v1/domains/connect",
            json={"domain": "slow.test", "dnsProvider": "manual"},
            headers=owner.headers,
        )
        assert twice.status_code == 409, twice.text
        assert twice.json()["error"]["domains"] == ["slow.test"]
    finally:
        gate.release.set()
        response = await connecting
    assert response.status_code == 201, response.text
    assert [d["name"] for d in response.json()["data"]] == ["fast.test", "slow.test"]
    assert sorted(powerdns.zones()) == ["fast.test", "slow.test"]
    assert mailbox_id

    listed = await client.get("/v1/domains", headers=owner.headers)
    assert sorted(d["name"] for d in listed.json()["data"]) == ["fast.test", "slow.test"]
    for domain in listed.json()["data"]:
        detail = await client.get(f"/v1/domains/{domain['id']}", headers=owner.headers)
        data = detail.json()["data"]
        assert {r["purpose"] for r in data["records"]} >= {"mx", "spf", "dkim", "dmarc"}
        assert [key["status"] for key in data["dkim"]] == ["active"]


async def test_a_failure_undoes_the_provider_and_removes_the_claim(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    powerdns: PowerDnsServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original: OpenZone = PowerDnsProvider.open_zone

    async def open_zone(provider: PowerDnsProvider, zone: str) -> OpenedZone:
        if zone == "broken.test":
            raise DnsProviderError("PowerDNS answered 500")
        return await original(provider, zone)

    monkeypatch.setattr(PowerDnsProvider, "open_zone", open_zone)
    body = {"domains": ["first.test", "broken.test"], "dnsProvider": "mailfleet"}
    response = await client.post("/v1/domains/connect", json=body, headers=owner.headers)

    assert response.status_code == 502, response.text
    assert powerdns.zones() == []
    assert await domain_count(database) == 0

    monkeypatch.setattr(PowerDnsProvider, "open_zone", original)
    again = await client.post("/v1/domains/connect", json=body, headers=owner.headers)
    assert again.status_code == 201, again.text
    assert sorted(powerdns.zones()) == ["broken.test", "first.test"]
