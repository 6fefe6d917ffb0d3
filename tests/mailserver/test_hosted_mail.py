"""Hosted mailboxes end to end: the API writes, the real Postfix and Dovecot of
`mailfleet mailserver run` read the same database, with no reload in between."""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
import uuid
from typing import Any

import dkim
import httpx
import pytest

from mailfleet.db import Database
from tests.conftest import Account
from tests.mailserver.conftest import HostedMail, assign, connect_domain, in_thread, message

pytestmark = pytest.mark.timeout(300)


def subject(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:10]}"


def published_dkim(detail: dict[str, Any]) -> dict[bytes, bytes]:
    """The DKIM TXT records Mailfleet publishes for the domain, as dkimpy asks for them."""
    return {
        (record["name"] + ".").encode(): record["content"].encode()
        for record in detail["records"]
        if record["purpose"] == "dkim"
    }


async def test_mailbox_receives_logs_in_and_sends_dkim_signed(
    client: httpx.AsyncClient, owner: Account, hosted: HostedMail
) -> None:
    alpha = await connect_domain(client, owner, "alpha-hosted.test")
    beta = await connect_domain(client, owner, "beta-hosted.test")
    [alice] = await assign(
        client, owner, alpha["id"], {"username": "Alice", "firstName": "Alice", "lastName": "A"}
    )
    [bob] = await assign(
        client,
        owner,
        beta["id"],
        {"username": "bob", "firstName": "Bob", "password": "bob-password-123"},
    )
    assert alice["email"] == "alice@alpha-hosted.test"
    alice_password = alice["password"]
    assert alice_password
    assert bob["password"] is None

    # An ordinary Mailfleet mailbox: active at once, told to use the mail server.
    response = await client.get(f"/v1/mailboxes/{alice['mailboxId']}", headers=owner.headers)
    box = response.json()["data"]
    assert (box["provider"], box["status"], box["sendingEnabled"]) == ("mailfleet", "active", True)
    assert (box["smtpHost"], box["smtpPort"], box["imapPort"]) == (
        hosted.server.hostname,
        587,
        993,
    )
    assert box["hosted"] is True
    assert box["quotaBytes"] > 0
    assert box["quotaUsedBytes"] == 0

    # Port 25 delivers to alice's INBOX.
    inbound = subject("inbound")
    await in_thread(hosted.send_inbound, "someone@sender.example.test", alice["email"], inbound)
    await in_thread(hosted.wait_for, alice["email"], alice_password, inbound)
    response = await client.get(f"/v1/mailboxes/{alice['mailboxId']}", headers=owner.headers)
    assert response.json()["data"]["quotaUsedBytes"] > 0

    # Submission needs TLS first: plaintext AUTH on 587 is refused.
    def plain_login() -> None:
        with smtplib.SMTP(hosted.host, 587, timeout=30) as plain:
            plain.ehlo("client.test")
            plain.login(alice["email"], alice_password)

    with pytest.raises(smtplib.SMTPException):
        await in_thread(plain_login)

    # IMAP on 143 refuses a login before STARTTLS, and takes it after.
    def imap_143() -> None:
        client = imaplib.IMAP4(hosted.host, 143, timeout=30)
        try:
            with pytest.raises(imaplib.IMAP4.error):
                client.login(alice["email"], alice_password)
            client.starttls(ssl_context=hosted.context())
            client.login(alice["email"], alice_password)
        finally:
            client.logout()

    await in_thread(imap_143)

    # alice sends to bob through 587 (STARTTLS) and 465 (implicit TLS).
    subjects = []
    for implicit in (False, True):
        sent = subject("outbound-465" if implicit else "outbound-587")
        subjects.append(sent)

        def send(sent: str = sent, implicit: bool = implicit) -> None:
            with hosted.submission(alice["email"], alice_password, implicit=implicit) as smtp:
                smtp.send_message(message(alice["email"], bob["email"], sent))

        await in_thread(send)

    # ...and may not send as someone else.
    def forge() -> None:
        with hosted.submission(alice["email"], alice_password) as smtp:
            smtp.send_message(message(bob["email"], bob["email"], "forged"))

    with pytest.raises(smtplib.SMTPException):
        await in_thread(forge)

    detail = (await client.get(f"/v1/domains/{alpha['id']}", headers=owner.headers)).json()["data"]
    records = published_dkim(detail)
    assert records, detail["records"]

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        return records.get(name if name.endswith(b".") else name + b".", b"")

    for sent in subjects:
        raw = await in_thread(hosted.wait_for, bob["email"], "bob-password-123", sent)
        assert b"DKIM-Signature:" in raw
        assert dkim.verify(raw, dnsfunc=dnsfunc), sent


