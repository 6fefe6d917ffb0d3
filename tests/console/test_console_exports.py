"""The console's exports page: a CSV download, an account added, a push to it."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterator

import httpx
import pytest

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from tests.conftest import Account
from tests.console.test_console_http import sign_in
from tests.exports.conftest import make_mailboxes
from tests.exports.fakes import FakePlatform, Reply


@pytest.fixture
def fake() -> Iterator[FakePlatform]:
    with FakePlatform() as platform:
        yield platform


async def test_export_as_csv_from_the_console(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring
) -> None:
    made = await make_mailboxes(database, keyring, owner.workspace_id, 2)
    await make_mailboxes(database, keyring, owner.workspace_id, 1, domain="other.test")
    token = await sign_in(client, owner)

    response = await client.post(
        "/exports",
        data={
            "csrf_token": token,
            "domain": "fleet.test",
            "destination": "csv",
            "layout": "instantly",
            "include_credentials": "on",
        },
    )

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert sorted(row["Email"] for row in rows) == sorted(m["email"] for m in made)
    assert {row["SMTP Password"] for row in rows} == {m["password"] for m in made}
    # Streamed as the API streams it (no length known up front), the same bytes.
    assert "content-length" not in response.headers
    assert response.headers["x-credentials-included"] == "true"
    api = await client.post(
        "/v1/exports/mailboxes",
        json={"domain": "fleet.test", "layout": "instantly", "includeCredentials": True},
        headers=owner.headers,
    )
    assert api.status_code == 200, api.text
    assert response.content == api.content
    page = await client.get("/exports")
    assert re.search(r"<td>instantly</td>\s*<td>csv</td>", page.text)


async def test_add_an_account_and_push_to_it(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    fake.route("GET", "/api/v2/accounts", Reply(200, {"items": []}))
    fake.route("POST", "/api/v2/accounts", Reply(200, {"email": "box0@fleet.test"}))
    await make_mailboxes(database, keyring, owner.workspace_id, 1)
    token = await sign_in(client, owner)

    added = await client.post(
        "/exports/accounts",
        data={
            "csrf_token": token,
            "platform": "instantly",
            "name": "Main Instantly",
            "api_key": "pk-console-0123456789",
            "base_url": fake.url,
        },
    )
    assert added.status_code == 303
    accounts = await client.get("/v1/exports/accounts", headers=owner.headers)
    [account] = accounts.json()["data"]
    page = await client.get("/exports")
    assert "Main Instantly" in page.text
    assert "pk-console-0123456789" not in page.text

    pushed = await client.post("/exports", data={"csrf_token": token, "destination": account["id"]})
    assert pushed.status_code == 303
    for _ in range(300):
        history = await client.get("/exports/history")
        if "COMPLETED" in history.text:
            break
        assert "IN_PROGRESS" in history.text
        await asyncio.sleep(0.1)
    assert "data-export-status>COMPLETED<" in history.text
    # Done: the fragment stops asking to be polled.
    assert "hx-trigger" not in history.text
    [sent] = fake.requests("POST", "/api/v2/accounts")
    assert sent.json["email"] == "box0@fleet.test"
