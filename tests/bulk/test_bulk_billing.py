"""With billing on, a bulk import takes plan seats like any other way of adding mailboxes."""

from __future__ import annotations

import httpx

from mailfleet.config import Settings
from tests.billing.conftest import admin, billing_on, create_plan, grant, subscribe
from tests.bulk.conftest import item, make_users, report_rows, wait_for_job
from tests.conftest import Account
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer

__all__ = ["admin", "billing_on"]


async def test_rows_past_the_last_seat_fail_with_limit_reached(
    client: httpx.AsyncClient,
    owner: Account,
    admin: Account,
    billing_on: Settings,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
) -> None:
    users = make_users(smtp_plain, dovecot, 3)
    items = [item(email, password, smtp_plain, dovecot) for email, password in users]
    refused = await client.post("/v1/mailboxes/bulk", json=items, headers=owner.headers)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "SUBSCRIPTION_REQUIRED"

    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 1000)
    await subscribe(client, owner, plan["id"], 2)
    response = await client.post("/v1/mailboxes/bulk", json=items, headers=owner.headers)
    assert response.status_code == 202, response.text
    job = await wait_for_job(client, owner, response.json()["data"]["id"])
    assert job["counts"]["connected"] == 2
    assert job["counts"]["failed"] == 1
    rows = await report_rows(client, owner, job["id"])
    assert [(r["outcome"], r["error_code"]) for r in rows] == [
        ("connected", ""),
        ("connected", ""),
        ("failed", "LIMIT_REACHED"),
    ]
    assert rows[2]["mailbox_id"] == ""
