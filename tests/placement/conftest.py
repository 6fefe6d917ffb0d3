"""Fixtures for placement tests: a mail network of their own (submission that signs
and authenticates -> LMTP -> Dovecot with Sieve), and short reads.

Its own Dovecot, not warmup's: the Sieve rules here (a sender into Junk, some
messages discarded) would change what warmup's tests see.
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.placement.messages import TRACKING_HEADER
from tests.placement.mta import AuthenticatingRelay
from tests.servers.dnsserver import LocalDnsServer
from tests.servers.mailnet import SieveDovecot, SubmissionServer
from tests.servers.tls import LoopbackTLS
from tests.warmup.conftest import NetMailbox, add_mailbox


@pytest.fixture(scope="session")
def placement_dovecot(loopback_tls: LoopbackTLS) -> Iterator[SieveDovecot]:
    with SieveDovecot(tls=loopback_tls) as server:
        yield server


@pytest.fixture(scope="session")
def relay(dns_server: LocalDnsServer) -> AuthenticatingRelay:
    return AuthenticatingRelay(dns_server)


@pytest.fixture(scope="session")
def placement_submission(
    placement_dovecot: SieveDovecot, relay: AuthenticatingRelay
) -> Iterator[SubmissionServer]:
    with SubmissionServer(placement_dovecot, transform=relay) as server:
        yield server


@pytest.fixture
def quick_reads(settings: Settings) -> Iterator[Settings]:
    """Seeds read every 0.2 s, and a test's timeout of a few seconds (the API keeps
    timeoutMinutes at 5..240; MAILFLEET_PLACEMENT_TIMEOUT_SECONDS overrides it)."""
    previous = settings.placement_poll_interval, settings.placement_timeout_seconds
    settings.placement_poll_interval = 0.2
    settings.placement_timeout_seconds = 4.0
    yield settings
    settings.placement_poll_interval, settings.placement_timeout_seconds = previous


@dataclass
class PlacementNet:
    dovecot: SieveDovecot
    submission: SubmissionServer
    relay: AuthenticatingRelay
    dns: LocalDnsServer
    database: Database
    keyring: Keyring

    async def mailbox(self, workspace_id: str, local: str, domain: str) -> NetMailbox:
        return await add_mailbox(
            self.database, self.keyring, self.dovecot, self.submission, workspace_id, local, domain
        )

    def held(self, mailbox: NetMailbox, code: str) -> list[tuple[str, str]]:
        """(folder, tracking code) of every message of test `code` in the mailbox,
        read with Python's imaplib: the test's own view of the folders."""
        found: list[tuple[str, str]] = []
        with imaplib.IMAP4("127.0.0.1", self.dovecot.port) as imap:
            imap.login(mailbox.email, mailbox.password)
            for folder in ("INBOX", "Junk"):
                imap.select(folder, readonly=True)
                _, data = imap.uid("SEARCH", "HEADER", TRACKING_HEADER, code)
                for uid in data[0].split() if data and data[0] else []:
                    _, parts = imap.uid(
                        "FETCH", uid, f"(BODY.PEEK[HEADER.FIELDS ({TRACKING_HEADER})])"
                    )
                    raw = parts[0][1].decode()
                    found.append((folder, raw.split(":", 1)[1].strip()))
            imap.logout()
        return found


@pytest.fixture
def placement_net(
    quick_reads: Settings,
    placement_dovecot: SieveDovecot,
    placement_submission: SubmissionServer,
    relay: AuthenticatingRelay,
    database: Database,
    keyring: Keyring,
    dns_names: LocalDnsServer,
) -> Iterator[PlacementNet]:
    yield PlacementNet(placement_dovecot, placement_submission, relay, dns_names, database, keyring)
    placement_dovecot.set_junk_senders([])
    placement_dovecot.set_extra_rules("")
    relay.keys.clear()
