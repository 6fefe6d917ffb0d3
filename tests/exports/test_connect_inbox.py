"""POST /v1/connect-inbox: LiteMail's seed examples verbatim, its answer and error
shapes, the upsert, and the export it starts, against a fake Instantly."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from tests.conftest import Account, make_account
from tests.exports.conftest import API_KEY, add_account, make_mailboxes, wait_for_export
from tests.exports.fakes import FakePlatform, Reply
from tests.mailboxes.test_mailboxes_api import wait_for_test
from tests.servers.dnsserver import LocalDnsServer

# Seed 000, "Connect Inboxes (Export to Platform)", request example verbatim.
SEED_000 = {
    "platform_type": "instantly",
    "platform_email": "user@instantly.ai",
    "platform_pass": "mypassword123",
    "inbox_type": "google",
    "inboxes": [{"email": "john@b2bforcelabs.com", "password": "john@2026!", "name": "John Doe"}],
    "workspaceName": "Main Workspace",
}
# Seed 001, the older shape: `pass` instead of `password`, no name, no workspaceName.
SEED_001 = {
    "platform_type": "instantly",
    "platform_email": "support@litemail.ai",
    "platform_pass": "Lite@Mail2024!",
    "inbox_type": "gmail",
    "inboxes": [{"email": "caroline@getbrandmerge.com", "pass": "Caroline@Thompson2025"}],
}
SEED_MESSAGE = "Inboxes will be connected within 24 hours based on the queue of inboxes."
UNAUTHENTICATED = "Authentication required. Provide x-api-key header or valid JWT token."
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
JOB_ID = re.compile(r"^EX[A-HJ-NP-Z2-9]{6}$")


def seed_headers(account: Account) -> dict[str, str]:
    # The seed's curl example: x-api-key and a JSON content type.
    return {"x-api-key": account.api_key, "Content-Type": "application/json"}


def fake_instantly(fake: FakePlatform) -> None:
    fake.route("GET", "/api/v2/accounts", Reply(200, {"items": [], "next_starting_after": None}))
    fake.route(
        "POST",
        "/api/v2/accounts",
        lambda seen: Reply(200, {"email": seen.json["email"], "status": 1, "warmup_status": 0}),
    )


def assert_seed_answer(body: dict[str, Any], seed: dict[str, Any]) -> dict[str, Any]:
    """The seed's documented shape, key for key; returns data.exportHistory."""
    assert set(body) == {"status", "message", "data"}
    assert body["status"] == 200
    assert body["message"] == SEED_MESSAGE
    assert set(body["data"]) == {"record", "exportHistory"}
    record = body["data"]["record"]
    assert set(record) == {"id", "platform", "email", "workspaceName", "selectedMailboxes"}
    assert record["platform"] == seed["platform_type"]
    assert record["email"] == seed["platform_email"]
    assert record["workspaceName"] == seed.get("workspaceName")
    assert record["selectedMailboxes"] == [{"email": i["email"]} for i in seed["inboxes"]]
    history: dict[str, Any] = body["data"]["exportHistory"]
    assert set(history) == {
        "id",
        "jobId",
        "totalMailboxes",
        "platform",
        "exportStatus",
        "createdAt",
    }
    assert JOB_ID.match(history["jobId"]), history["jobId"]
    assert history["totalMailboxes"] == len(seed["inboxes"])
    assert history["platform"] == seed["platform_type"]
    assert history["exportStatus"] == "IN_PROGRESS"
    assert TIMESTAMP.match(history["createdAt"])
    return history


