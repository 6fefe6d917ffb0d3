"""POST /v1/exports/mailboxes as CSV: each layout parsed back and compared, the
selection filters, and credentials only for owners and admins."""

from __future__ import annotations

import csv
import io
from typing import Any

import httpx
import pytest

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from tests.conftest import Account, make_account
from tests.exports.conftest import make_mailboxes


async def export(
    client: httpx.AsyncClient, account: Account, expect: int = 200, **body: Any
) -> httpx.Response:
    response = await client.post("/v1/exports/mailboxes", json=body, headers=account.headers)
    assert response.status_code == expect, response.text
    return response


def parse(response: httpx.Response) -> list[dict[str, str]]:
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    return list(csv.DictReader(io.StringIO(response.text)))


@pytest.fixture
async def fleet(database: Database, keyring: Keyring, owner: Account) -> list[dict[str, Any]]:
    tagged = await make_mailboxes(
        database,
        keyring,
        owner.workspace_id,
        2,
        tags=["warm", "q3"],
        signature='=HYPERLINK("http://evil.test")',
    )
    other = await make_mailboxes(
        database,
        keyring,
        owner.workspace_id,
        1,
        domain="other.test",
        prefix="solo",
        displayName="Solo",
        imap={"host": "imap.other.test", "port": 143, "secure": False, "password": "imap-pw-solo"},
    )
    return tagged + other


async def test_instantly_layout(
    client: httpx.AsyncClient, owner: Account, fleet: list[dict[str, Any]]
) -> None:
    response = await export(client, owner, layout="instantly")
    assert response.headers["x-credentials-included"] == "true"
    rows = parse(response)
    assert [row["Email"] for row in rows] == [m["email"] for m in fleet]
    assert rows[0] == {
        "Email": "box0@fleet.test",
        "First Name": "Box",
        "Last Name": "0 Sender",
        "IMAP Username": "box0@fleet.test",
        "IMAP Password": fleet[0]["password"],
        "IMAP Host": "imap.fleet.test",
        "IMAP Port": "993",
        "SMTP Username": "box0@fleet.test",
        "SMTP Password": fleet[0]["password"],
        "SMTP Host": "smtp.fleet.test",
        "SMTP Port": "587",
        "Daily Limit": "20",
        "Warmup Enabled": "",
        "Warmup Limit": "",
        "Warmup Increment": "",
    }
    solo = rows[2]
    assert (solo["First Name"], solo["Last Name"]) == ("Solo", "")
    assert (solo["IMAP Password"], solo["IMAP Port"]) == ("imap-pw-solo", "143")
    assert solo["SMTP Password"] == fleet[2]["password"]


async def test_smartlead_layout(
    client: httpx.AsyncClient, owner: Account, fleet: list[dict[str, Any]]
) -> None:
    rows = parse(await export(client, owner, layout="smartlead"))
    assert rows[0] == {
        "from_name": "Box 0 Sender",
        "from_email": "box0@fleet.test",
        "user_name": "box0@fleet.test",
        "password": fleet[0]["password"],
        "smtp_host": "smtp.fleet.test",
        "smtp_port": "587",
        "imap_host": "imap.fleet.test",
        "imap_port": "993",
        "max_email_per_day": "20",
        "custom_tracking_url": "",
        "warmup_enabled": "",
        "total_warmup_per_day": "",
        "daily_rampup": "",
        "reply_rate_percentage": "",
        "bcc": "",
        # A spreadsheet would run this as a formula; the apostrophe keeps it text.
        "signature": '\'=HYPERLINK("http://evil.test")',
        "different_reply_to_address": "",
        "imap_user_name": "box0@fleet.test",
        "imap_password": fleet[0]["password"],
    }


