"""DNS fixtures: one authoritative test server per session, emptied for every test."""

from __future__ import annotations

from collections.abc import Iterator

import dns.asyncresolver
import pytest

from mailfleet.dns.resolver import make_resolver
from tests.servers.dnsserver import LocalDnsServer, SilentDnsServer


@pytest.fixture(scope="session")
def dns_server() -> Iterator[LocalDnsServer]:
    """The running server; its zone is shared, so prefer `dns_zone` in tests."""
    with LocalDnsServer() as server:
        yield server


@pytest.fixture
def dns_zone(dns_server: LocalDnsServer) -> Iterator[LocalDnsServer]:
    """The session's server with an empty zone, emptied again afterwards."""
    dns_server.clear()
    yield dns_server
    dns_server.clear()


@pytest.fixture
def dns_resolver(dns_zone: LocalDnsServer) -> dns.asyncresolver.Resolver:
    return make_resolver([dns_zone.nameserver], timeout=2.0)


@pytest.fixture(scope="session")
def silent_dns_server() -> Iterator[SilentDnsServer]:
    with SilentDnsServer() as server:
        yield server


@pytest.fixture
def silent_dns_resolver(silent_dns_server: SilentDnsServer) -> dns.asyncresolver.Resolver:
    """Points at a server that never answers; short lifetime so tests stay fast."""
    return make_resolver([silent_dns_server.nameserver], timeout=0.3)