async def test_seed_000_example_ends_completed_against_instantly(
    client: httpx.AsyncClient,
    owner: Account,
    fake: FakePlatform,
    dns_zone: LocalDnsServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    fake_instantly(fake)
    account = await add_account(client, owner, "instantly", fake.url, email="user@instantly.ai")
    assert account["validation"]["status"] == "valid"

    response = await client.post("/v1/connect-inbox", json=SEED_000, headers=seed_headers(owner))
    assert response.status_code == 200, response.text
    history = assert_seed_answer(response.json(), SEED_000)
    secrets = ("mypassword123", "john@2026!", API_KEY)
    assert not any(secret in response.text for secret in secrets)

    done = await wait_for_export(client, owner, history["jobId"])
    assert done["exportStatus"] == "COMPLETED", done
    assert (done["totalMailboxes"], done["connectedCount"], done["failedCount"]) == (1, 1, 0)
    assert (done["source"], done["platformAccountId"]) == ("connect-inbox", account["id"])
    assert done["workspaceName"] == "Main Workspace"
    [result] = done["results"]
    assert (result["email"], result["status"]) == ("john@b2bforcelabs.com", "connected")
    assert result["remoteId"] == "john@b2bforcelabs.com"

    # Instantly API v2, exactly: the key as a bearer token, the inbox's Google
    # settings found by discovery from inbox_type, the seed's name split.
    [sent] = fake.requests("POST", "/api/v2/accounts")
    assert sent.headers["authorization"] == f"Bearer {API_KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.query == {}
    assert sent.json == {
        "email": "john@b2bforcelabs.com",
        "first_name": "John",
        "last_name": "Doe",
        "provider_code": 2,
        "imap_username": "john@b2bforcelabs.com",
        "imap_password": "john@2026!",
        "imap_host": "imap.gmail.com",
        "imap_port": 993,
        "smtp_username": "john@b2bforcelabs.com",
        "smtp_password": "john@2026!",
        "smtp_host": "smtp.gmail.com",
        "smtp_port": 587,
        "daily_limit": 15,
    }

    # The login went to the account the API key was added to, encrypted.
    accounts = (await client.get("/v1/exports/accounts", headers=owner.headers)).json()["data"]
    assert [(a["id"], a["email"], a["hasPassword"]) for a in accounts] == [
        (account["id"], "user@instantly.ai", True)
    ]
    # The inbox became a Mailfleet mailbox, tested as any new one (smtp.gmail.com
    # is unknown to the test DNS, so here the test fails and removes it).
    assert result["mailboxId"]
    assert (await wait_for_test(client, owner, result["mailboxId"]))["status"] == "failed"
    listed = await client.get(f"/v1/export-history?jobId={history['jobId']}", headers=owner.headers)
    assert not any(secret in listed.text for secret in secrets)
    assert not any(secret in caplog.text for secret in secrets)


async def test_seed_001_example_without_an_api_key_fails_with_the_reason_then_works(
    client: httpx.AsyncClient, owner: Account, fake: FakePlatform, dns_zone: LocalDnsServer
) -> None:
    response = await client.post("/v1/connect-inbox", json=SEED_001, headers=seed_headers(owner))
    assert response.status_code == 200, response.text
    first = assert_seed_answer(response.json(), SEED_001)
    record_id = response.json()["data"]["record"]["id"]

    failed = await wait_for_export(client, owner, first["id"])
    assert failed["exportStatus"] == "FAILED"
    assert "Instantly connects inboxes through its API, which needs an API key" in failed["error"]
    [result] = failed["results"]
    assert result["status"] == "failed"
    assert result["message"] == failed["error"]
    # Nothing was sent and nothing was created while the export could not run.
    assert fake.requests() == []
    mailboxes = (await client.get("/v1/mailboxes", headers=owner.headers)).json()["data"]
    assert mailboxes == []

    [account] = (await client.get("/v1/exports/accounts", headers=owner.headers)).json()["data"]
    assert (account["platform"], account["email"]) == ("instantly", "support@litemail.ai")
    assert (account["hasPassword"], account["hasApiKey"]) == (True, False)
    assert f"PUT /v1/exports/accounts/{account['id']}" in failed["error"]

    fake_instantly(fake)
    updated = await client.put(
        f"/v1/exports/accounts/{account['id']}",
        json={"apiKey": API_KEY, "baseUrl": fake.url},
        headers=owner.headers,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["data"]["validation"]["status"] == "valid"

    again = await client.post("/v1/connect-inbox", json=SEED_001, headers=seed_headers(owner))
    second = assert_seed_answer(again.json(), SEED_001)
    # One record per platform, workspace and client (the login): upserted.
    assert again.json()["data"]["record"]["id"] == record_id
    assert second["jobId"] != first["jobId"]
    done = await wait_for_export(client, owner, second["jobId"])
    assert done["exportStatus"] == "COMPLETED", done
    [sent] = fake.requests("POST", "/api/v2/accounts")
    assert (sent.json["first_name"], sent.json["last_name"]) == ("caroline", "")
    assert sent.json["smtp_password"] == sent.json["imap_password"] == "Caroline@Thompson2025"
    assert (sent.json["smtp_host"], sent.json["provider_code"]) == ("smtp.gmail.com", 2)


async def test_unauthenticated_answers_in_the_seed_shape(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/connect-inbox", json=SEED_001)
    assert response.status_code == 401
    body = response.json()
    assert set(body) == {"error", "message", "path", "timestamp"}
    assert body["error"] == "Unauthorized"
    assert body["message"] == UNAUTHENTICATED
    assert body["path"] == "/v1/connect-inbox"
    assert TIMESTAMP.match(body["timestamp"])

    wrong = await client.post(
        "/v1/connect-inbox", json=SEED_001, headers={"x-api-key": "mf_user_not-a-real-key"}
    )
    assert wrong.status_code == 401
    assert set(wrong.json()) == {"error", "message", "path", "timestamp"}
    assert wrong.json()["message"] == "Invalid or revoked API key"


async def test_invalid_requests_answer_in_the_seed_shape(
    client: httpx.AsyncClient, owner: Account
) -> None:
    missing = {key: value for key, value in SEED_000.items() if key != "inboxes"}
    response = await client.post("/v1/connect-inbox", json=missing, headers=owner.headers)
    assert response.status_code == 400
    body = response.json()
    assert (body["error"], body["path"]) == ("Bad Request", "/v1/connect-inbox")
    assert {"field": "inboxes", "message": "Field required"} in body["details"]

    unknown = await client.post(
        "/v1/connect-inbox", json={**SEED_000, "platform_type": "lemlist"}, headers=owner.headers
    )
    assert unknown.status_code == 400
    assert unknown.json()["details"][0]["field"] == "platform_type"
    no_password = {**SEED_000, "inboxes": [{"email": "a@b2bforcelabs.com"}]}
    nopass = await client.post("/v1/connect-inbox", json=no_password, headers=owner.headers)
    assert nopass.status_code == 400
    assert "password" in nopass.json()["details"][0]["message"]
    assert "mypassword123" not in nopass.text


async def test_existing_mailboxes_explicit_servers_and_unknown_domains(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
    dns_zone: LocalDnsServer,
) -> None:
    """A mailbox Mailfleet has goes with its own settings; an inbox with servers
    given goes with those; one whose servers nobody knows fails with the reason."""
    fake_instantly(fake)
    await add_account(client, owner, "instantly", fake.url, email="ops@agency.test")
    [known] = await make_mailboxes(database, keyring, owner.workspace_id, 1)
    request = {
        "platform_type": "Instantly",
        "platform_email": "ops@agency.test",
        "platform_pass": "agency-login-pw",
        "inboxes": [
            {"email": known["email"], "password": "ignored-for-known-pw"},
            {
                "email": "ann@custom-host.test",
                "password": "ann-secret-pw",
                "name": "Ann Lee",
                "smtp_host": "mail.custom-host.test",
                "imap_host": "mail.custom-host.test",
            },
            {"email": "bob@nowhere-known.test", "password": "bob-secret-pw"},
            {"email": known["email"].upper(), "password": "duplicate-pw"},
        ],
        "workspaceName": "Client A",
    }
    response = await client.post("/v1/connect-inbox", json=request, headers=owner.headers)
    assert response.status_code == 200, response.text
    history = response.json()["data"]["exportHistory"]
    assert history["totalMailboxes"] == 3
    done = await wait_for_export(client, owner, history["id"])
    assert done["exportStatus"] == "PARTIAL", done
    by_email = {r["email"]: r for r in done["results"]}
    assert by_email[known["email"]]["status"] == "connected"
    assert by_email["ann@custom-host.test"]["status"] == "connected"
    bob = by_email["bob@nowhere-known.test"]
    assert bob["status"] == "failed"
    assert "Could not find the mail servers of nowhere-known.test" in bob["message"]
    assert bob["mailboxId"] is None

    sent = {seen.json["email"]: seen.json for seen in fake.requests("POST", "/api/v2/accounts")}
    assert set(sent) == {known["email"], "ann@custom-host.test"}
    assert sent[known["email"]]["smtp_password"] == known["password"]
    assert sent[known["email"]]["smtp_host"] == "smtp.fleet.test"
    assert sent[known["email"]]["daily_limit"] == 20
    ann = sent["ann@custom-host.test"]
    assert (ann["smtp_host"], ann["smtp_port"], ann["imap_port"]) == (
        "mail.custom-host.test",
        587,
        993,
    )
    assert (ann["first_name"], ann["last_name"], ann["provider_code"]) == ("Ann", "Lee", 1)
    # Ann is a Mailfleet mailbox now, with its connection test queued.
    assert by_email["ann@custom-host.test"]["mailboxId"]
    await wait_for_test(client, owner, by_email["ann@custom-host.test"]["mailboxId"])


async def test_idempotency_key_and_workspace_isolation(
    client: httpx.AsyncClient, owner: Account, database: Database, dns_zone: LocalDnsServer
) -> None:
    headers = {**owner.headers, "Idempotency-Key": "connect-1"}
    first = await client.post("/v1/connect-inbox", json=SEED_001, headers=headers)
    again = await client.post("/v1/connect-inbox", json=SEED_001, headers=headers)
    assert first.status_code == again.status_code == 200
    assert first.json()["data"] == again.json()["data"]
    await wait_for_export(client, owner, first.json()["data"]["exportHistory"]["id"])
    listed = await client.get("/v1/export-history", headers=owner.headers)
    assert listed.json()["pagination"]["total"] == 1

    stranger = await make_account(database, "stranger@example.test")
    hidden = await client.get(
        f"/v1/export-history/{first.json()['data']['exportHistory']['id']}",
        headers=stranger.headers,
    )
    assert hidden.status_code == 404
