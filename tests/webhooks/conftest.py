"""Fixtures for webhook tests: a receiver on loopback, fast retries, settings overrides."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mailfleet.config import Settings
from tests.conftest import Account
from tests.servers.http_receiver import HttpReceiver

# Tiny waits between attempts, so a test sees a whole retry schedule in moments.
FAST_RETRIES = [0.05, 0.05, 0.05]


@pytest.fixture(autouse=True)
def fast_retries(settings: Settings) -> Iterator[list[float]]:
    """The retry schedule every webhook test runs with; a test may change it in place."""
    previous = settings.webhook_retry_delays
    settings.webhook_retry_delays = list(FAST_RETRIES)
    yield settings.webhook_retry_delays
    settings.webhook_retry_delays = previous


@pytest.fixture
def private_networks_refused(settings: Settings) -> Iterator[None]:
    """The guard as in production: loopback and private addresses are refused."""
    previous = settings.allow_private_networks
    settings.allow_private_networks = False
    yield
    settings.allow_private_networks = previous


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    with HttpReceiver() as server:
        yield server


async def register(
    client: httpx.AsyncClient, account: Account, url: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/webhooks", json={"url": url, **fields}, headers=account.headers
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def wait_for_delivery(
    client: httpx.AsyncClient,
    account: Account,
    webhook_id: str,
    delivery_id: str,
    *,
    within: float = 30,
) -> dict[str, Any]:
    """The delivery once it has left "pending"."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await client.get(
            f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}", headers=account.headers
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        if data["status"] != "pending":
            return data
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"delivery still pending: {data}")
        await asyncio.sleep(0.05)


async def deliveries_of(
    client: httpx.AsyncClient, account: Account, webhook_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/webhooks/{webhook_id}/deliveries", headers=account.headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def wait_for_finished_deliveries(
    client: httpx.AsyncClient, account: Account, webhook_id: str, count: int, within: float = 30
) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        deliveries = await deliveries_of(client, account, webhook_id)
        finished = [d for d in deliveries if d["status"] != "pending"]
        if len(finished) >= count:
            return deliveries
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{len(finished)} of {count} deliveries finished: {deliveries}")
        await asyncio.sleep(0.05)
