"""Helpers for hosted-mail tests: the app pointed at the session's mail server, and
SMTP/IMAP clients that reach it over TLS like a customer would."""

from __future__ import annotations

import asyncio
import email
import imaplib
import smtplib
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx
import pytest

from mailfleet.config import Settings
from tests.conftest import Account
from tests.servers.dnsserver import LocalDnsServer
from tests.servers.mailserver import HostedMailServer
from tests.servers.tls import LoopbackTLS

DELIVERY_WAIT = 60.0


@dataclass
class HostedMail:
    server: HostedMailServer
    tls: LoopbackTLS

    @property
    def host(self) -> str:
        return self.server.address

    def context(self) -> ssl.SSLContext:
        ctx = self.tls.client_context()
        return ctx

    def imap(self, user: str, password: str) -> imaplib.IMAP4_SSL:
        client = imaplib.IMAP4_SSL(self.host, 993, ssl_context=self.context(), timeout=30)
        try:
            client.login(user, password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def submission(self, user: str, password: str, *, implicit: bool = False) -> smtplib.SMTP:
        if implicit:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, 465, context=self.context(), timeout=30
            )
        else:
            client = smtplib.SMTP(self.host, 587, timeout=30)
            client.starttls(context=self.context())
        try:
            client.login(user, password)
        except BaseException:
            client.close()
            raise
        return client

    def send_inbound(self, sender: str, recipient: str, subject: str) -> None:
        """What another mail server does: port 25, no login."""
        with smtplib.SMTP(self.host, 25, timeout=30) as client:
            client.ehlo("sender.example.test")
            client.send_message(message(sender, recipient, subject))

    def wait_for(self, user: str, password: str, subject: str) -> bytes:
        """The raw message with this subject in the user's INBOX, once delivered."""
        deadline = time.monotonic() + DELIVERY_WAIT
        while True:
            found = self.find(user, password, subject)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{subject!r} never reached {user}\n{self.server.log_tail(30)}"
                )
            time.sleep(0.3)

    def find(self, user: str, password: str, subject: str) -> list[bytes]:
        client = self.imap(user, password)
        try:
            client.select("INBOX")
            _, data = client.search(None, "SUBJECT", f'"{subject}"')
            messages = []
            for number in data[0].split():
                _, parts = client.fetch(number, "(RFC822)")
                item = parts[0]
                assert isinstance(item, tuple)
                messages.append(item[1])
            return messages
        finally:
            client.logout()


def message(sender: str, recipient: str, subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = subject
    msg["Message-ID"] = email.utils.make_msgid(domain="mailfleet.test")
    msg["Date"] = email.utils.formatdate()
    msg.set_content(f"Hello from {sender}.\n")
    return msg


@pytest.fixture
async def hosted(
    hosted_mail_server: HostedMailServer,
    settings: Settings,
    dns_zone: LocalDnsServer,
    loopback_tls: LoopbackTLS,
) -> AsyncIterator[HostedMail]:
    """The app tells hosted mailboxes to use the session's mail server, whose host
    name resolves (through the test DNS server) to its loopback address."""
    previous = settings.mail_hostname
    settings.mail_hostname = hosted_mail_server.hostname
    dns_zone.set_records(hosted_mail_server.hostname, "A", [hosted_mail_server.address])
    try:
        yield HostedMail(hosted_mail_server, loopback_tls)
    finally:
        settings.mail_hostname = previous


async def connect_domain(client: httpx.AsyncClient, account: Account, name: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/domains/connect",
        json={"domain": name, "dnsProvider": "manual", "mailProvider": "self-hosted"},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"][0]
    return data


async def assign(
    client: httpx.AsyncClient, account: Account, domain_id: str, *items: dict[str, Any]
) -> list[dict[str, Any]]:
    response = await client.post(
        f"/v1/domains/{domain_id}/mailboxes",
        json={"mailboxes": list(items)},
        headers=account.headers,
    )
    assert response.status_code == 201, response.text
    results: list[dict[str, Any]] = response.json()["data"]["results"]
    assert all(result["status"] == "created" for result in results), results
    return results


async def in_thread(function: Any, *args: Any) -> Any:
    """Blocking mail clients off the event loop the app (and its DB) runs on."""
    return await asyncio.to_thread(function, *args)
