"""The domain webhooks the catalogue offers are sent: a domain connected, its DNS
status moved by a check, its nameservers seen propagated. PowerDNS on loopback hosts
the zone and answers the checks; a loopback receiver verifies each signature."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Account
from tests.domains.conftest import NAMESERVERS, connect, dns_check
from tests.servers.http_receiver import HttpReceiver
from tests.webhooks.conftest import register

DOMAIN_EVENTS = ["domain.connected", "domain.dns_status_changed", "domain.nameservers_propagated"]


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        yield server


def events_of(receiver: HttpReceiver) -> list[tuple[str, dict[str, Any]]]:
    return [(r.payload["type"], r.payload["data"]) for r in receiver.received()]


async def test_connecting_checking_and_propagating_a_domain_are_sent(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver
) -> None:
    webhook = await register(client, owner, receiver.url("/domains"), eventTypes=DOMAIN_EVENTS)
    receiver.secret = webhook["secret"]

    domain = await connect(client, owner, "events.test")
    [connected] = await receiver.wait_for(1)
    assert connected.verified is True, connected.verification_error
    expected = {"domainId": domain["id"], "domain": "events.test"}
    assert events_of(receiver) == [("domain.connected", expected)]

    checked = await dns_check(client, owner, domain["id"])
    assert checked["status"] == "active"
    await receiver.wait_for(2)
    assert events_of(receiver)[1] == (
        "domain.dns_status_changed",
        {**expected, "previousStatus": "pending", "status": "active"},
    )
    # The same status again is no change.
    await dns_check(client, owner, domain["id"])

    verified = await client.get(
        f"/v1/domains/{domain['id']}/nameservers/verify", headers=owner.headers
    )
    assert verified.json()["data"]["status"] == "propagated", verified.text
    await receiver.wait_for(3)
    assert events_of(receiver)[2] == (
        "domain.nameservers_propagated",
        {**expected, "nameservers": NAMESERVERS},
    )
    # Propagated again is not news either.
    await client.get(f"/v1/domains/{domain['id']}/nameservers/verify", headers=owner.headers)
    deliveries = await client.get(f"/v1/webhooks/{webhook['id']}/deliveries", headers=owner.headers)
    assert len(deliveries.json()["data"]) == 3
    assert [kind for kind, _ in events_of(receiver)] == DOMAIN_EVENTS
