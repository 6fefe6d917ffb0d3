"""Real mail servers on loopback for the probe tests, started once per session."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest

from tests.servers.blackhole import BlackholeServer, unused_tcp_port
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer
from tests.servers.tls import LoopbackTLS


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@pytest.fixture(scope="session")
def loopback_tls(tmp_path_factory: pytest.TempPathFactory) -> LoopbackTLS:
    return LoopbackTLS.create(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def smtp_plain() -> Iterator[SmtpServer]:
    with SmtpServer(mode="plain") as server:
        yield server


@pytest.fixture(scope="session")
def smtp_starttls(loopback_tls: LoopbackTLS) -> Iterator[SmtpServer]:
    with SmtpServer(mode="starttls", tls=loopback_tls) as server:
        yield server


@pytest.fixture(scope="session")
def smtp_ssl(loopback_tls: LoopbackTLS) -> Iterator[SmtpServer]:
    with SmtpServer(mode="ssl", tls=loopback_tls) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot(loopback_tls: LoopbackTLS) -> Iterator[DovecotServer]:
    """Plaintext+STARTTLS on `.port`, implicit TLS on `.ssl_port`."""
    with DovecotServer(tls=loopback_tls) as server:
        yield server


@pytest.fixture(scope="session")
async def blackhole() -> AsyncIterator[BlackholeServer]:
    async with BlackholeServer() as server:
        yield server


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening: connecting is refused."""
    return unused_tcp_port()


@pytest.fixture
def credentials() -> Credentials:
    """A fresh user per test (Dovecot limits connections per user), with a password
    that needs quoting in IMAP and would break a naive passwd-file line."""
    token = uuid.uuid4().hex[:12]
    return Credentials(f"user-{token}@mailfleet.test", f'S3cret "quoted" \\ back:{token}')
