"""Fixtures for warmup: a real mail network (submission -> LMTP -> Dovecot with
Sieve), mailboxes on it, and rounds run on a clock the test chooses."""

from __future__ import annotations

import imaplib
import itertools
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes
from email.message import Message
from typing import Any

import pytest

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailboxes.schemas import MailboxCreate
from mailfleet.warmup.templates import TRACKING_HEADER
from mailfleet.warmup.workflows import warmup_round
from tests.servers.mailnet import SieveDovecot, SubmissionServer
from tests.servers.tls import LoopbackTLS

_run = itertools.count()


@pytest.fixture(scope="session")
def mailnet_dovecot(loopback_tls: LoopbackTLS) -> Iterator[SieveDovecot]:
    with SieveDovecot(tls=loopback_tls) as server:
        yield server


@pytest.fixture(scope="session")
def submission(mailnet_dovecot: SieveDovecot) -> Iterator[SubmissionServer]:
    with SubmissionServer(mailnet_dovecot) as server:
        yield server


@pytest.fixture
def manual_rounds(settings: Settings) -> Iterator[Settings]:
    """No automatic rounds: the test runs each round itself, at the time it picks."""
    previous = settings.warmup_interval, settings.warmup_retention
    settings.warmup_interval = 0
    # Longer than any test's simulated days, unless a test shortens it.
    settings.warmup_retention = 30 * 86400
    yield settings
    settings.warmup_interval, settings.warmup_retention = previous


@dataclass
class NetMailbox:
    id: str
    email: str
    password: str


@dataclass
class FolderMessage:
    folder: str
    flags: str
    message: Message

    @property
    def code(self) -> str:
        return str(self.message[TRACKING_HEADER])


async def add_mailbox(
    database: Database,
    keyring: Keyring,
    dovecot: SieveDovecot,
    submission: SubmissionServer,
    workspace_id: str,
    local: str,
    domain: str,
    **fields: Any,
) -> NetMailbox:
    """A mailbox on the mail network, active at once (its logins are tested
    elsewhere): SMTP through the submission server, IMAP with STARTTLS."""
    email = f"{local}-{next(_run)}-{secrets.token_hex(3)}@{domain}"
    password = secrets.token_urlsafe(12)
    dovecot.add_user(email, password)
    body = MailboxCreate.model_validate(
        {
            "email": email,
            "displayName": local.title() + " Example",
            "smtp": {
                "host": "127.0.0.1",
                "port": submission.port,
                "secure": False,
                "password": password,
            },
            "imap": {
                "host": "localhost",
                "port": dovecot.port,
                "secure": True,
                "password": password,
            },
            **fields,
        }
    )
    async with database.transaction() as session:
        mailbox = await mailboxes.create_mailbox(session, keyring, workspace_id, body, verify=False)
    return NetMailbox(mailbox.id, email, password)


def read_folders(dovecot: SieveDovecot, mailbox: NetMailbox) -> list[FolderMessage]:
    """Every warmup message in the mailbox's INBOX and Junk, read with Python's own
    imaplib: the test's view of the folders, independent of the engine's client."""
    found: list[FolderMessage] = []
    with imaplib.IMAP4("127.0.0.1", dovecot.port) as imap:
        imap.login(mailbox.email, mailbox.password)
        for folder in ("INBOX", "Junk"):
            imap.select(folder, readonly=True)
            _, data = imap.uid("SEARCH", "HEADER", TRACKING_HEADER, '""')
            uids = data[0].split() if data and data[0] else []
            for uid in uids:
                _, parts = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
                header, raw = parts[0]
                found.append(FolderMessage(folder, header.decode(), message_from_bytes(raw)))
        imap.logout()
    return found


@dataclass
class Mailnet:
    """The mail network and the app's database, for making mailboxes on it."""

    dovecot: SieveDovecot
    submission: SubmissionServer
    database: Database
    keyring: Keyring

    async def mailbox(self, workspace_id: str, local: str, domain: str) -> NetMailbox:
        return await add_mailbox(
            self.database, self.keyring, self.dovecot, self.submission, workspace_id, local, domain
        )

    def folders(self, mailbox: NetMailbox) -> list[FolderMessage]:
        return read_folders(self.dovecot, mailbox)


@pytest.fixture
def mailnet(
    manual_rounds: Settings,
    mailnet_dovecot: SieveDovecot,
    submission: SubmissionServer,
    database: Database,
    keyring: Keyring,
    dns_names: object,
) -> Mailnet:
    """The network, with rounds run by hand; IMAP's `localhost` resolves to loopback."""
    return Mailnet(mailnet_dovecot, submission, database, keyring)


async def run_round(at: datetime) -> dict[str, int]:
    """One round, run as DBOS runs it (the workflow), at `at`."""
    result: dict[str, int] = await warmup_round(at.isoformat())
    return result
