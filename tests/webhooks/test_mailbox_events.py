"""The issue's end-to-end promise: a registered webhook receives signed
mailbox.created and mailbox.verified events for a mailbox created through the API."""

from __future__ import annotations

import httpx

from tests.conftest import Account
from tests.mailboxes.test_mailboxes_api import mailbox_body, new_user, wait_for_test
from tests.servers.dovecot import DovecotServer
from tests.servers.http_receiver import HttpReceiver
from tests.servers.smtp import SmtpServer
from tests.webhooks.conftest import register


async def test_mailbox_lifecycle_events_are_delivered_signed(
    client: httpx.AsyncClient,
    owner: Account,
    receiver: HttpReceiver,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
) -> None:
    webhook = await register(
        client,
        owner,
        receiver.url(),
        eventTypes=["mailbox.created", "mailbox.verified", "mailbox.deleted"],
    )
    receiver.secret = webhook["secret"]
    email, password = new_user(smtp_plain, dovecot)
    created = await client.post(
        "/v1/mailboxes",
        json=mailbox_body(email, password, smtp_plain, dovecot),
        headers=owner.headers,
    )
    mailbox_id = created.json()["data"]["id"]
    assert (await wait_for_test(client, owner, mailbox_id))["status"] == "success"
    await client.delete(f"/v1/mailboxes/{mailbox_id}", headers=owner.headers)

    received = await receiver.wait_for(3)
    assert all(r.verified for r in received), [r.verification_error for r in received]
    by_type = {r.payload["type"]: r.payload for r in received}
    assert set(by_type) == {"mailbox.created", "mailbox.verified", "mailbox.deleted"}
    assert by_type["mailbox.created"]["data"]["status"] == "inactive"
    assert by_type["mailbox.verified"]["data"]["status"] == "active"
    for payload in by_type.values():
        assert payload["workspaceId"] == owner.workspace_id
        assert payload["data"]["id"] == mailbox_id
    for request in received:
        assert password.encode() not in request.body


async def test_failed_verification_event(
    client: httpx.AsyncClient,
    owner: Account,
    receiver: HttpReceiver,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
) -> None:
    webhook = await register(
        client, owner, receiver.url(), eventTypes=["mailbox.verification_failed"]
    )
    receiver.secret = webhook["secret"]
    email, password = new_user(smtp_plain, dovecot)
    body = mailbox_body(email, password, smtp_plain, dovecot)
    body["smtp"]["password"] = "wrong-password-here"
    created = await client.post("/v1/mailboxes", json=body, headers=owner.headers)
    await wait_for_test(client, owner, created.json()["data"]["id"])
    (event,) = await receiver.wait_for(1)
    assert event.verified
    data = event.payload["data"]
    assert (data["errorCode"], data["mailboxDeleted"], data["status"]) == (
        "AUTH_FAILED",
        True,
        "deleted",
    )
    assert b"wrong-password-here" not in event.body
