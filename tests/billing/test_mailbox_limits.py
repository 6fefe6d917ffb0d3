"""The billing limits on the real mailbox-creating routes: SendKit's bodies verbatim
on POST /v1/mailboxes, per-item failures on DeepLead's batch, and removal at renewal."""

from __future__ import annotations

import httpx

from mailfleet.config import Settings
from mailfleet.db import Database
from tests.billing.conftest import add_mailboxes, create_plan, grant, subscribe
from tests.conftest import Account
from tests.servers.blackhole import BlackholeServer

BODY = {"email": "new@limits.test", "smtp": {"host": "127.0.0.1", "password": "x"}}


async def test_post_mailboxes_without_subscription(
    client: httpx.AsyncClient, billing_on: Settings, owner: Account
) -> None:
    response = await client.post("/v1/mailboxes", json=BODY, headers=owner.headers)
    assert response.status_code == 403
    assert response.json() == {
        "success": False,
        "error": {
            "code": "SUBSCRIPTION_REQUIRED",
            "message": "Workspace owner needs an active subscription to add mailboxes",
        },
    }
    listed = await client.get("/v1/mailboxes", headers=owner.headers)
    assert listed.json()["pagination"]["total"] == 0


async def test_post_mailboxes_at_the_limit(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
    blackhole: BlackholeServer,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 10_000)
    await subscribe(client, owner, plan["id"], 3)
    await add_mailboxes(database, owner.workspace_id, 2)
    # Its first connection test must still be running when the workspace is full
    # below: a failed first test deletes the mailbox and frees its seat (a closed
    # port failed fast enough, once queue wake-ups got quick, to make this flaky).
    held = {**BODY, "smtp": {**BODY["smtp"], "port": blackhole.port, "secure": False}}
    first = await client.post("/v1/mailboxes", json=held, headers=owner.headers)
    assert first.status_code == 201, first.text
    over = await client.post(
        "/v1/mailboxes", json={**BODY, "email": "fourth@limits.test"}, headers=owner.headers
    )
    assert over.status_code == 403
    assert over.json() == {
        "success": False,
        "error": {
            "code": "LIMIT_REACHED",
            "message": "Mailbox limit reached for your plan",
            "currentUsage": 3,
            "maxMailboxes": 3,
            "requested": 1,
        },
    }

    batch = [
        {"emailAddress": "a@gmail.com", "imapPassword": "x", "skipConnectionTest": True},
    ]
    deeplead = await client.post(
        "/api/v1/inboxes", json=batch * 1, headers={"Authorization": f"Bearer {owner.api_key}"}
    )
    result = deeplead.json()
    assert result["summary"] == {"total": 1, "created": 0, "failed": 1}
    assert "limit" in result["results"][0]["error"].lower()


async def test_delete_of_a_billed_mailbox_waits_for_the_renewal(
    client: httpx.AsyncClient,
    billing_on: Settings,
    database: Database,
    owner: Account,
    admin: Account,
) -> None:
    plan = await create_plan(client, admin, pricePerMailbox=100)
    await grant(client, admin, owner.workspace_id, 10_000)
    await subscribe(client, owner, plan["id"], 2)
    (mailbox_id,) = await add_mailboxes(database, owner.workspace_id, 1)
    response = await client.delete(f"/v1/mailboxes/{mailbox_id}", headers=owner.headers)
    assert response.status_code == 200
    assert response.json()["message"] == "Mailbox will be removed at the next renewal"
    assert response.json()["data"]["removalAt"].endswith("Z")
    still = await client.get(f"/v1/mailboxes/{mailbox_id}", headers=owner.headers)
    assert still.status_code == 200