async def test_catch_all_and_forwarding(
    client: httpx.AsyncClient, owner: Account, hosted: HostedMail
) -> None:
    name = "gamma-hosted.test"
    domain = await connect_domain(client, owner, name)
    alice, sales = await assign(
        client,
        owner,
        domain["id"],
        {"username": "alice", "firstName": "Alice", "password": "alice-password-1"},
        {"username": "sales", "firstName": "Sales", "password": "sales-password-1"},
    )
    response = await client.post(
        f"/v1/domains/{domain['id']}/catch-all",
        json={"destination": sales["email"]},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text

    nobody, direct = subject("to-nobody"), subject("to-alice")
    await in_thread(
        hosted.send_inbound, "x@sender.example.test", "nobody@gamma-hosted.test", nobody
    )
    await in_thread(hosted.send_inbound, "x@sender.example.test", alice["email"], direct)
    await in_thread(hosted.wait_for, sales["email"], "sales-password-1", nobody)
    await in_thread(hosted.wait_for, alice["email"], "alice-password-1", direct)
    # The catch-all never takes mail of an existing mailbox (the self-alias rows).
    assert await in_thread(hosted.find, sales["email"], "sales-password-1", direct) == []

    # Forwarding alice's mail to sales, keeping a copy.
    response = await client.post(
        f"/v1/domains/{domain['id']}/email-forwarding",
        json={"forwardTo": sales["email"], "keepCopy": True, "mailboxIds": [alice["mailboxId"]]},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    forwarded = subject("forwarded")
    await in_thread(hosted.send_inbound, "x@sender.example.test", alice["email"], forwarded)
    await in_thread(hosted.wait_for, sales["email"], "sales-password-1", forwarded)
    await in_thread(hosted.wait_for, alice["email"], "alice-password-1", forwarded)

    detail = (await client.get(f"/v1/domains/{domain['id']}", headers=owner.headers)).json()
    assert detail["data"]["hostedMail"] == {
        "emailForwarding": [
            {"forwardTo": sales["email"], "keepCopy": True, "mailboxIds": [alice["mailboxId"]]}
        ],
        "catchAll": {"destination": sales["email"]},
    }

    # Forwarding outside the hosted domains, without a copy: out through the relayhost.
    response = await client.post(
        f"/v1/domains/{domain['id']}/email-forwarding",
        json={"forwardTo": "owner@elsewhere.test", "keepCopy": False},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    outside = subject("outside")
    await in_thread(hosted.send_inbound, "x@sender.example.test", sales["email"], outside)
    relay = hosted.server.relay
    for _ in range(600):
        if relay.received("owner@elsewhere.test", outside):
            break
        await asyncio.sleep(0.1)
    assert relay.received("owner@elsewhere.test", outside), hosted.server.log_tail()
    assert await in_thread(hosted.find, sales["email"], "sales-password-1", outside) == []

    # Stopping both: nobody@ is refused again, alice's mail stays with alice.
    await client.delete(f"/v1/domains/{domain['id']}/catch-all", headers=owner.headers)
    await client.delete(f"/v1/domains/{domain['id']}/email-forwarding", headers=owner.headers)
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        await in_thread(
            hosted.send_inbound, "x@sender.example.test", "nobody@gamma-hosted.test", "bounce"
        )
    detail = (await client.get(f"/v1/domains/{domain['id']}", headers=owner.headers)).json()
    assert detail["data"]["hostedMail"] == {"emailForwarding": [], "catchAll": None}


async def test_password_reset_delete_and_connection_test(
    client: httpx.AsyncClient, owner: Account, hosted: HostedMail, database: Database
) -> None:
    domain = await connect_domain(client, owner, "delta-hosted.test")
    alice, carol = await assign(
        client,
        owner,
        domain["id"],
        {"username": "alice", "firstName": "Alice"},
        {"username": "carol", "firstName": "Carol"},
    )
    old = alice["password"]
    await in_thread(lambda: hosted.imap(alice["email"], old).logout())

    # The normal connection test of Mailfleet passes against its own server.
    response = await client.post(
        f"/v1/mailboxes/{alice['mailboxId']}/connection-test", headers=owner.headers
    )
    assert response.status_code in (200, 201, 202), response.text
    for _ in range(600):
        test = (
            await client.get(
                f"/v1/mailboxes/{alice['mailboxId']}/connection-test", headers=owner.headers
            )
        ).json()["data"]
        if test["status"] != "pending":
            break
        await asyncio.sleep(0.1)
    assert test["status"] == "success", test

    # A reset takes effect at the next login, no restart; the old password is refused.
    response = await client.put(
        f"/v1/mailboxes/{alice['mailboxId']}",
        json={"resetPassword": True, "lastName": "Liddell"},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    updated = response.json()["data"]
    new = updated["password"]
    assert new
    assert new != old
    assert updated["displayName"] == "Alice Liddell"
    await in_thread(lambda: hosted.imap(alice["email"], new).logout())
    with pytest.raises(imaplib.IMAP4.error):
        await in_thread(hosted.imap, alice["email"], old)
    with pytest.raises(smtplib.SMTPAuthenticationError):
        await in_thread(hosted.submission, alice["email"], old)
    response = await client.get(f"/v1/mailboxes/{alice['mailboxId']}", headers=owner.headers)
    assert "password" not in response.json()["data"]

    # Exported like any other mailbox: the CSV carries the mail server and new password.
    response = await client.post(
        "/v1/exports/mailboxes",
        json={"mailboxIds": [alice["mailboxId"]], "layout": "instantly"},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    exported = response.text
    assert alice["email"] in exported
    assert hosted.server.hostname in exported
    assert new in exported

    # A deleted mailbox can no longer log in; its mail waits for the retention.
    response = await client.delete(f"/v1/mailboxes/{carol['mailboxId']}", headers=owner.headers)
    assert response.status_code == 200, response.text
    with pytest.raises(imaplib.IMAP4.error):
        await in_thread(hosted.imap, carol["email"], carol["password"])
    from sqlalchemy import select

    from mailfleet.models import MailPurge

    async with database.transaction() as session:
        purges = list(await session.scalars(select(MailPurge)))
    assert [purge.email for purge in purges] == [carol["email"]]
    assert purges[0].maildir == f"delta-hosted.test/{carol['mailboxId']}"