async def test_mailfleet_layout_imports_back_as_the_same_mailboxes(
    client: httpx.AsyncClient, owner: Account, fleet: list[dict[str, Any]]
) -> None:
    response = await export(client, owner)
    rows = parse(response)
    assert rows[2] == {
        "email": "solo0@other.test",
        "display_name": "Solo",
        "provider": "custom",
        "smtp_host": "smtp.fleet.test",
        "smtp_port": "587",
        "smtp_username": "solo0@other.test",
        "smtp_password": fleet[2]["password"],
        "smtp_secure": "true",
        "imap_host": "imap.other.test",
        "imap_port": "143",
        "imap_username": "solo0@other.test",
        "imap_password": "imap-pw-solo",
        "imap_secure": "false",
        "daily_limit": "20",
        "tags": "",
        "signature": "",
    }
    assert rows[0]["tags"] in ("warm;q3", "q3;warm")

    formats = pytest.importorskip("mailfleet.bulk.formats")
    layout, parsed = formats.rows_from_csv(response.text, max_rows=100)
    assert layout == "mailfleet"
    solo = parsed[2].data
    assert solo is not None, parsed[2].error
    assert (solo.email, solo.display_name, solo.daily_send_limit) == (
        "solo0@other.test",
        "Solo",
        20,
    )
    assert (solo.smtp.host, solo.smtp.port, solo.smtp.secure) == ("smtp.fleet.test", 587, True)
    assert solo.smtp.password == fleet[2]["password"]
    assert solo.imap is not None
    assert (solo.imap.host, solo.imap.port, solo.imap.secure) == ("imap.other.test", 143, False)
    assert solo.imap.password == "imap-pw-solo"
    assert set(parsed[0].data.tags) == {"warm", "q3"}


async def test_selection_filters(
    client: httpx.AsyncClient, owner: Account, fleet: list[dict[str, Any]]
) -> None:
    async def emails(**selection: Any) -> list[str]:
        rows = parse(await export(client, owner, includeCredentials=False, **selection))
        return [row["email"] for row in rows]

    assert await emails(tags=["warm"]) == ["box0@fleet.test", "box1@fleet.test"]
    assert await emails(domain="OTHER.test") == ["solo0@other.test"]
    assert await emails(search="SOLO") == ["solo0@other.test"]
    assert await emails(mailboxIds=[fleet[1]["id"], fleet[2]["id"], "nope"]) == [
        "box1@fleet.test",
        "solo0@other.test",
    ]
    assert await emails(status="active", tags=["q3"], search="box1") == ["box1@fleet.test"]
    empty = await export(client, owner, expect=400, status="paused")
    assert empty.json()["error"]["message"] == "No mailboxes match the selection"
    typo = await export(client, owner, expect=400, tag="warm")
    assert typo.json()["error"]["details"][0]["field"] == "tag"


async def test_credentials_only_for_owners_and_admins(
    client: httpx.AsyncClient, owner: Account, database: Database, fleet: list[dict[str, Any]]
) -> None:
    member = await make_account(database, "member@example.test")
    added = await client.post(
        f"/v1/workspaces/{owner.workspace_id}/members",
        json={"email": member.email, "role": "member"},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    as_member = Account(
        member.user_id, owner.workspace_id, member.api_key, member.email, member.password
    )
    as_member_headers = {**member.headers, "x-workspace-id": owner.workspace_id}
    response = await client.post(
        "/v1/exports/mailboxes", json={"layout": "instantly"}, headers=as_member_headers
    )
    assert response.status_code == 200
    assert response.headers["x-credentials-included"] == "false"
    rows = parse(response)
    assert len(rows) == 3
    assert {row["SMTP Password"] for row in rows} == {""}
    assert {row["IMAP Password"] for row in rows} == {""}
    assert rows[0]["SMTP Host"] == "smtp.fleet.test"
    for mailbox in fleet:
        assert mailbox["password"] not in response.text

    refused = await client.post(
        "/v1/exports/mailboxes",
        json={"layout": "instantly", "includeCredentials": True},
        headers=as_member_headers,
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "FORBIDDEN"
    assert as_member.user_id == member.user_id

    # The history says who exported what, and whether passwords went with it.
    listed = await client.get("/v1/export-history?source=csv", headers=owner.headers)
    [entry] = listed.json()["data"]
    assert (entry["layout"], entry["credentialsIncluded"], entry["createdBy"]) == (
        "instantly",
        False,
        member.user_id,
    )
    assert (entry["exportStatus"], entry["totalMailboxes"]) == ("COMPLETED", 3)
