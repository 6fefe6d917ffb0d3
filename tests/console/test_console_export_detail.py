"""One export's page in the console: its status and counts, each inbox's result
(live while it runs), and the results as a CSV download."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import update

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.models import ExportHistory, ExportItem, ExportStatus
from tests.conftest import Account
from tests.console.test_console_http import sign_in
from tests.exports.conftest import make_mailboxes
from tests.exports.fakes import FakePlatform, Reply, Seen


@pytest.fixture
def fake() -> Iterator[FakePlatform]:
    with FakePlatform() as platform:
        yield platform


def _answer(seen: Seen) -> Reply:
    if seen.json["email"].startswith("box1@"):
        return Reply(400, {"message": "Daily limit too high"})
    return Reply(200, {"id": "remote-" + seen.json["email"].split("@")[0]})


async def test_an_exports_page_shows_each_inbox_and_downloads_the_results(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    fake.route("GET", "/api/v2/accounts", Reply(200, {"items": []}))
    fake.route("POST", "/api/v2/accounts", _answer)
    made = await make_mailboxes(database, keyring, owner.workspace_id, 2)
    token = await sign_in(client, owner)
    added = await client.post(
        "/exports/accounts",
        data={
            "csrf_token": token,
            "platform": "instantly",
            "name": "Main",
            "api_key": "pk-console-0123456789",
            "base_url": fake.url,
        },
    )
    assert added.status_code == 303
    [account] = (await client.get("/v1/exports/accounts", headers=owner.headers)).json()["data"]
    pushed = await client.post("/exports", data={"csrf_token": token, "destination": account["id"]})
    assert pushed.status_code == 303

    listing = await client.get("/exports")
    [link] = re.findall(r'<a href="(/exports/\w+)"><code>', listing.text)
    for _ in range(300):
        panel = await client.get(link + "/panel")
        assert panel.status_code == 200
        if "IN_PROGRESS" not in panel.text:
            break
        assert 'hx-trigger="every 2s"' in panel.text
        await asyncio.sleep(0.1)
    page = await client.get(link)

    assert page.status_code == 200
    assert "data-export-status>PARTIAL<" in page.text
    assert "hx-trigger" not in page.text
    assert "<span data-connected>1</span> connected" in page.text
    assert "Daily limit too high" in page.text
    assert "remote-box0" in page.text
    assert "pk-console-0123456789" not in page.text
    download = await client.get(link + "/results.csv")
    assert download.status_code == 200
    assert "attachment" in download.headers["content-disposition"]
    rows = {row["email"]: row for row in csv.DictReader(io.StringIO(download.text))}
    assert set(rows) == {m["email"] for m in made}
    assert rows[made[0]["email"]]["status"] == "connected"
    assert rows[made[0]["email"]]["remote_id"] == "remote-box0"
    assert rows[made[1]["email"]]["status"] == "failed"
    assert rows[made[1]["email"]]["message"].endswith("Daily limit too high")


async def test_a_long_exports_page_counts_and_its_csv_has_every_result_once(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    """More results than the page shows and than one batch of the download holds:
    the page counts them (and the pending ones) in the database, the CSV streams
    every one in order, with one header."""
    listed = [
        {"email": f"inbox{i:04}@long.test", "status": "failed" if i % 7 == 0 else "connected"}
        for i in range(2345)
    ]
    recorded = await client.post(
        "/v1/export-history",
        json={"platform": "smartlead", "exportStatus": "PARTIAL", "mailboxes": listed},
        headers=owner.headers,
    )
    assert recorded.status_code == 201, recorded.text
    history_id = recorded.json()["data"]["id"]
    async with database.transaction() as session:  # as if still running, 3 to go
        await session.execute(
            update(ExportItem)
            .where(ExportItem.history_id == history_id, ExportItem.email.like("inbox000_@%"))
            .where(ExportItem.email < "inbox0003@")
            .values(status="pending")
        )
        await session.execute(
            update(ExportHistory)
            .where(ExportHistory.id == history_id)
            .values(status=ExportStatus.IN_PROGRESS)
        )
    await sign_in(client, owner)

    page = await client.get(f"/exports/{history_id}")
    download = await client.get(f"/exports/{history_id}/results.csv")

    assert page.status_code == 200
    assert "2345 inboxes, the first 500 shown" in page.text
    assert "3 of 2345 still to go" in page.text
    assert "inbox0499@long.test" in page.text
    assert "inbox0500@long.test" not in page.text
    assert download.status_code == 200
    assert download.text.count("position,email") == 1
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert [row["email"] for row in rows] == [item["email"] for item in listed]
    assert [row["status"] for row in rows[:4]] == ["pending"] * 3 + ["connected"]
    assert rows[7]["status"] == "failed"


async def test_a_csv_exports_page_and_an_unknown_one(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring
) -> None:
    await make_mailboxes(database, keyring, owner.workspace_id, 1)
    token = await sign_in(client, owner)
    made = await client.post(
        "/exports", data={"csrf_token": token, "destination": "csv", "layout": "smartlead"}
    )
    assert made.status_code == 200

    page = await client.get(f"/exports/{made.headers['x-export-id']}")
    missing = await client.get("/exports/000000000000000000000000")

    assert page.status_code == 200
    assert "data-export-status>COMPLETED<" in page.text
    assert "smartlead layout, without passwords" in page.text
    assert "is not kept" in page.text
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")


async def test_a_refused_export_says_why_and_records_nothing(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring
) -> None:
    await make_mailboxes(database, keyring, owner.workspace_id, 1)
    token = await sign_in(client, owner)
    refused = await client.post(
        "/exports", data={"csrf_token": token, "destination": "000000000000000000000000"}
    )
    assert refused.status_code == 303
    page = await client.get(refused.headers["location"])
    assert 'class="flash error"' in page.text
    assert "No export yet" in page.text
    history = await client.get("/v1/export-history", headers=owner.headers)
    assert history.json()["data"] == []
