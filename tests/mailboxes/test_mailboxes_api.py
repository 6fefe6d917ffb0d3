"""POST /v1/mailboxes and the connection-test resource, against real servers on loopback.

Host names resolve through the test DNS server (MAILFLEET_DNS_NAMESERVERS), so
even the seed's verbatim example only ever reaches 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Account
from tests.servers.blackhole import BlackholeServer
from tests.servers.dnsserver import LocalDnsServer
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer

SEED_EXAMPLE = {
    "email": "sarah@company.com",
    "displayName": "Sarah Johnson",
    "provider": "custom",
    "smtp": {
        "host": "smtp.company.com",
        "port": 587,
        "secure": True,
        "username": "sarah@company.com",
        "password": "app-password-here",
    },
    "imap": {
        "host": "imap.company.com",
        "port": 993,
        "secure": True,
        "username": "sarah@company.com",
        "password": "app-password-here",
    },
    "dailySendLimit": 15,
    "signature": "<p>Best regards,<br>Sarah Johnson</p>",
    "tags": ["outreach"],
}

SEED_RESPONSE_KEYS = {
    "_id",
    "email",
    "displayName",
    "provider",
    "status",
    "connectionType",
    "dailySendLimit",
    "sendingEnabled",
    "signature",
    "tags",
    "smtpHost",
    "smtpPort",
    "smtpSecure",
    "imapHost",
    "imapPort",
    "imapSecure",
    "createdAt",
    "updatedAt",
}


async def wait_for_test(
    client: httpx.AsyncClient, account: Account, mailbox_id: str, within: float = 30
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await client.get(
            f"/v1/mailboxes/{mailbox_id}/connection-test", headers=account.headers
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()["data"]
        if data["status"] != "pending":
            return data
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"connection test still pending: {data}")
        await asyncio.sleep(0.1)


def new_user(
    smtp: SmtpServer, dovecot: DovecotServer, domain: str = "mailfleet.test"
) -> tuple[str, str]:
    email = f"u{uuid.uuid4().hex[:10]}@{domain}"
    password = f"pw-{uuid.uuid4().hex}"
    smtp.users[email] = password
    dovecot.add_user(email, password)
    return email, password


def mailbox_body(
    email: str, password: str, smtp: SmtpServer, dovecot: DovecotServer, **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "email": email,
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "secure": False, "password": password},
        "imap": {"host": "127.0.0.1", "port": dovecot.port, "secure": False, "password": password},
    }
    body.update(overrides)
    return body


async def test_seed_example_verbatim(
    client: httpx.AsyncClient, owner: Account, dns_names: LocalDnsServer
) -> None:
    response = await client.post("/v1/mailboxes", json=SEED_EXAMPLE, headers=owner.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True
    assert body["message"].startswith("Mailbox queued for SMTP verification.")
    data = body["data"]
    assert set(data) >= SEED_RESPONSE_KEYS
    assert data["status"] == "inactive"
    assert data["connectionType"] == "smtp"
    assert data["sendingEnabled"] is False
    assert data["tags"] == ["outreach"]
    assert (data["smtpHost"], data["smtpPort"], data["smtpSecure"]) == (
        "smtp.company.com",
        587,
        True,
    )
    assert (data["imapHost"], data["imapPort"], data["imapSecure"]) == (
        "imap.company.com",
        993,
        True,
    )
    assert len(data["_id"]) == 24
    assert int(data["_id"], 16) >= 0
    assert data["createdAt"].endswith("Z")
    assert len(data["createdAt"]) == 24
    assert "app-password-here" not in response.text
    # No credential field at all, not even an empty one (hosted mailboxes show a
    # generated password only in the answer that made it).
    assert "password" not in data
    # smtp.company.com resolves to 127.0.0.1 in the test DNS, where port 587 is closed.
    result = await wait_for_test(client, owner, data["_id"])
    assert result["status"] == "failed"
    assert result["error"]["code"] == "CONNECTION_REFUSED"
    assert result["mailboxDeleted"] is True


async def test_good_credentials_make_the_mailbox_active(
    client: httpx.AsyncClient,
    owner: Account,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
    dns_names: LocalDnsServer,
) -> None:
    email, password = new_user(smtp_plain, dovecot)
    dns_names.set_records("mailfleet.test", "MX", ["10 mx.mailfleet.test"])
    dns_names.set_records("mailfleet.test", "TXT", ["v=spf1 ip4:127.0.0.1 -all"])
    dns_names.set_records("_dmarc.mailfleet.test", "TXT", ["v=DMARC1; p=reject"])
    created = await client.post(
        "/v1/mailboxes",
        json=mailbox_body(email, password, smtp_plain, dovecot),
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    mailbox_id = created.json()["data"]["id"]
    result = await wait_for_test(client, owner, mailbox_id)
    assert result["status"] == "success", result
    assert result["smtp"]["ok"]
    assert result["imap"]["ok"]
    assert "INBOX" in result["imap"]["folders"]
    assert result["smtp"]["latencyMs"] >= 0

    mailbox = (await client.get(f"/v1/mailboxes/{mailbox_id}", headers=owner.headers)).json()[
        "data"
    ]
    assert mailbox["status"] == "active"
    assert mailbox["sendingEnabled"] is True
    assert mailbox["displayName"] == email.split("@")[0]
    assert mailbox["provider"] == "custom"
    assert mailbox["dailySendLimit"] == 15
    for _ in range(100):  # the DNS step runs right after the status flips
        if mailbox["setupStatus"]:
            break
        await asyncio.sleep(0.05)
        mailbox = (await client.get(f"/v1/mailboxes/{mailbox_id}", headers=owner.headers)).json()[
            "data"
        ]
    setup = mailbox["setupStatus"]
    assert setup["mx"]["status"] == "pass"
    assert setup["spf"]["status"] == "pass"
    assert setup["dmarc"]["status"] == "pass"
    assert setup["dkim"]["status"] == "fail"


@pytest.mark.parametrize("wrong", ["smtp", "imap"])
async def test_wrong_password_deletes_the_mailbox(
    client: httpx.AsyncClient,
    owner: Account,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
    wrong: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    email, password = new_user(smtp_plain, dovecot)
    body = mailbox_body(email, password, smtp_plain, dovecot)
    body[wrong]["password"] = "definitely-wrong-password"
    created = await client.post("/v1/mailboxes", json=body, headers=owner.headers)
    mailbox_id = created.json()["data"]["id"]
    result = await wait_for_test(client, owner, mailbox_id)
    assert result["status"] == "failed"
    assert result["error"]["code"] == "AUTH_FAILED"
    assert result["error"]["message"].startswith(wrong.upper())
    assert result["mailboxDeleted"] is True
    assert result[wrong]["ok"] is False
    gone = await client.get(f"/v1/mailboxes/{mailbox_id}", headers=owner.headers)
    assert gone.status_code == 404
    # The poller still learns why, after the deletion.
    again = await client.get(f"/v1/mailboxes/{mailbox_id}/connection-test", headers=owner.headers)
    assert again.json()["data"]["error"]["code"] == "AUTH_FAILED"
    for secret in (password, "definitely-wrong-password"):
        assert secret not in caplog.text
        assert secret not in again.text


async def test_imap_omitted_reuses_smtp_credentials(
    client: httpx.AsyncClient, owner: Account, smtp_plain: SmtpServer, dovecot: DovecotServer
) -> None:
    email, password = new_user(smtp_plain, dovecot)
    body = mailbox_body(email, password, smtp_plain, dovecot)
    del body["imap"]
    created = await client.post("/v1/mailboxes", json=body, headers=owner.headers)
    data = created.json()["data"]
    assert (data["imapHost"], data["imapPort"], data["imapUsername"]) == ("127.0.0.1", 993, email)


async def test_connection_refused(
    client: httpx.AsyncClient, owner: Account, closed_port: int, dovecot: DovecotServer
) -> None:
    body = {
        "email": "refused@mailfleet.test",
        "smtp": {"host": "127.0.0.1", "port": closed_port, "secure": False, "password": "x"},
        "imap": {"host": "127.0.0.1", "port": dovecot.port, "secure": False, "password": "x"},
    }
    created = await client.post("/v1/mailboxes", json=body, headers=owner.headers)
    result = await wait_for_test(client, owner, created.json()["data"]["id"])
    assert result["error"]["code"] == "CONNECTION_REFUSED"


async def test_timeout(
    client: httpx.AsyncClient, owner: Account, blackhole: BlackholeServer, short_mail_timeout: None
) -> None:
    body = {
        "email": "slow@mailfleet.test",
        "smtp": {"host": "127.0.0.1", "port": blackhole.port, "secure": False, "password": "x"},
        "imap": {"host": "127.0.0.1", "port": blackhole.port, "secure": False, "password": "x"},
    }
    created = await client.post("/v1/mailboxes", json=body, headers=owner.headers)
    result = await wait_for_test(client, owner, created.json()["data"]["id"])
    assert result["error"]["code"] == "TIMEOUT"


async def test_tls_mismatch(
    client: httpx.AsyncClient, owner: Account, smtp_plain: SmtpServer, dovecot: DovecotServer
) -> None:
    """secure=true asks for TLS; a server that offers none fails with TLS_ERROR."""
    email, password = new_user(smtp_plain, dovecot)
    body = mailbox_body(email, password, smtp_plain, dovecot)
    body["smtp"]["secure"] = True
    created = await client.post("/v1/mailboxes", json=body, headers=owner.headers)
    result = await wait_for_test(client, owner, created.json()["data"]["id"])
    assert result["status"] == "failed"
    assert result["error"]["code"] == "TLS_ERROR", result


async def test_starttls_servers_succeed(
    client: httpx.AsyncClient,
    owner: Account,
    smtp_starttls: SmtpServer,
    dovecot: DovecotServer,
    dns_names: LocalDnsServer,
) -> None:
    """secure=true on a port other than 465/993 means STARTTLS, verified against the test CA."""
    email, password = new_user(smtp_starttls, dovecot)
    body = {
        "email": email,
        "smtp": {
            "host": "localhost",
            "port": smtp_starttls.port,
            "secure": True,
            "password": password,
        },
        "imap": {"host": "localhost", "port": dovecot.port, "secure": True, "password": password},
    }
    created = await client.post("/v1/mailboxes", json=body, headers=owner.headers)
    result = await wait_for_test(client, owner, created.json()["data"]["id"])
    assert result["status"] == "success", result


async def test_duplicate_is_409_and_changes_nothing(
    client: httpx.AsyncClient, owner: Account
) -> None:
    body = {"email": "Dup@Mailfleet.test", "smtp": {"host": "127.0.0.1", "password": "x"}}
    first = await client.post("/v1/mailboxes", json=body, headers=owner.headers)
    assert first.status_code == 201
    assert first.json()["data"]["email"] == "dup@mailfleet.test"
    second = await client.post(
        "/v1/mailboxes", json={**body, "email": "dup@mailfleet.test"}, headers=owner.headers
    )
    assert second.status_code == 409
    assert second.json() == {
        "success": False,
        "error": {"code": "CONFLICT", "message": "Mailbox already exists"},
    }


@pytest.mark.parametrize(("given", "stored"), [(0, 1), (-5, 1), (51, 50), (1000, 50), (30, 30)])
async def test_daily_limit_is_clamped(
    client: httpx.AsyncClient, owner: Account, given: int, stored: int
) -> None:
    body = {
        "email": f"clamp{given}@mailfleet.test",
        "smtp": {"host": "127.0.0.1", "password": "x"},
        "dailySendLimit": given,
    }
    response = await client.post("/v1/mailboxes", json=body, headers=owner.headers)
    assert response.status_code == 201
    assert response.json()["data"]["dailySendLimit"] == stored


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"smtp": {"host": "h.test", "password": "x"}}, "email"),
        ({"email": "not-an-email", "smtp": {"host": "h.test", "password": "x"}}, "email"),
        ({"email": "a@b.test"}, "smtp"),
        ({"email": "a@b.test", "smtp": {"host": "h.test"}}, "smtp.password"),
        (
            {"email": "a@b.test", "smtp": {"host": "h.test", "password": "x", "port": 0}},
            "smtp.port",
        ),
        ({"email": "a@b.test", "smtp": {"host": "bad host!", "password": "x"}}, "smtp.host"),
        (
            {
                "email": "a@b.test",
                "smtp": {"host": "h.test", "password": "x"},
                "dailySendLimit": "many",
            },
            "dailySendLimit",
        ),
    ],
)
async def test_bad_input_is_400_with_the_field(
    client: httpx.AsyncClient, owner: Account, body: dict[str, Any], field: str
) -> None:
    response = await client.post("/v1/mailboxes", json=body, headers=owner.headers)
    assert response.status_code == 400, response.text
    assert field in [d["field"] for d in response.json()["error"]["details"]]


@pytest.mark.db
async def test_two_requests_naming_the_same_new_tag_both_get_it(
    database: Any, owner: Account
) -> None:
    """Tags named in a mailbox body are created on the fly. Two requests naming the
    same new tag at once used to race past the look-up: the second insert hit the
    unique constraint and answered 500. The second waits for the first and uses its
    tag."""
    from mailfleet.mailboxes import service

    async def second() -> list[str]:
        async with database.transaction() as session:
            return [
                tag.id
                for tag in await service.tags_by_name(session, owner.workspace_id, ["launch"])
            ]

    async with database.transaction() as session:
        first = await service.tags_by_name(session, owner.workspace_id, ["launch", "q3"])
        racing = asyncio.create_task(second())
        # The second transaction looks the tag up and blocks on its insert until
        # this one commits (the write lock on SQLite, the unique index on PostgreSQL).
        await asyncio.sleep(0.5)
        assert not racing.done()
    assert await racing == [first[0].id]
