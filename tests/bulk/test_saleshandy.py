"""Saleshandy's connect API (seed 004): the example verbatim, the status API, the
CSV report, and its error shapes."""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

import httpx

from mailfleet.compat.saleshandy import CONNECT_MESSAGE
from tests.bulk.conftest import make_users
from tests.conftest import Account
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer

# The seed's request body, byte for byte as the document shows it (the addresses
# are as the published page renders them).
SEED_BODY = """[
  {
    "emailServiceProvider": "gsuite",
    "fromFirstName": "John",
    "fromLastName": "Snow",
    "smtpEmailAddress": "[email protected]",
    "smtpUserName": "[email protected]",
    "smtpPassword": "smtp-password",
    "smtpHost": "smtp.gmail.com",
    "smtpPort": 465,
    "smtpEncryption": "ssl",
    "imapEmailAddress": "[email protected]",
    "imapUserName": "[email protected]",
    "imapPassword": "imap-password",
    "imapHost": "imap.gmail.com",
    "imapPort": 993,
    "imapEncryption": "ssl"
  }
]"""


def bearer(account: Account) -> dict[str, str]:
    return {"Authorization": f"Bearer {account.api_key}"}


async def wait_until_completed(
    client: httpx.AsyncClient, headers: dict[str, str], request_id: str
) -> dict[str, Any]:
    for _ in range(600):
        response = await client.get(
            f"/v1/email-accounts/connect/status/{request_id}", headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert set(body) == {"message", "payload"}
        assert set(body["payload"]) == {"isCompleted", "reportURL"}
        if body["payload"]["isCompleted"]:
            return body
        assert body["payload"]["reportURL"] is None
        await asyncio.sleep(0.1)
    raise AssertionError("the import never completed")


async def download(
    client: httpx.AsyncClient, url: str, headers: dict[str, str]
) -> list[dict[str, str]]:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


async def test_seed_example_verbatim(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.post(
        "/v1/email-accounts/connect",
        content=SEED_BODY,
        headers={**bearer(owner), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == CONNECT_MESSAGE
    assert set(body["payload"]) == {"requestId"}
    request_id = body["payload"]["requestId"]
    assert "smtp-password" not in response.text

    status = await wait_until_completed(client, bearer(owner), request_id)
    url = status["payload"]["reportURL"]
    assert url == f"http://mailfleet.test/v1/jobs/{request_id}/report.csv"
    rows = await download(client, url, {"x-api-key": owner.api_key})
    assert len(rows) == 1
    # "[email protected]" is not an address: the account is reported, not connected.
    assert rows[0]["row"] == "1"
    assert rows[0]["email"] == "[email protected]"
    assert rows[0]["outcome"] == "invalid"
    assert rows[0]["message"].startswith("smtpEmailAddress:")


async def test_accounts_connect_and_report(
    client: httpx.AsyncClient, owner: Account, smtp_plain: SmtpServer, dovecot: DovecotServer
) -> None:
    (good, good_pw), (bad, _) = make_users(smtp_plain, dovecot, 2)

    def account(email: str, password: str, encryption: str = "none") -> dict[str, Any]:
        return {
            "emailServiceProvider": "smtp",
            "fromFirstName": "Jon",
            "fromLastName": "Doe",
            "smtpEmailAddress": email,
            "smtpUserName": email,
            "smtpPassword": password,
            "smtpHost": "127.0.0.1",
            "smtpPort": smtp_plain.port,
            "smtpEncryption": encryption,
            "imapEmailAddress": email,
            "imapUserName": email,
            "imapPassword": password,
            "imapHost": "127.0.0.1",
            "imapPort": dovecot.port,
            "imapEncryption": "none",
            "someFutureField": True,
        }

    accounts = [
        account(good, good_pw),
        account(bad, "wrong"),
        account("third@bulk.test", "pw", encryption="starttls"),
        {"fromFirstName": "No", "smtpPassword": "pw"},
    ]
    headers = {"x-api-key": owner.api_key}
    response = await client.post("/v1/email-accounts/connect", json=accounts, headers=headers)
    assert response.status_code == 200, response.text
    request_id = response.json()["payload"]["requestId"]
    status = await wait_until_completed(client, headers, request_id)
    rows = await download(client, status["payload"]["reportURL"], headers)
    assert [(r["email"], r["outcome"], r["error_code"]) for r in rows] == [
        (good, "connected", ""),
        (bad, "failed", "AUTH_FAILED"),
        ("third@bulk.test", "invalid", "VALIDATION_ERROR"),
        ("", "invalid", "VALIDATION_ERROR"),
    ]
    assert rows[2]["message"] == "smtpEncryption: must be ssl, tls or none"
    assert "smtpEmailAddress" in rows[3]["message"]
    assert "smtpHost" in rows[3]["message"]

    mailboxes = (await client.get("/v1/mailboxes", headers=headers)).json()["data"]
    assert [(m["email"], m["displayName"], m["provider"]) for m in mailboxes] == [
        (good, "Jon Doe", "smtp")
    ]
    job = (await client.get(f"/v1/jobs/{request_id}", headers=headers)).json()["data"]
    assert job["source"] == "saleshandy"

    again = await client.post(
        "/v1/email-accounts/connect",
        json=accounts,
        headers={**headers, "Idempotency-Key": "sh-1"},
    )
    repeat = await client.post(
        "/v1/email-accounts/connect",
        json=accounts,
        headers={**headers, "Idempotency-Key": "sh-1"},
    )
    assert again.json() == repeat.json()


async def test_errors_in_saleshandy_shape(client: httpx.AsyncClient, owner: Account) -> None:
    anonymous = await client.post("/v1/email-accounts/connect", json=[])
    assert anonymous.status_code == 401
    assert set(anonymous.json()) == {"message", "payload"}
    wrong_key = await client.get(
        "/v1/email-accounts/connect/status/abc", headers={"x-api-key": "mf_user_nope"}
    )
    assert wrong_key.status_code == 401
    assert wrong_key.json()["payload"] is None

    headers = {"x-api-key": owner.api_key}
    missing = await client.get("/v1/email-accounts/connect/status/abc", headers=headers)
    assert missing.status_code == 404
    assert set(missing.json()) == {"message", "payload"}
    not_array = await client.post(
        "/v1/email-accounts/connect", json={"accounts": []}, headers=headers
    )
    assert not_array.status_code == 400
    assert not_array.json()["payload"]["errors"][0]["field"] == "body"
    empty = await client.post("/v1/email-accounts/connect", json=[], headers=headers)
    assert empty.status_code == 400
    broken = await client.post(
        "/v1/email-accounts/connect",
        content=b"[{",
        headers={**headers, "content-type": "application/json"},
    )
    assert broken.status_code == 400
    assert broken.json()["message"] == (
        "The request body is not valid JSON: "
        "Expecting property name enclosed in double quotes at line 1, column 3"
    )
