"""Real servers on loopback as pytest fixtures, shared by every test package.

Loaded by the root conftest (`pytest_plugins`). Servers start once per session
and only when a test asks for them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from mailfleet.config import Settings
from tests.servers.blackhole import BlackholeServer
from tests.servers.common import unused_tcp_port
from tests.servers.dnsserver import LocalDnsServer
from tests.servers.dovecot import DovecotServer
from tests.servers.mailserver import HostedMailServer
from tests.servers.smtp import SmtpServer
from tests.servers.tls import LoopbackTLS

# Names the app resolves through the test DNS server in every test: the seed's
# example hosts, and localhost so TLS tests can use a name the certificate holds.
LOOPBACK_NAMES = ("localhost", "smtp.company.com", "imap.company.com")


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


@pytest.fixture(scope="session")
def dns_server() -> Iterator[LocalDnsServer]:
    """The session's authoritative test DNS server; prefer `dns_zone` or `dns_names`."""
    with LocalDnsServer() as server:
        yield server


@pytest.fixture
def dns_zone(dns_server: LocalDnsServer) -> Iterator[LocalDnsServer]:
    """The session's server with an empty zone, emptied again afterwards."""
    dns_server.clear()
    yield dns_server
    dns_server.clear()


@pytest.fixture
def dns_names(dns_zone: LocalDnsServer) -> LocalDnsServer:
    """An empty zone plus the loopback names the app's tests connect to."""
    for name in LOOPBACK_NAMES:
        dns_zone.set_records(name, "A", ["127.0.0.1"])
    return dns_zone


@pytest.fixture(scope="session")
def hosted_mail_server(
    settings: Settings, loopback_tls: LoopbackTLS, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HostedMailServer]:
    """`mailfleet mailserver run` (Postfix, Dovecot, DKIM filter) on the session's
    database, started once: it is the slowest server here."""
    with HostedMailServer(settings, loopback_tls, tmp_path_factory.mktemp("mailserver")) as server:
        yield server
