"""Each platform adapter against a fake of its platform at the HTTP boundary: the
exact request (path, headers, body), the answer mapped per inbox, retries."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from tests.conftest import Account
from tests.exports.conftest import API_KEY, add_account, make_mailboxes, push, wait_for_export
from tests.exports.fakes import FakePlatform, Reply, Seen
from tests.servers.dnsserver import LocalDnsServer
from tests.servers.tls import LoopbackTLS


def no_secret_in(text: str, mailboxes: list[dict[str, Any]]) -> None:
    assert API_KEY not in text
    for mailbox in mailboxes:
        assert mailbox["password"] not in text


# Instantly


async def test_instantly_partial_failure_and_already_exists(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    fake.route("GET", "/api/v2/accounts", Reply(200, {"items": []}))

    def accounts(seen: Seen) -> Reply:
        email = seen.json["email"]
        if email.startswith("box1@"):
            return Reply(
                400, {"statusCode": 400, "error": "Bad Request", "message": "IMAP login failed"}
            )
        if email.startswith("box2@"):
            return Reply(400, {"message": f"Account {email} already exists in this workspace"})
        return Reply(200, {"email": email, "status": 1})

    fake.route("POST", "/api/v2/accounts", accounts)
    account = await add_account(client, owner, "instantly", fake.url)
    made = await make_mailboxes(database, keyring, owner.workspace_id, 3)
    [check] = fake.requests("GET", "/api/v2/accounts")
    assert check.query == {"limit": "1"}
    assert check.headers["authorization"] == f"Bearer {API_KEY}"

    queued = await push(client, owner, account["id"])
    done = await wait_for_export(client, owner, queued["id"])
    assert done["exportStatus"] == "PARTIAL"
    assert (done["connectedCount"], done["failedCount"]) == (2, 1)
    results = {r["email"]: r for r in done["results"]}
    assert results["box0@fleet.test"]["status"] == "connected"
    assert results["box1@fleet.test"]["status"] == "failed"
    assert results["box1@fleet.test"]["message"] == "Instantly answered 400: IMAP login failed"
    assert results["box2@fleet.test"]["status"] == "connected"
    assert results["box2@fleet.test"]["message"].startswith("Already on Instantly")

    sent = {seen.json["email"]: seen for seen in fake.requests("POST", "/api/v2/accounts")}
    first = sent["box0@fleet.test"]
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert first.json == {
        "email": "box0@fleet.test",
        "first_name": "Box",
        "last_name": "0 Sender",
        "provider_code": 1,
        "imap_username": "box0@fleet.test",
        "imap_password": made[0]["password"],
        "imap_host": "imap.fleet.test",
        "imap_port": 993,
        "smtp_username": "box0@fleet.test",
        "smtp_password": made[0]["password"],
        "smtp_host": "smtp.fleet.test",
        "smtp_port": 587,
        "daily_limit": 20,
    }
    history = await client.get(f"/v1/export-history/{queued['id']}", headers=owner.headers)
    no_secret_in(history.text, made)


async def test_rate_limit_waits_for_retry_after_then_succeeds(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    fake.route("GET", "/api/v2/accounts", Reply(200, {"items": []}))
    fake.route("POST", "/api/v2/accounts", Reply(200, {"email": "box0@fleet.test"}))
    # Retry-After asks for 5 s; MAILFLEET_PLATFORM_MAX_RETRY_DELAY caps it at 0.3 s here.
    fake.script(
        "POST",
        "/api/v2/accounts",
        Reply(429, {"message": "Too many requests"}, {"retry-after": "5"}),
        Reply(503, {"message": "Service unavailable"}),
    )
    account = await add_account(client, owner, "instantly", fake.url)
    await make_mailboxes(database, keyring, owner.workspace_id, 1)
    done = await wait_for_export(client, owner, (await push(client, owner, account["id"]))["id"])
    assert done["exportStatus"] == "COMPLETED", done
    rate_limited, unavailable, accepted = fake.requests("POST", "/api/v2/accounts")
    # The wait after the 429 is Retry-After's (capped at 0.3 s), not the 0.01 s
    # backoff the 503 gets. Only the lower bound is a clock fact; the upper one is
    # relative, so a loaded machine can't fail it.
    after_429 = unavailable.at - rate_limited.at
    assert after_429 >= 0.25
    assert accepted.at - unavailable.at < after_429
    assert accepted.json == rate_limited.json


@pytest.fixture
def three_attempts(settings: Settings) -> Iterator[None]:
    previous = settings.platform_max_attempts, settings.platform_concurrency
    settings.platform_max_attempts, settings.platform_concurrency = 3, 1
    yield
    settings.platform_max_attempts, settings.platform_concurrency = previous


async def test_rate_limit_that_never_lifts_fails_the_inbox(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
    three_attempts: None,
) -> None:
    fake.route("GET", "/api/v2/accounts", Reply(200, {"items": []}))
    fake.route(
        "POST", "/api/v2/accounts", Reply(429, {"message": "Slow down"}, {"retry-after": "0"})
    )
    account = await add_account(client, owner, "instantly", fake.url)
    await make_mailboxes(database, keyring, owner.workspace_id, 1)
    done = await wait_for_export(client, owner, (await push(client, owner, account["id"]))["id"])
    assert done["exportStatus"] == "FAILED"
    assert done["results"][0]["message"] == (
        "RATE_LIMITED: Instantly still limited the rate after 3 attempts: Slow down"
    )
    assert len(fake.requests("POST", "/api/v2/accounts")) == 3


async def test_a_refused_key_stops_the_export(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
    three_attempts: None,
) -> None:
    fake.route("POST", "/api/v2/accounts", Reply(401, {"message": "Invalid API key"}))
    account = await add_account(client, owner, "instantly", fake.url, verify=False)
    assert account["validation"]["status"] == "unchecked"
    await make_mailboxes(database, keyring, owner.workspace_id, 3)
    done = await wait_for_export(client, owner, (await push(client, owner, account["id"]))["id"])
    assert done["exportStatus"] == "FAILED"
    assert done["error"] == "Instantly refused the API key (401): Invalid API key"
    assert {r["message"] for r in done["results"]} == {done["error"]}
    assert len(fake.requests("POST", "/api/v2/accounts")) == 1


# Smartlead


async def test_smartlead_request_and_answers(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    fake.route("GET", "/api/v1/email-accounts/", Reply(200, []))

    def save(seen: Seen) -> Reply:
        if seen.json["from_email"].startswith("box1@"):
            return Reply(200, {"ok": False, "message": "SMTP connection failed"})
        return Reply(
            200,
            {"ok": True, "message": "Email account added successfully!", "emailAccountId": 4242},
        )

    fake.route("POST", "/api/v1/email-accounts/save", save)
    account = await add_account(client, owner, "smartlead", fake.url)
    [check] = fake.requests("GET", "/api/v1/email-accounts/")
    assert check.query == {"offset": "0", "limit": "1", "api_key": API_KEY}
    made = await make_mailboxes(
        database, keyring, owner.workspace_id, 2, signature="<p>Regards</p>"
    )
    done = await wait_for_export(client, owner, (await push(client, owner, account["id"]))["id"])
    assert done["exportStatus"] == "PARTIAL"
    results = {r["email"]: r for r in done["results"]}
    assert (results["box0@fleet.test"]["status"], results["box0@fleet.test"]["remoteId"]) == (
        "connected",
        "4242",
    )
    assert results["box1@fleet.test"]["message"] == "Smartlead refused it: SMTP connection failed"

    sent = {s.json["from_email"]: s for s in fake.requests("POST", "/api/v1/email-accounts/save")}
    first = sent["box0@fleet.test"]
    assert first.query == {"api_key": API_KEY}
    assert "authorization" not in first.headers
    assert first.headers["content-type"] == "application/json"
    assert first.json == {
        "id": None,
        "from_name": "Box 0 Sender",
        "from_email": "box0@fleet.test",
        "user_name": "box0@fleet.test",
        "password": made[0]["password"],
        "smtp_host": "smtp.fleet.test",
        "smtp_port": 587,
        "imap_host": "imap.fleet.test",
        "imap_port": 993,
        "max_email_per_day": 20,
        "custom_tracking_url": "",
        "bcc": "",
        "signature": "<p>Regards</p>",
        "warmup_enabled": False,
        "total_warmup_per_day": None,
        "daily_rampup": None,
        "reply_rate_percentage": None,
        "client_id": None,
    }


async def test_smartlead_refuses_different_imap_logins_without_sending(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    account = await add_account(client, owner, "smartlead", fake.url, verify=False)
    await make_mailboxes(
        database,
        keyring,
        owner.workspace_id,
        1,
        imap={"host": "imap.fleet.test", "username": "other-login", "password": "imap-only-pw"},
    )
    done = await wait_for_export(client, owner, (await push(client, owner, account["id"]))["id"])
    assert done["exportStatus"] == "FAILED"
    assert "one login for SMTP and IMAP" in done["results"][0]["message"]
    assert fake.requests() == []


# SendKit


async def test_sendkit_request_and_answers(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    fake.route("GET", "/v1/mailboxes", Reply(200, {"success": True, "data": []}))

    def add(seen: Seen) -> Reply:
        if seen.json["email"].startswith("box1@"):
            return Reply(
                409,
                {
                    "success": False,
                    "error": {"code": "CONFLICT", "message": "Mailbox already exists"},
                },
            )
        if seen.json["email"].startswith("box2@"):
            return Reply(
                403,
                {
                    "success": False,
                    "error": {
                        "code": "LIMIT_REACHED",
                        "message": "Mailbox limit reached for your plan",
                    },
                },
            )
        return Reply(201, {"success": True, "data": {"_id": "665b1c2d3e4f5a6b7c8d9e0f"}})

    fake.route("POST", "/v1/mailboxes", add)
    account = await add_account(client, owner, "sendkit", fake.url)
    [check] = fake.requests("GET", "/v1/mailboxes")
    assert (check.query, check.headers["x-api-key"]) == ({"limit": "1"}, API_KEY)
    made = await make_mailboxes(
        database,
        keyring,
        owner.workspace_id,
        3,
        tags=["outreach"],
        signature="<p>Best regards,<br>Box</p>",
    )
    done = await wait_for_export(client, owner, (await push(client, owner, account["id"]))["id"])
    results = {r["email"]: r for r in done["results"]}
    assert done["exportStatus"] == "PARTIAL"
    assert results["box0@fleet.test"]["remoteId"] == "665b1c2d3e4f5a6b7c8d9e0f"
    assert results["box1@fleet.test"]["status"] == "connected"
    assert results["box2@fleet.test"]["message"] == (
        "SendKit answered 403: Mailbox limit reached for your plan"
    )
    sent = {s.json["email"]: s for s in fake.requests("POST", "/v1/mailboxes")}
    first = sent["box0@fleet.test"]
    assert first.headers["x-api-key"] == API_KEY
    assert "authorization" not in first.headers
    # Seed 002's "Add SMTP mailbox" body.
    assert first.json == {
        "email": "box0@fleet.test",
        "displayName": "Box 0 Sender",
        "provider": "custom",
        "smtp": {
            "host": "smtp.fleet.test",
            "port": 587,
            "secure": True,
            "username": "box0@fleet.test",
            "password": made[0]["password"],
        },
        "imap": {
            "host": "imap.fleet.test",
            "port": 993,
            "secure": True,
            "username": "box0@fleet.test",
            "password": made[0]["password"],
        },
        "dailySendLimit": 20,
        "tags": ["outreach"],
        "signature": "<p>Best regards,<br>Box</p>",
    }


# DeepLead


async def test_deeplead_batch_request_and_per_item_answers(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    fake.route("GET", "/api/v1/pools", Reply(200, {"pools": []}))

    def create(seen: Seen) -> Reply:
        results: list[dict[str, Any]] = []
        for number, item in enumerate(seen.json):
            address = item["emailAddress"]
            if address.startswith("box1@"):
                results.append(
                    {"emailAddress": address, "success": False, "error": "Mailbox already exists"}
                )
            elif address.startswith("box2@"):
                results.append(
                    {"emailAddress": address, "success": False, "error": "IMAP login failed"}
                )
            else:
                results.append(
                    {"emailAddress": address, "success": True, "inboxId": f"in-{number}"}
                )
        created = sum(1 for r in results if r["success"])
        body: dict[str, Any] = {
            "success": True,
            "summary": {
                "total": len(results),
                "created": created,
                "failed": len(results) - created,
            },
            "results": results,
        }
        if "poolId" not in seen.json[0]:
            body["autoCreatedPool"] = {"id": "pool-1", "name": "API Pool - 2026-11-21"}
        return Reply(200, body)

    fake.route("POST", "/api/v1/inboxes", create)
    account = await add_account(client, owner, "deeplead", fake.url)
    [check] = fake.requests("GET", "/api/v1/pools")
    assert check.headers["authorization"] == f"Bearer {API_KEY}"
    made = await make_mailboxes(database, keyring, owner.workspace_id, 3, provider="google")
    # One more batch than fits in one request (100 per batch).
    await make_mailboxes(database, keyring, owner.workspace_id, 98, prefix="bulk")
    done = await wait_for_export(client, owner, (await push(client, owner, account["id"]))["id"])
    assert done["exportStatus"] == "PARTIAL"
    assert (done["connectedCount"], done["failedCount"]) == (100, 1)
    results = {r["email"]: r for r in done["results"]}
    assert results["box0@fleet.test"]["remoteId"] == "in-0"
    assert results["box1@fleet.test"]["message"] == "Already on DeepLead: Mailbox already exists"
    assert results["box2@fleet.test"]["message"] == "DeepLead: IMAP login failed"

    first, second = fake.requests("POST", "/api/v1/inboxes")
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert (len(first.json), len(second.json)) == (100, 1)
    assert first.json[0] == {
        "emailAddress": "box0@fleet.test",
        "imapUsername": "box0@fleet.test",
        "imapPassword": made[0]["password"],
        "imapHost": "imap.fleet.test",
        "imapPort": 993,
        "smtpUsername": "box0@fleet.test",
        "smtpPassword": made[0]["password"],
        "smtpHost": "smtp.fleet.test",
        "smtpPort": 587,
        "dailySendingLimit": 20,
        "provider": "google",
    }
    assert "provider" not in first.json[3]
    # The pool DeepLead made for the first batch takes the next one.
    assert second.json[0]["poolId"] == "pool-1"


# Saleshandy


def saleshandy_report(rows: list[tuple[str, str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["Email Address", "Status", "Reason"])
    writer.writerows(rows)
    return buffer.getvalue()


def fake_saleshandy(fake: FakePlatform, report_url: str) -> None:
    fake.route(
        "POST",
        "/v1/email-accounts/connect",
        Reply(
            200,
            {
                "message": "The email accounts connection process has been initiated successfully.",
                "payload": {"requestId": "129a184"},
            },
        ),
    )
    fake.script(
        "GET",
        "/v1/email-accounts/connect/status/129a184",
        Reply(200, {"message": "In progress", "payload": {"isCompleted": False}}),
    )
    fake.route(
        "GET",
        "/v1/email-accounts/connect/status/129a184",
        Reply(
            200, {"message": "Completed", "payload": {"isCompleted": True, "reportURL": report_url}}
        ),
    )


async def test_saleshandy_submits_polls_and_reads_the_report(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    fake_saleshandy(fake, f"{fake.url}/reports/129a184.csv")
    fake.route(
        "GET",
        "/reports/129a184.csv",
        Reply(
            200,
            saleshandy_report(
                [
                    ("box0@fleet.test", "Success", ""),
                    ("box1@fleet.test", "Failed", "Invalid SMTP credentials"),
                    ("box2@fleet.test", "Failed", "Email account already exists"),
                ]
            ),
            {"content-type": "text/csv"},
        ),
    )
    account = await add_account(client, owner, "saleshandy", fake.url)
    # Saleshandy has no endpoint to check a key with.
    assert account["validation"]["status"] == "unchecked"
    assert fake.requests() == []
    made = await make_mailboxes(database, keyring, owner.workspace_id, 4, provider="google")
    done = await wait_for_export(client, owner, (await push(client, owner, account["id"]))["id"])
    assert done["exportStatus"] == "PARTIAL"
    results = {r["email"]: r for r in done["results"]}
    assert results["box0@fleet.test"]["status"] == "connected"
    assert results["box1@fleet.test"]["message"] == "Saleshandy: Failed: Invalid SMTP credentials"
    assert results["box2@fleet.test"]["status"] == "connected"
    assert results["box3@fleet.test"]["message"] == "Not in Saleshandy's report"

    [sent] = fake.requests("POST", "/v1/email-accounts/connect")
    assert sent.headers["x-api-key"] == API_KEY
    assert sent.json[0] == {
        "emailServiceProvider": "gsuite",
        "fromFirstName": "Box",
        "fromLastName": "0 Sender",
        "smtpEmailAddress": "box0@fleet.test",
        "smtpUserName": "box0@fleet.test",
        "smtpPassword": made[0]["password"],
        "smtpHost": "smtp.fleet.test",
        "smtpPort": 587,
        "smtpEncryption": "tls",
        "imapEmailAddress": "box0@fleet.test",
        "imapUserName": "box0@fleet.test",
        "imapPassword": made[0]["password"],
        "imapHost": "imap.fleet.test",
        "imapPort": 993,
        "imapEncryption": "ssl",
    }
    assert len(sent.json) == 4
    polls = fake.requests("GET", "/v1/email-accounts/connect/status/129a184")
    assert len(polls) == 2
    assert all(p.headers["x-api-key"] == API_KEY for p in polls)
    [report] = fake.requests("GET", "/reports/129a184.csv")
    assert report.headers["x-api-key"] == API_KEY


async def test_saleshandy_report_elsewhere_gets_no_api_key(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    with FakePlatform() as storage:
        storage.route(
            "GET",
            "/bucket/report.csv",
            Reply(200, saleshandy_report([("box0@fleet.test", "Connected", "")])),
        )
        fake_saleshandy(fake, f"{storage.url}/bucket/report.csv?signature=abc")
        account = await add_account(client, owner, "saleshandy", fake.url)
        await make_mailboxes(database, keyring, owner.workspace_id, 1)
        done = await wait_for_export(
            client, owner, (await push(client, owner, account["id"]))["id"]
        )
        assert done["exportStatus"] == "COMPLETED", done
        [report] = storage.requests("GET", "/bucket/report.csv")
        assert report.query == {"signature": "abc"}
        assert "x-api-key" not in report.headers
        [sent] = fake.requests("POST", "/v1/email-accounts/connect")
        assert (sent.json[0]["emailServiceProvider"], sent.json[0]["smtpEncryption"]) == (
            "smtp",
            "tls",
        )


# Platform accounts


async def test_platform_accounts_check_keys_and_never_return_them(
    client: httpx.AsyncClient, owner: Account, fake: FakePlatform
) -> None:
    fake.route("GET", "/api/v2/accounts", Reply(401, {"message": "Invalid API key"}))
    refused = await add_account(client, owner, "instantly", fake.url, expect=400)
    assert refused["error"]["code"] == "VALIDATION_ERROR"
    assert refused["error"]["details"][0]["field"] == "apiKey"
    assert "Instantly refused the API key (401): Invalid API key" in refused["error"]["message"]
    assert (await client.get("/v1/exports/accounts", headers=owner.headers)).json()["data"] == []

    fake.route("GET", "/api/v2/accounts", Reply(503, {"message": "maintenance"}))
    stored = await add_account(
        client, owner, "instantly", fake.url, name="Main", email="me@x.test", password="login-pw-1"
    )
    assert stored["validation"]["status"] == "unreachable"
    assert "503" in stored["validation"]["message"]
    assert (stored["hasApiKey"], stored["hasPassword"], stored["email"]) == (
        True,
        True,
        "me@x.test",
    )

    fake.route("GET", "/api/v2/accounts", Reply(200, {"items": []}))
    before = len(fake.requests())
    renamed = await client.put(
        f"/v1/exports/accounts/{stored['id']}", json={"name": "Renamed"}, headers=owner.headers
    )
    assert renamed.json()["data"]["name"] == "Renamed"
    assert len(fake.requests()) == before
    rekeyed = await client.put(
        f"/v1/exports/accounts/{stored['id']}",
        json={"apiKey": "pk-new-key-123"},
        headers=owner.headers,
    )
    assert rekeyed.json()["data"]["validation"]["status"] == "valid"
    assert fake.requests()[-1].headers["authorization"] == "Bearer pk-new-key-123"
    listed = await client.get("/v1/exports/accounts", headers=owner.headers)
    for secret in ("pk-new-key-123", API_KEY, "login-pw-1"):
        assert secret not in listed.text + rekeyed.text + renamed.text

    bad_url = await client.post(
        "/v1/exports/accounts",
        json={"platform": "sendkit", "apiKey": "k-123", "baseUrl": "ftp://files.example.test"},
        headers=owner.headers,
    )
    assert bad_url.status_code == 400
    assert bad_url.json()["error"]["details"][0]["field"] == "baseUrl"
    nothing = await client.post(
        "/v1/exports/accounts", json={"platform": "sendkit"}, headers=owner.headers
    )
    assert nothing.status_code == 400
    deleted = await client.delete(f"/v1/exports/accounts/{stored['id']}", headers=owner.headers)
    assert deleted.status_code == 200


@pytest.fixture
def private_networks_refused(settings: Settings) -> Iterator[None]:
    previous = settings.allow_private_networks
    settings.allow_private_networks = False
    yield
    settings.allow_private_networks = previous


async def test_base_url_on_a_private_network_is_refused(
    client: httpx.AsyncClient, owner: Account, fake: FakePlatform, private_networks_refused: None
) -> None:
    response = await client.post(
        "/v1/exports/accounts",
        json={"platform": "sendkit", "apiKey": "k-123", "baseUrl": fake.url},
        headers=owner.headers,
    )
    assert response.status_code == 400
    assert "not public" in response.json()["error"]["message"]
    assert fake.requests() == []


async def test_https_platform_reached_at_the_guarded_address_with_its_name(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    loopback_tls: LoopbackTLS,
    dns_names: LocalDnsServer,
) -> None:
    """TLS to a base URL by name: the name resolves through MAILFLEET_DNS_NAMESERVERS,
    the request goes to that address, and SNI and Host keep the name, so the
    certificate (trusted through MAILFLEET_TLS_CA_FILE) verifies."""
    with FakePlatform(tls=loopback_tls.server_context(), host="localhost") as secure:
        secure.route("GET", "/v1/mailboxes", Reply(200, {"success": True, "data": []}))
        secure.route("POST", "/v1/mailboxes", Reply(201, {"success": True, "data": {"_id": "r1"}}))
        account = await add_account(client, owner, "sendkit", secure.url)
        assert account["validation"]["status"] == "valid"
        await make_mailboxes(database, keyring, owner.workspace_id, 1)
        done = await wait_for_export(
            client, owner, (await push(client, owner, account["id"]))["id"]
        )
        assert done["exportStatus"] == "COMPLETED", done
        [sent] = secure.requests("POST", "/v1/mailboxes")
        assert sent.headers["host"] == f"localhost:{secure.port}"


async def test_secrets_a_platform_echoes_encoded_are_never_stored(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    """A platform that echoes the API key URL-encoded or JSON-escaped must not get
    it into export_items.message, which every member (viewers too) reads."""
    # Printable ASCII without spaces, as an API key must be (it travels in a header).
    key = 'pk/"quoted"+a&b=c\\d-0123'
    fake.route("GET", "/api/v2/accounts", Reply(200, {"items": []}))
    echoes = {
        "box0@fleet.test": Reply(400, {"message": f"bad token {quote(key, safe='')}"}),
        "box1@fleet.test": Reply(400, {"message": f"bad token {quote_plus(key).lower()}"}),
        "box2@fleet.test": Reply(400, {"message": "request was " + json.dumps({"key": key})}),
        # Not JSON: the raw body (here the request echoed as JSON text) is never kept.
        "box3@fleet.test": Reply(500, json.dumps({"authorization": f"Bearer {key}"})),
        "box4@fleet.test": Reply(422, {"message": f"token {key} refused"}),
    }
    fake.route("POST", "/api/v2/accounts", lambda seen: echoes[seen.json["email"]])
    account = await add_account(client, owner, "instantly", fake.url, api_key=key)
    made = await make_mailboxes(database, keyring, owner.workspace_id, 5)

    queued = await push(client, owner, account["id"])
    done = await wait_for_export(client, owner, queued["id"])

    messages = {r["email"]: r["message"] for r in done["results"]}
    assert len(messages) == len(made)
    forms = {key, quote(key, safe=""), quote_plus(key), json.dumps(key)[1:-1], "+a&b=c"}
    for email, message in messages.items():
        leaked = [form for form in forms if form.lower() in message.lower()]
        assert leaked == [], (email, message)
    assert messages["box0@fleet.test"] == "Instantly answered 400: bad token [redacted]"
    assert (
        messages["box3@fleet.test"] == "Instantly answered 500: HTTP 500, no message in the answer"
    )
    assert messages["box4@fleet.test"] == "Instantly answered 422: token [redacted] refused"


@pytest.mark.parametrize(
    ("status", "message", "exists"),
    [
        (409, "Mailbox already exists", True),
        (409, "HTTP 409, no message in the answer", True),
        (400, "Email already added to this workspace", True),
        (422, "duplicate inbox", True),
        # Mailfleet's own 409 for a row changed by a concurrent request: not a duplicate.
        (409, "The record was changed or removed by another request while it ran; retry", False),
        (409, "Conflict, please try again", False),
        (403, "Mailbox limit reached for your plan", False),
    ],
)
def test_what_counts_as_already_on_the_platform(status: int, message: str, exists: bool) -> None:
    from mailfleet.platforms.base import already_exists

    assert already_exists(status, message) is exists
