"""The rest of the mailbox resource: list filters, update, re-test, delete, tags, counts."""

from __future__ import annotations

from typing import Any

import httpx

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.mailboxes import service
from mailfleet.mailboxes.schemas import MailboxCreate
from mailfleet.mailboxes.workflows import requeue_pending_tests
from tests.conftest import Account, HeldMailbox, make_account
from tests.jobs.ticks import clear_of_sweeper_ticks
from tests.mailboxes.test_mailboxes_api import mailbox_body, new_user, wait_for_test
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer


async def make_active_mailbox(
    client: httpx.AsyncClient,
    owner: Account,
    smtp: SmtpServer,
    dovecot: DovecotServer,
    **overrides: Any,
) -> tuple[dict[str, Any], str]:
    email, password = new_user(smtp, dovecot)
    created = await client.post(
        "/v1/mailboxes",
        json=mailbox_body(email, password, smtp, dovecot, **overrides),
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    mailbox_id = created.json()["data"]["id"]
    assert (await wait_for_test(client, owner, mailbox_id))["status"] == "success"
    mailbox = await client.get(f"/v1/mailboxes/{mailbox_id}", headers=owner.headers)
    return mailbox.json()["data"], password


async def test_list_filters_and_pagination(
    client: httpx.AsyncClient,
    owner: Account,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
    held_mailbox: HeldMailbox,
) -> None:
    active, _ = await make_active_mailbox(
        client, owner, smtp_plain, dovecot, tags=["warm"], provider="Google"
    )
    await held_mailbox(owner.workspace_id, "other@else.test")

    async def ids(query: str) -> list[str]:
        response = await client.get(f"/v1/mailboxes?{query}", headers=owner.headers)
        assert response.status_code == 200, response.text
        return [m["email"] for m in response.json()["data"]]

    assert await ids("status=active") == [active["email"]]
    assert await ids("provider=google") == [active["email"]]
    assert await ids("tag=warm") == [active["email"]]
    assert await ids("domain=else.test") == ["other@else.test"]
    assert await ids(f"search={active['email'][:6].upper()}") == [active["email"]]
    page = await client.get("/v1/mailboxes?limit=1", headers=owner.headers)
    pagination = page.json()["pagination"]
    assert pagination.pop("nextCursor")
    assert pagination == {"total": 2, "limit": 1, "skip": 0, "hasMore": True}


async def test_update_pause_resume_and_retest(
    client: httpx.AsyncClient, owner: Account, smtp_plain: SmtpServer, dovecot: DovecotServer
) -> None:
    mailbox, password = await make_active_mailbox(client, owner, smtp_plain, dovecot)
    url = f"/v1/mailboxes/{mailbox['id']}"

    paused = await client.put(
        url,
        json={"sendingEnabled": False, "dailySendLimit": 99, "displayName": "Sales", "tags": ["a"]},
        headers=owner.headers,
    )
    data = paused.json()["data"]
    assert (data["status"], data["sendingEnabled"]) == ("paused", False)
    assert (data["dailySendLimit"], data["displayName"], data["tags"]) == (50, "Sales", ["a"])
    resumed = await client.put(url, json={"sendingEnabled": True}, headers=owner.headers)
    assert resumed.json()["data"]["status"] == "active"

    # A wrong new SMTP password: the re-test fails, the mailbox stays but stops sending.
    changed = await client.put(
        url, json={"smtp": {"password": "new-but-wrong"}}, headers=owner.headers
    )
    assert "queued for verification" in changed.json()["message"]
    result = await wait_for_test(client, owner, mailbox["id"])
    assert (result["kind"], result["status"], result["mailboxDeleted"]) == (
        "retest",
        "failed",
        False,
    )
    broken = (await client.get(url, headers=owner.headers)).json()["data"]
    assert (broken["status"], broken["sendingEnabled"]) == ("error", False)

    fixed = await client.put(url, json={"smtp": {"password": password}}, headers=owner.headers)
    assert fixed.status_code == 200
    assert (await wait_for_test(client, owner, mailbox["id"]))["status"] == "success"

    again = await client.post(f"{url}/connection-test", headers=owner.headers)
    assert again.status_code == 202
    assert again.json()["data"]["status"] == "pending"
    assert (await wait_for_test(client, owner, mailbox["id"]))["status"] == "success"
    assert (await client.get(url, headers=owner.headers)).json()["data"]["status"] == "active"


async def test_delete_and_workspace_isolation(
    client: httpx.AsyncClient, owner: Account, database: Database, held_mailbox: HeldMailbox
) -> None:
    mailbox_id = await held_mailbox(owner.workspace_id, "x@iso.test")
    stranger = await make_account(database, "stranger@iso.test")
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(
            method,
            f"/v1/mailboxes/{mailbox_id}",
            json={} if method == "PUT" else None,
            headers=stranger.headers,
        )
        assert response.status_code == 404, (method, response.text)
    deleted = await client.delete(f"/v1/mailboxes/{mailbox_id}", headers=owner.headers)
    assert deleted.status_code == 200
    assert (
        await client.get(f"/v1/mailboxes/{mailbox_id}", headers=owner.headers)
    ).status_code == 404


async def test_viewer_cannot_create_mailboxes(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    viewer = await make_account(database, "viewer@mb.test")
    await client.post(
        f"/v1/workspaces/{owner.workspace_id}/members",
        json={"email": viewer.email, "role": "viewer"},
        headers=owner.headers,
    )
    headers = {**viewer.headers, "x-workspace-id": owner.workspace_id}
    refused = await client.post(
        "/v1/mailboxes",
        json={"email": "v@mb.test", "smtp": {"host": "127.0.0.1", "password": "x"}},
        headers=headers,
    )
    assert refused.status_code == 403
    assert (await client.get("/v1/mailboxes", headers=headers)).status_code == 200


async def test_tags_crud(
    client: httpx.AsyncClient, owner: Account, held_mailbox: HeldMailbox
) -> None:
    created = await client.post(
        "/v1/tags", json={"name": "warm", "color": "#f80"}, headers=owner.headers
    )
    assert created.status_code == 201
    tag = created.json()["data"]
    duplicate = await client.post("/v1/tags", json={"name": "warm"}, headers=owner.headers)
    assert duplicate.status_code == 409
    # Held: a background test of an unreachable server would delete it mid-test.
    await held_mailbox(owner.workspace_id, "t@tags.test", tags=["warm", "new"])
    idle = await client.post("/v1/tags", json={"name": "idle"}, headers=owner.headers)
    assert idle.status_code == 201
    listed = {
        t["name"]: t for t in (await client.get("/v1/tags", headers=owner.headers)).json()["data"]
    }
    assert listed["warm"]["mailboxCount"] == 1
    assert listed["new"]["mailboxCount"] == 1
    assert listed["idle"]["mailboxCount"] == 0
    assert list(listed) == ["idle", "new", "warm"]
    renamed = await client.put(f"/v1/tags/{tag['id']}", json={"name": "hot"}, headers=owner.headers)
    assert renamed.json()["data"]["name"] == "hot"
    assert (await client.delete(f"/v1/tags/{tag['id']}", headers=owner.headers)).status_code == 200
    mailboxes = (await client.get("/v1/mailboxes", headers=owner.headers)).json()["data"]
    assert mailboxes[0]["tags"] == ["new"]


async def test_status_counts(
    client: httpx.AsyncClient, owner: Account, smtp_plain: SmtpServer, dovecot: DovecotServer
) -> None:
    await make_active_mailbox(client, owner, smtp_plain, dovecot)
    counts = await client.get("/v1/dashboard/mailbox-status-counts", headers=owner.headers)
    assert counts.json()["data"] == {
        "total": 1,
        "inactive": 0,
        "active": 1,
        "paused": 0,
        "error": 0,
        "pendingTests": 0,
    }


async def test_sweeper_enqueues_a_test_whose_enqueue_was_lost(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
    keyring: Keyring,
) -> None:
    """A crash between the commit and the enqueue leaves a pending test; the sweeper runs it."""
    email, password = new_user(smtp_plain, dovecot)
    body = MailboxCreate.model_validate(mailbox_body(email, password, smtp_plain, dovecot))
    await clear_of_sweeper_ticks()
    async with database.transaction() as session:
        mailbox = await service.create_mailbox(session, keyring, owner.workspace_id, body)
        session.info.clear()  # the process "dies" before its after-commit enqueue
    pending = await client.get(f"/v1/mailboxes/{mailbox.id}/connection-test", headers=owner.headers)
    assert pending.json()["data"]["status"] == "pending"
    assert await requeue_pending_tests() >= 1
    assert (await wait_for_test(client, owner, mailbox.id))["status"] == "success"
    # Sweeping again is harmless: the same workflow id is not run twice.
    assert await requeue_pending_tests() == 0
