"""The console's webhooks page: an endpoint added (secret once), a test event that
fails, its retry that succeeds, all against a real HTTP receiver on loopback."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from mailfleet.config import Settings
from tests.conftest import Account
from tests.console.test_console_http import sign_in
from tests.servers.http_receiver import HttpReceiver


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        yield server


@pytest.fixture
def no_retries(settings: Settings) -> Iterator[None]:
    previous = settings.webhook_retry_delays
    settings.webhook_retry_delays = []
    yield
    settings.webhook_retry_delays = previous


async def _statuses(client: httpx.AsyncClient, path: str, wanted: list[str]) -> str:
    """The endpoint's page once its deliveries show `wanted` (newest first)."""
    for _ in range(300):
        page = await client.get(path)
        found = re.findall(r'<span class="badge (\w+)">\1</span></td>\s*<td>\d+</td>', page.text)
        if found == wanted:
            return page.text
        await asyncio.sleep(0.1)
    raise AssertionError(f"deliveries {found}, wanted {wanted}")


async def test_add_an_endpoint_send_a_test_and_retry_it(
    client: httpx.AsyncClient, owner: Account, receiver: HttpReceiver, no_retries: None
) -> None:
    token = await sign_in(client, owner)
    added = await client.post(
        "/webhooks",
        data={"csrf_token": token, "url": receiver.url(), "description": "CRM"},
    )
    assert added.status_code == 200
    secret = re.search(r'id="new-secret" readonly value="(whsec_[^"]+)"', added.text)
    assert secret, added.text
    listing = await client.get("/webhooks")
    assert secret.group(1) not in listing.text
    [endpoint] = (await client.get("/v1/webhooks", headers=owner.headers)).json()["data"]
    path = f"/webhooks/{endpoint['id']}"

    receiver.script(500)
    sent = await client.post(f"{path}/test", data={"csrf_token": token})
    assert sent.status_code == 303
    page = await _statuses(client, path, ["failed"])
    delivery_id = re.search(r'name="delivery_id" value="([^"]+)"', page)
    assert delivery_id

    retried = await client.post(
        f"{path}/retry", data={"csrf_token": token, "delivery_id": delivery_id.group(1)}
    )
    assert retried.status_code == 303
    await _statuses(client, path, ["succeeded", "failed"])
    assert len(receiver.requests) == 2
