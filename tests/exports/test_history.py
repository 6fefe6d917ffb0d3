"""GET and POST /v1/export-history: exports recorded from elsewhere, filters, pagination."""

from __future__ import annotations

import httpx

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from tests.conftest import Account
from tests.exports.conftest import make_mailboxes


async def test_record_list_filter_and_read(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring
) -> None:
    [known] = await make_mailboxes(database, keyring, owner.workspace_id, 1)
    created = await client.post(
        "/v1/export-history",
        json={
            "platform": "Lemlist",
            "jobId": "ext-42",
            "workspaceName": "Client B",
            "note": "uploaded by hand",
            "mailboxes": [
                {"email": known["email"]},
                {"email": "gone@else.test", "status": "failed", "message": "bounced"},
            ],
        },
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert (data["platform"], data["jobId"], data["source"]) == ("lemlist", "EXT-42", "external")
    assert (data["exportStatus"], data["totalMailboxes"]) == ("COMPLETED", 2)
    assert (data["connectedCount"], data["failedCount"]) == (1, 1)
    assert data["finishedAt"].endswith("Z")

    counted = await client.post(
        "/v1/export-history",
        json={"platform": "instantly", "exportStatus": "FAILED", "totalMailboxes": 7},
        headers={**owner.headers, "Idempotency-Key": "k1"},
    )
    repeated = await client.post(
        "/v1/export-history",
        json={"platform": "instantly", "exportStatus": "FAILED", "totalMailboxes": 7},
        headers={**owner.headers, "Idempotency-Key": "k1"},
    )
    assert counted.json()["data"]["id"] == repeated.json()["data"]["id"]
    assert (counted.json()["data"]["failedCount"], counted.json()["data"]["connectedCount"]) == (
        7,
        0,
    )
    duplicate = await client.post(
        "/v1/export-history", json={"platform": "x", "jobId": "EXT-42"}, headers=owner.headers
    )
    assert duplicate.status_code == 409

    async def job_ids(query: str) -> list[str]:
        response = await client.get(f"/v1/export-history?{query}", headers=owner.headers)
        assert response.status_code == 200, response.text
        return [entry["jobId"] for entry in response.json()["data"]]

    assert await job_ids("platform=LEMLIST") == ["EXT-42"]
    assert await job_ids("status=FAILED") == [counted.json()["data"]["jobId"]]
    assert await job_ids("jobId=ext-42") == ["EXT-42"]
    assert await job_ids("source=connect-inbox") == []
    page = await client.get("/v1/export-history?limit=1&skip=1", headers=owner.headers)
    assert page.json()["pagination"] == {"total": 2, "limit": 1, "skip": 1, "hasMore": False}
    assert [e["jobId"] for e in page.json()["data"]] == ["EXT-42"]
    bad = await client.get("/v1/export-history?status=DONE", headers=owner.headers)
    assert bad.status_code == 400

    detail = await client.get("/v1/export-history/ext-42", headers=owner.headers)
    results = detail.json()["data"]["results"]
    assert [(r["email"], r["status"], r["mailboxId"]) for r in results] == [
        (known["email"], "connected", known["id"]),
        ("gone@else.test", "failed", None),
    ]
    assert results[1]["message"] == "bounced"
    missing = await client.get("/v1/export-history/nope", headers=owner.headers)
    assert missing.status_code == 404


async def test_a_push_needs_a_known_account_and_an_existing_selection(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring
) -> None:
    unknown = await client.post(
        "/v1/exports/mailboxes", json={"platformAccountId": "nope"}, headers=owner.headers
    )
    assert unknown.status_code == 404
    account = await client.post(
        "/v1/exports/accounts",
        json={"platform": "sendkit", "apiKey": "k-123456", "verify": False},
        headers=owner.headers,
    )
    account_id = account.json()["data"]["id"]
    empty = await client.post(
        "/v1/exports/mailboxes", json={"platformAccountId": account_id}, headers=owner.headers
    )
    assert empty.status_code == 400
    await make_mailboxes(database, keyring, owner.workspace_id, 1)
    mixed = await client.post(
        "/v1/exports/mailboxes",
        json={"platformAccountId": account_id, "layout": "instantly"},
        headers=owner.headers,
    )
    assert mixed.status_code == 400
    assert mixed.json()["error"]["details"][0]["field"] == "platformAccountId"
