"""Fixtures for export tests: fake platforms on loopback, fast retries and polls,
mailboxes made through Mailfleet's own service, and waiting for an export."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailboxes.schemas import MailboxCreate
from tests.conftest import Account
from tests.exports.fakes import FakePlatform

# A real `mailfleet serve` subprocess, for exports from this Mailfleet to another.
from tests.test_cli import served  # noqa: F401

API_KEY = "pk-test-0123456789abcdef"


@pytest.fixture(autouse=True)
def fast_platform_timing(settings: Settings) -> Iterator[None]:
    """Retries and polls in hundredths of a second; a long Retry-After is capped at 0.3 s."""
    names = (
        "platform_retry_delay",
        "platform_max_retry_delay",
        "export_poll_interval",
        "export_poll_timeout",
    )
    previous = {name: getattr(settings, name) for name in names}
    settings.platform_retry_delay = 0.01
    settings.platform_max_retry_delay = 0.3
    settings.export_poll_interval = 0.05
    settings.export_poll_timeout = 10.0
    yield
    for name, value in previous.items():
        setattr(settings, name, value)


@pytest.fixture
def fake() -> Iterator[FakePlatform]:
    with FakePlatform() as platform:
        yield platform


async def add_account(
    client: httpx.AsyncClient,
    account: Account,
    platform: str,
    base_url: str,
    *,
    api_key: str = API_KEY,
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    body = {"platform": platform, "apiKey": api_key, "baseUrl": base_url, **fields}
    response = await client.post("/v1/exports/accounts", json=body, headers=account.headers)
    assert response.status_code == expect, response.text
    assert api_key not in response.text
    data: dict[str, Any] = response.json()["data"] if expect < 300 else response.json()
    return data


async def make_mailboxes(
    database: Database,
    keyring: Keyring,
    workspace_id: str,
    count: int,
    *,
    domain: str = "fleet.test",
    prefix: str = "box",
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Active mailboxes made by Mailfleet's own service (untested logins, like
    DeepLead's skipConnectionTest): what an export reads, without mail servers."""
    made = []
    async with database.transaction() as session:
        for number in range(count):
            email = f"{prefix}{number}@{domain}"
            password = f"secret-{prefix}-{number}-pw"
            values: dict[str, Any] = {
                "email": email,
                "displayName": f"Box {number} Sender",
                "smtp": {
                    "host": "smtp.fleet.test",
                    "port": 587,
                    "secure": True,
                    "password": password,
                },
                "imap": {
                    "host": "imap.fleet.test",
                    "port": 993,
                    "secure": True,
                    "password": password,
                },
                "dailySendLimit": 20,
                **overrides,
            }
            mailbox = await mailboxes.create_mailbox(
                session, keyring, workspace_id, MailboxCreate.model_validate(values), verify=False
            )
            made.append({"id": mailbox.id, "email": email, "password": password})
    return made


async def push(
    client: httpx.AsyncClient, account: Account, platform_account_id: str, **selection: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/exports/mailboxes",
        json={"platformAccountId": platform_account_id, **selection},
        headers=account.headers,
    )
    assert response.status_code == 202, response.text
    data: dict[str, Any] = response.json()["data"]
    assert data["exportStatus"] == "IN_PROGRESS"
    return data


async def wait_for_export(
    client: httpx.AsyncClient, account: Account, export_id: str, within: float = 30
) -> dict[str, Any]:
    """The export (with its per-inbox results) once it has left IN_PROGRESS."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await client.get(f"/v1/export-history/{export_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        if data["exportStatus"] != "IN_PROGRESS":
            return data
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"export still in progress: {data}")
        await asyncio.sleep(0.05)
