"""Provider settings discovery against a real DNS server and a real HTTPS server,
both on loopback.

Every discoverer here resolves through the test DNS server only, and the ISPDB
base URL points at loopback: the autouse `no_system_resolver` fixture fails a test
that looks up any name through the system resolver.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from mailfleet.mail.discovery import (
    NOT_FOUND,
    Discoverer,
    DiscoveryResult,
    ServerSettings,
    apply_discovery,
    parse_autoconfig,
    provider_settings,
    registrable_domain,
)
from tests.servers.blackhole import BlackholeServer
from tests.servers.dnsserver import LocalDnsServer
from tests.servers.tls import LoopbackTLS

from .discovery_servers import ConfigServer, Reply

MakeDiscoverer = Callable[..., Discoverer]

AUTOCONFIG_PATH = "/mail/config-v1.1.xml"
WELL_KNOWN_PATH = "/.well-known/autoconfig/mail/config-v1.1.xml"
ISPDB_HOST = "ispdb.test"
TEST_DOMAINS = (
    "acme.test",
    "elsewhere.test",
    "slow.test",
)
CERT_NAMES = (
    ISPDB_HOST,
    *(name for domain in TEST_DOMAINS for name in (domain, f"autoconfig.{domain}")),
)

# The seed's table (DeepLead, seed 003), written out here rather than read from
# the module, with each provider's documented hosts.
SEED_TABLE: dict[str, tuple[str, ...]] = {
    "google": ("gmail.com", "googlemail.com"),
    "microsoft": ("outlook.com", "hotmail.com", "live.com"),
    "yahoo": ("yahoo.com", "yahoo.co.uk"),
    "zoho": ("zoho.com", "zohomail.com"),
    "icloud": ("icloud.com", "me.com", "mac.com"),
    "godaddy": ("secureserver.net",),
    "namecheap": ("privateemail.com",),
}
Server = tuple[str, int, str]
SEED_SETTINGS: dict[str, tuple[Server, Server]] = {
    "google": (("imap.gmail.com", 993, "ssl"), ("smtp.gmail.com", 587, "starttls")),
    "microsoft": (("outlook.office365.com", 993, "ssl"), ("smtp.office365.com", 587, "starttls")),
    "yahoo": (("imap.mail.yahoo.com", 993, "ssl"), ("smtp.mail.yahoo.com", 465, "ssl")),
    "zoho": (("imap.zoho.com", 993, "ssl"), ("smtp.zoho.com", 465, "ssl")),
    "icloud": (("imap.mail.me.com", 993, "ssl"), ("smtp.mail.me.com", 587, "starttls")),
    "godaddy": (("imap.secureserver.net", 993, "ssl"), ("smtpout.secureserver.net", 465, "ssl")),
    "namecheap": (("mail.privateemail.com", 993, "ssl"), ("mail.privateemail.com", 465, "ssl")),
}


def hosts(result: DiscoveryResult) -> tuple[Server | None, Server | None]:
    def triple(settings: ServerSettings | None) -> Server | None:
        return None if settings is None else (settings.host, settings.port, settings.security)

    return triple(result.imap), triple(result.smtp)


def config_xml(
    imap: tuple[str, str, str, str | None] = ("mail.acme.test", "993", "SSL", "%EMAILADDRESS%"),
    smtp: tuple[str, str, str, str | None] = ("mail.acme.test", "465", "SSL", "%EMAILADDRESS%"),
    before: str = "",
) -> bytes:
    def server(element: str, kind: str, values: tuple[str, str, str, str | None]) -> str:
        host, port, socket_type, username = values
        user = f"<username>{username}</username>" if username is not None else ""
        return (
            f'<{element} type="{kind}"><hostname>{host}</hostname><port>{port}</port>'
            f"<socketType>{socket_type}</socketType>{user}"
            f"<authentication>password-cleartext</authentication></{element}>"
        )

    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<clientConfig version="1.1">'
        '<emailProvider id="acme.test"><domain>acme.test</domain>'
        f"{before}{server('incomingServer', 'imap', imap)}"
        f"{server('outgoingServer', 'smtp', smtp)}</emailProvider></clientConfig>"
    ).encode()


@pytest.fixture(autouse=True)
def no_system_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Fail the test if anything asks the system resolver for a name."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        text = host.decode() if isinstance(host, bytes) else host
        if text is not None:
            try:
                ipaddress.ip_address(str(text).split("%")[0])
            except ValueError:
                asked.append(str(text))
                raise socket.gaierror(socket.EAI_NONAME, "system resolver is off here") from None
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    yield asked
    assert not asked, f"names looked up through the system resolver: {asked}"


@pytest.fixture(scope="module")
def config_server(loopback_tls: LoopbackTLS) -> Iterator[ConfigServer]:
    cert = loopback_tls.ca.issue_cert(*CERT_NAMES)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    with ConfigServer(context) as server:
        yield server


@pytest.fixture
def web(config_server: ConfigServer, dns_zone: LocalDnsServer) -> Iterator[ConfigServer]:
    config_server.reset()
    publish(dns_zone, ISPDB_HOST)
    yield config_server
    config_server.reset()


@pytest.fixture
def make_discoverer(
    dns_zone: LocalDnsServer, web: ConfigServer, loopback_tls: LoopbackTLS
) -> MakeDiscoverer:
    def make(**overrides: Any) -> Discoverer:
        options: dict[str, Any] = {
            "nameservers": [dns_zone.nameserver],
            "allow_private": True,
            "tls_ca_file": loopback_tls.ca_pem,
            "ispdb_base_url": f"https://{ISPDB_HOST}:{web.port}/v1.1/",
            "autoconfig_port": web.port,
        }
        options.update(overrides)
        # Anything else would send queries or requests off this machine.
        assert options["nameservers"] == [dns_zone.nameserver]
        assert options["ispdb_base_url"].startswith(f"https://{ISPDB_HOST}:")
        return Discoverer(**options)

    return make


def publish(zone: LocalDnsServer, *names: str) -> None:
    for name in names:
        zone.set_records(name, "A", ["127.0.0.1"])


# ------------------------------------------------------------------ the tables


@pytest.mark.parametrize(
    ("domain", "provider"),
    [(domain, provider) for provider, domains in SEED_TABLE.items() for domain in domains],
)
async def test_every_seed_domain_is_detected_without_any_lookup(
    make_discoverer: MakeDiscoverer,
    dns_zone: LocalDnsServer,
    web: ConfigServer,
    domain: str,
    provider: str,
) -> None:
    result = await make_discoverer().discover(f"Inbox1@{domain.upper()}")

    assert result.provider == provider
    assert result.source == "domain-table"
    assert hosts(result) == SEED_SETTINGS[provider]
    assert result.imap is not None
    assert result.smtp is not None
    assert result.imap.username == result.smtp.username == f"Inbox1@{domain.upper()}"
    assert dns_zone.queries == []
    assert web.requests == []


@pytest.mark.parametrize("provider", list(SEED_TABLE))
def test_provider_settings_gives_each_seed_provider(provider: str) -> None:
    result = provider_settings(provider)

    assert result is not None
    assert (result.provider, result.source) == (provider, "provider-table")
    assert hosts(result) == SEED_SETTINGS[provider]
    assert result.imap is not None
    assert result.imap.username is None


def test_provider_settings_normalises_names_and_refuses_unknown_ones() -> None:
    assert provider_settings(" Google ") == provider_settings("google")
    office = provider_settings("Office 365")
    assert office is not None
    assert office.provider == "microsoft"
    assert provider_settings("custom") is None
    assert provider_settings("protonmail") is None


async def test_explicit_provider_covers_a_custom_domain(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    result = await make_discoverer().discover("sales@acme.test", provider="google")

    assert (result.provider, result.source) == ("google", "provider-table")
    assert hosts(result) == SEED_SETTINGS["google"]
    assert result.smtp is not None
    assert result.smtp.username == "sales@acme.test"
    # The seed's table is the answer: nothing is looked up.
    assert dns_zone.queries == []
    assert web.requests == []


async def test_explicit_provider_wins_over_the_domain_and_the_mx(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer
) -> None:
    discoverer = make_discoverer()
    dns_zone.set_records("acme.test", "MX", ["1 aspmx.l.google.com"])

    on_gmail = await discoverer.discover("a@gmail.com", provider="microsoft")
    on_google_mx = await discoverer.discover("a@acme.test", provider="zoho")

    assert (on_gmail.provider, on_gmail.source) == ("microsoft", "provider-table")
    assert (on_google_mx.provider, on_google_mx.source) == ("zoho", "provider-table")
    assert hosts(on_google_mx) == SEED_SETTINGS["zoho"]


async def test_explicit_zoho_takes_the_regional_hosts_from_the_mx(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer
) -> None:
    dns_zone.set_records("acme.test", "MX", ["10 mx.zoho.eu", "20 mx2.zoho.eu"])

    result = await make_discoverer().discover("sales@acme.test", provider="zoho")

    assert (result.provider, result.source) == ("zoho", "mx:mx.zoho.eu")
    assert hosts(result) == (("imappro.zoho.eu", 993, "ssl"), ("smtppro.zoho.eu", 465, "ssl"))


async def test_an_unknown_provider_value_leaves_detection_to_the_mx(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer
) -> None:
    dns_zone.set_records("acme.test", "MX", ["1 smtp.google.com"])

    result = await make_discoverer().discover("sales@acme.test", provider="custom")

    assert (result.provider, result.source) == ("google", "mx:smtp.google.com")


# ---------------------------------------------------------------------- MX


GOOGLE = SEED_SETTINGS["google"]
MICROSOFT = SEED_SETTINGS["microsoft"]


@pytest.mark.parametrize(
    ("mx", "provider", "expected"),
    [
        ("1 aspmx.l.google.com", "google", GOOGLE),
        ("5 alt1.aspmx.l.google.com", "google", GOOGLE),
        ("1 smtp.google.com", "google", GOOGLE),
        ("10 aspmx2.googlemail.com", "google", GOOGLE),
        ("0 acme-test.mail.protection.outlook.com", "microsoft", MICROSOFT),
        ("0 acme-test.o-v1.mx.microsoft", "microsoft", MICROSOFT),
        (
            "10 mx.zoho.com",
            "zoho",
            (("imappro.zoho.com", 993, "ssl"), ("smtppro.zoho.com", 465, "ssl")),
        ),
        (
            "10 mx.zoho.eu",
            "zoho",
            (("imappro.zoho.eu", 993, "ssl"), ("smtppro.zoho.eu", 465, "ssl")),
        ),
        (
            "10 mx.zoho.in",
            "zoho",
            (("imappro.zoho.in", 993, "ssl"), ("smtppro.zoho.in", 465, "ssl")),
        ),
        (
            "10 mx.zoho.com.au",
            "zoho",
            (("imappro.zoho.com.au", 993, "ssl"), ("smtppro.zoho.com.au", 465, "ssl")),
        ),
        (
            "10 mx.zoho.jp",
            "zoho",
            (("imappro.zoho.jp", 993, "ssl"), ("smtppro.zoho.jp", 465, "ssl")),
        ),
        ("0 mailstore1.secureserver.net", "godaddy", SEED_SETTINGS["godaddy"]),
        ("10 mx1.privateemail.com", "namecheap", SEED_SETTINGS["namecheap"]),
        ("1 mx-biz.mail.am0.yahoodns.net", "yahoo", SEED_SETTINGS["yahoo"]),
        ("10 mx01.mail.icloud.com", "icloud", SEED_SETTINGS["icloud"]),
        (
            "10 in1-smtp.messagingengine.com",
            "fastmail",
            (("imap.fastmail.com", 993, "ssl"), ("smtp.fastmail.com", 465, "ssl")),
        ),
        (
            "10 mx.yandex.net",
            "yandex",
            (("imap.yandex.com", 993, "ssl"), ("smtp.yandex.com", 465, "ssl")),
        ),
        (
            "10 mx00.ionos.de",
            "ionos",
            (("imap.ionos.de", 993, "ssl"), ("smtp.ionos.de", 587, "starttls")),
        ),
        (
            "10 mx00.ionos.com",
            "ionos",
            (("imap.ionos.com", 993, "ssl"), ("smtp.ionos.com", 587, "starttls")),
        ),
        ("1 mx1.mail.ovh.net", "ovh", (("ssl0.ovh.net", 993, "ssl"), ("ssl0.ovh.net", 465, "ssl"))),
        (
            "10 mx1.emailsrvr.com",
            "rackspace",
            (("secure.emailsrvr.com", 993, "ssl"), ("secure.emailsrvr.com", 465, "ssl")),
        ),
    ],
)
async def test_mx_records_detect_hosted_mail(
    make_discoverer: MakeDiscoverer,
    dns_zone: LocalDnsServer,
    web: ConfigServer,
    mx: str,
    provider: str,
    expected: tuple[Server, Server],
) -> None:
    dns_zone.set_records("acme.test", "MX", [mx])

    result = await make_discoverer().discover("sales@acme.test")

    assert result.provider == provider
    assert result.source == f"mx:{mx.split()[1]}"
    assert hosts(result) == expected
    assert result.imap is not None
    assert result.imap.username == "sales@acme.test"
    assert web.requests == [], "an MX match needs no HTTP"
    # MX hosts are matched by name, never resolved.
    assert dns_zone.queried(mx.split()[1]) == 0


async def test_mx_records_are_tried_in_preference_order(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer
) -> None:
    dns_zone.set_records("acme.test", "MX", ["20 mx.zoho.eu", "10 aspmx.l.google.com"])
    dns_zone.set_records("filtered.test", "MX", ["5 mx.filter.test", "10 aspmx.l.google.com"])
    discoverer = make_discoverer()

    assert (await discoverer.discover("a@acme.test")).source == "mx:aspmx.l.google.com"
    # A filtering gateway in front says nothing; the next record finds the mailbox.
    assert (await discoverer.discover("a@filtered.test")).provider == "google"


# -------------------------------------------------------------- autoconfig


async def test_autoconfig_host_answers_for_a_custom_domain(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    publish(dns_zone, "autoconfig.acme.test")
    pop3 = (
        '<incomingServer type="pop3"><hostname>pop.acme.test</hostname><port>995</port>'
        "<socketType>SSL</socketType></incomingServer>"
    )
    web.route(
        "autoconfig.acme.test",
        AUTOCONFIG_PATH,
        Reply(
            body=config_xml(
                imap=("imap.%EMAILDOMAIN%", "143", "STARTTLS", "%EMAILLOCALPART%"),
                smtp=("smtp.acme.test", "587", "STARTTLS", "%EMAILADDRESS%"),
                before=pop3,
            ),
            headers={"content-type": "text/xml"},
        ),
    )

    result = await make_discoverer().discover("Sales+x@acme.test")

    assert result.source == f"autoconfig:https://autoconfig.acme.test:{web.port}{AUTOCONFIG_PATH}"
    assert result.provider is None
    assert result.imap == ServerSettings("imap.acme.test", 143, "starttls", "Sales+x")
    assert result.smtp == ServerSettings("smtp.acme.test", 587, "starttls", "Sales+x@acme.test")
    [seen] = [r for r in web.requests if r.host == "autoconfig.acme.test"]
    assert seen.query == {"emailaddress": ["Sales+x@acme.test"]}
    assert seen.headers["host"] == f"autoconfig.acme.test:{web.port}"


async def test_well_known_url_is_next(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    publish(dns_zone, "autoconfig.acme.test", "acme.test")
    web.route("acme.test", WELL_KNOWN_PATH, Reply(body=config_xml()))

    result = await make_discoverer().discover("sales@acme.test")

    assert result.source == f"autoconfig:https://acme.test:{web.port}{WELL_KNOWN_PATH}"
    assert hosts(result) == (("mail.acme.test", 993, "ssl"), ("mail.acme.test", 465, "ssl"))
    assert web.hits("autoconfig.acme.test", AUTOCONFIG_PATH) == 1  # answered 404 first
    [seen] = [r for r in web.requests if r.path == WELL_KNOWN_PATH]
    assert seen.query == {}


async def test_ispdb_answers_when_the_domain_publishes_nothing(
    make_discoverer: MakeDiscoverer, web: ConfigServer, dns_zone: LocalDnsServer
) -> None:
    # The domain has no web host at all: its autoconfig names do not resolve.
    web.route(
        ISPDB_HOST,
        "/v1.1/acme.test",
        Reply(
            body=config_xml(
                imap=("imap.gmail.com", "993", "SSL", "%EMAILADDRESS%"),
                smtp=("smtp.gmail.com", "465", "SSL", "%EMAILADDRESS%"),
            )
        ),
    )

    result = await make_discoverer().discover("sales@acme.test")

    assert (result.source, result.provider) == ("ispdb:acme.test", "google")
    assert result.smtp == ServerSettings("smtp.gmail.com", 465, "ssl", "sales@acme.test")


async def test_ispdb_for_the_mx_hosts_registrable_domain(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    # co.uk is a public suffix: the hoster's domain is hoster.co.uk, not co.uk.
    dns_zone.set_records("acme.test", "MX", ["10 mx1.eu.hoster.co.uk", "20 mx2.hoster.co.uk"])
    web.route(
        ISPDB_HOST,
        "/v1.1/hoster.co.uk",
        Reply(body=config_xml(imap=("imap.hoster.co.uk", "993", "SSL", "%EMAILADDRESS%"))),
    )

    result = await make_discoverer().discover("sales@acme.test")

    assert result.source == "ispdb:hoster.co.uk"
    assert result.imap == ServerSettings("imap.hoster.co.uk", 993, "ssl", "sales@acme.test")
    assert web.hits(ISPDB_HOST, "/v1.1/acme.test") == 1
    assert dns_zone.queried("mx1.eu.hoster.co.uk") == 0


def test_registrable_domain_uses_the_public_suffix_list() -> None:
    assert registrable_domain("mx1.eu.hoster.co.uk") == "hoster.co.uk"
    assert registrable_domain("aspmx.l.google.com.") == "google.com"
    assert registrable_domain("co.uk") is None


async def test_an_earlier_source_wins_even_when_a_later_one_is_faster(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    publish(dns_zone, "autoconfig.acme.test")
    web.route(
        "autoconfig.acme.test",
        AUTOCONFIG_PATH,
        Reply(body=config_xml(imap=("own.acme.test", "993", "SSL", None)), delay=0.3),
    )
    web.route(ISPDB_HOST, "/v1.1/acme.test", Reply(body=config_xml()))

    result = await make_discoverer().discover("sales@acme.test")

    assert result.source.startswith("autoconfig:https://autoconfig.acme.test")
    assert result.imap == ServerSettings("own.acme.test", 993, "ssl", None)


async def test_a_host_that_accepts_and_never_answers_costs_one_request_timeout(
    make_discoverer: MakeDiscoverer,
    dns_zone: LocalDnsServer,
    web: ConfigServer,
    blackhole: BlackholeServer,
) -> None:
    publish(dns_zone, "autoconfig.slow.test", "slow.test")
    web.route(ISPDB_HOST, "/v1.1/slow.test", Reply(body=config_xml()))
    connections = blackhole.connections
    discoverer = make_discoverer(autoconfig_port=blackhole.port, timeout=5.0, request_timeout=1.0)

    started = time.perf_counter()
    result = await discoverer.discover("sales@slow.test")
    elapsed = time.perf_counter() - started

    assert result.source == "ispdb:slow.test"
    assert blackhole.connections - connections == 2
    assert 0.9 < elapsed < 2.0, elapsed


async def test_the_whole_discovery_keeps_to_its_budget(
    make_discoverer: MakeDiscoverer,
    dns_zone: LocalDnsServer,
    web: ConfigServer,
    blackhole: BlackholeServer,
) -> None:
    publish(dns_zone, "autoconfig.slow.test", "slow.test")
    web.route(ISPDB_HOST, "/v1.1/slow.test", Reply(hang=True))
    discoverer = make_discoverer(autoconfig_port=blackhole.port, timeout=1.0, request_timeout=3.0)

    started = time.perf_counter()
    result = await discoverer.discover("sales@slow.test")
    elapsed = time.perf_counter() - started

    assert result == NOT_FOUND
    assert elapsed < 1.6, elapsed


async def test_a_slow_mx_lookup_is_bounded_too(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    dns_zone.set_failure("acme.test", "timeout")
    web.route(ISPDB_HOST, "/v1.1/acme.test", Reply(body=config_xml()))

    started = time.perf_counter()
    result = await make_discoverer(timeout=1.0).discover("sales@acme.test")

    assert time.perf_counter() - started < 1.6
    assert result == NOT_FOUND


async def test_an_unknown_mx_answer_still_lets_autoconfig_answer(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    dns_zone.set_failure("acme.test", "servfail")
    web.route(ISPDB_HOST, "/v1.1/acme.test", Reply(body=config_xml()))

    result = await make_discoverer().discover("sales@acme.test")

    assert result.source == "ispdb:acme.test"


async def test_private_addresses_are_refused_without_allow_private(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    publish(dns_zone, "autoconfig.acme.test", "acme.test")
    web.route("autoconfig.acme.test", AUTOCONFIG_PATH, Reply(body=config_xml()))
    web.route("acme.test", WELL_KNOWN_PATH, Reply(body=config_xml()))
    web.route(ISPDB_HOST, "/v1.1/acme.test", Reply(body=config_xml()))

    result = await make_discoverer(allow_private=False).discover("sales@acme.test")

    assert result == NOT_FOUND
    assert web.requests == [], "netguard must refuse before any connection"


async def test_a_redirect_to_another_https_host_is_followed_and_guarded(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    publish(dns_zone, "autoconfig.acme.test", "elsewhere.test")
    target = f"https://elsewhere.test:{web.port}/config.xml"
    web.route("autoconfig.acme.test", AUTOCONFIG_PATH, Reply(302, headers={"location": target}))
    web.route("elsewhere.test", "/config.xml", Reply(body=config_xml()))

    result = await make_discoverer().discover("sales@acme.test")

    assert result.source.startswith("autoconfig:https://autoconfig.acme.test")
    assert web.hits("elsewhere.test", "/config.xml") == 1


async def test_a_redirect_to_plain_http_is_not_followed(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    publish(dns_zone, "autoconfig.acme.test", "elsewhere.test")
    target = f"http://elsewhere.test:{web.port}/config.xml"
    web.route("autoconfig.acme.test", AUTOCONFIG_PATH, Reply(301, headers={"location": target}))

    result = await make_discoverer().discover("sales@acme.test")

    assert result == NOT_FOUND
    assert web.hits("elsewhere.test") == 0


@pytest.mark.parametrize("omit_length", [False, True])
async def test_an_oversized_document_is_dropped(
    make_discoverer: MakeDiscoverer,
    dns_zone: LocalDnsServer,
    web: ConfigServer,
    omit_length: bool,
) -> None:
    publish(dns_zone, "autoconfig.acme.test")
    padding = "<!--" + "x" * 120_000 + "-->"
    body = config_xml().replace(b"<clientConfig", padding.encode() + b"<clientConfig", 1)
    web.route("autoconfig.acme.test", AUTOCONFIG_PATH, Reply(body=body, omit_length=omit_length))
    web.route(
        ISPDB_HOST, "/v1.1/acme.test", Reply(body=config_xml(imap=("db.test", "993", "SSL", None)))
    )

    result = await make_discoverer().discover("sales@acme.test")

    assert result.source == "ispdb:acme.test"


async def test_a_compressed_answer_is_dropped(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    publish(dns_zone, "autoconfig.acme.test")
    web.route(
        "autoconfig.acme.test",
        AUTOCONFIG_PATH,
        Reply(body=b"\x1f\x8b...", headers={"content-encoding": "gzip"}),
    )

    assert await make_discoverer().discover("sales@acme.test") == NOT_FOUND
    [seen] = [r for r in web.requests if r.host == "autoconfig.acme.test"]
    assert seen.headers["accept-encoding"] == "identity"


async def test_results_are_cached_per_domain(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    publish(dns_zone, "autoconfig.acme.test")
    web.route("autoconfig.acme.test", AUTOCONFIG_PATH, Reply(body=config_xml()))
    discoverer = make_discoverer()

    first = await discoverer.discover("one@acme.test")
    requests, queries = len(web.requests), len(dns_zone.queries)
    second = await discoverer.discover("two@acme.test")

    assert (len(web.requests), len(dns_zone.queries)) == (requests, queries)
    assert second.source == first.source
    assert second.imap == ServerSettings("mail.acme.test", 993, "ssl", "two@acme.test")


async def test_cached_results_expire(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    publish(dns_zone, "autoconfig.acme.test")
    web.route("autoconfig.acme.test", AUTOCONFIG_PATH, Reply(body=config_xml()))
    discoverer = make_discoverer(cache_ttl=0.3)

    await discoverer.discover("one@acme.test")
    await asyncio.sleep(0.4)
    await discoverer.discover("two@acme.test")

    assert web.hits("autoconfig.acme.test") == 2


async def test_a_miss_is_cached_too(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    discoverer = make_discoverer()

    assert await discoverer.discover("one@acme.test") == NOT_FOUND
    requests = len(web.requests)
    assert await discoverer.discover("two@acme.test") == NOT_FOUND

    assert len(web.requests) == requests


async def test_the_cache_is_bounded(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    for domain in ("a.test", "b.test", "c.test"):
        dns_zone.set_records(domain, "MX", ["1 aspmx.l.google.com"])
    discoverer = make_discoverer(cache_size=2)

    for domain in ("a.test", "b.test", "c.test"):
        await discoverer.discover(f"x@{domain}")
    queries = dns_zone.queried("a.test", "MX")
    await discoverer.discover("y@c.test")
    await discoverer.discover("y@a.test")

    assert dns_zone.queried("c.test", "MX") == 1, "c.test is still cached"
    assert dns_zone.queried("a.test", "MX") == queries + 1, "a.test, the oldest, was dropped"


async def test_concurrent_discoveries_of_one_domain_share_one_lookup(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    publish(dns_zone, "autoconfig.acme.test")
    web.route("autoconfig.acme.test", AUTOCONFIG_PATH, Reply(body=config_xml(), delay=0.2))
    discoverer = make_discoverer()

    results = await asyncio.gather(*(discoverer.discover(f"u{i}@acme.test") for i in range(5)))

    assert web.hits("autoconfig.acme.test") == 1
    assert [r.imap.username for r in results if r.imap] == [f"u{i}@acme.test" for i in range(5)]


async def test_an_address_without_a_domain_is_refused(make_discoverer: MakeDiscoverer) -> None:
    discoverer = make_discoverer()
    for email in ("no-at-sign", "@acme.test", "user@", "user@localhost"):
        with pytest.raises(ValueError, match=r"email address|domain"):
            await discoverer.discover(email)


# ------------------------------------------------------------------ XML parsing


def test_hostile_or_broken_documents_give_nothing() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b'<clientConfig><emailProvider><incomingServer type="imap"><hostname>&lol2;</hostname>'
        b"<port>993</port><socketType>SSL</socketType></incomingServer></emailProvider>"
        b"</clientConfig>"
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE c [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<clientConfig>&x;</clientConfig>"
    )
    for document in (bomb, external, b"<clientConfig>", b"", b"<html><body>hi</body></html>"):
        assert parse_autoconfig(document, "acme.test") == (None, None)


def test_parsing_picks_usable_password_servers() -> None:
    document = b"""<clientConfig version="1.1"><emailProvider id="acme.test">
      <incomingServer type="imap"><hostname>oauth.acme.test</hostname><port>993</port>
        <socketType>SSL</socketType><authentication>OAuth2</authentication></incomingServer>
      <incomingServer type="imap"><hostname>bad host</hostname><port>993</port>
        <socketType>SSL</socketType></incomingServer>
      <incomingServer type="imap"><hostname>imap.acme.test</hostname><port>99999</port>
        <socketType>SSL</socketType></incomingServer>
      <incomingServer type="imap"><hostname>imap.acme.test</hostname><port>143</port>
        <socketType>TLS-ish</socketType></incomingServer>
      <incomingServer type="imap"><hostname>IMAP.Acme.Test.</hostname><port>143</port>
        <socketType>plain</socketType><username>%EMAILADDRESS%</username>
        <authentication>OAuth2</authentication>
        <authentication>password-cleartext</authentication></incomingServer>
      <outgoingServer type="smtp"><hostname>oauth.acme.test</hostname><port>587</port>
        <socketType>STARTTLS</socketType><authentication>OAuth2</authentication></outgoingServer>
    </emailProvider></clientConfig>"""

    imap, smtp = parse_autoconfig(document, "acme.test")

    assert imap == ServerSettings("imap.acme.test", 143, "none", "%EMAILADDRESS%")
    # Only an OAuth2 server is offered: better than nothing, the caller may know more.
    assert smtp == ServerSettings("oauth.acme.test", 587, "starttls", None)


async def test_unknown_username_placeholders_are_not_passed_on(
    make_discoverer: MakeDiscoverer, dns_zone: LocalDnsServer, web: ConfigServer
) -> None:
    publish(dns_zone, "autoconfig.acme.test")
    xml = config_xml(imap=("mail.acme.test", "993", "SSL", "%REALNAME%"))
    web.route("autoconfig.acme.test", AUTOCONFIG_PATH, Reply(body=xml))

    result = await make_discoverer().discover("sales@acme.test")

    assert result.imap is not None
    assert result.imap.username is None
    assert result.smtp is not None
    assert result.smtp.username == "sales@acme.test"


# --------------------------------------------------------------- request filling


def test_apply_discovery_fills_what_the_seed_lists() -> None:
    result = provider_settings("google")
    assert result is not None

    filled, names = apply_discovery({"emailAddress": "a@gmail.com", "imapPassword": "x"}, result)

    assert names == ["imapHost", "imapPort", "smtpHost", "smtpPort"]
    assert filled == {
        "emailAddress": "a@gmail.com",
        "imapPassword": "x",
        "imapHost": "imap.gmail.com",
        "imapPort": 993,
        "imapSecure": True,
        "smtpHost": "smtp.gmail.com",
        "smtpPort": 587,
        "smtpSecure": True,
    }


def test_apply_discovery_lets_explicit_fields_win() -> None:
    result = provider_settings("google")
    assert result is not None
    explicit = {"imapHost": "imap.gmail.com", "imapPort": 143, "smtpPort": 465, "imapSecure": None}

    filled, names = apply_discovery(explicit, result)

    assert names == ["smtpHost"]
    assert (filled["imapHost"], filled["imapPort"]) == ("imap.gmail.com", 143)
    # The port differs from the discovered one, so its flag is not ours to guess.
    assert filled["imapSecure"] is None
    assert (filled["smtpHost"], filled["smtpPort"]) == ("smtp.gmail.com", 465)
    assert "smtpSecure" not in filled
    assert explicit == {
        "imapHost": "imap.gmail.com",
        "imapPort": 143,
        "smtpPort": 465,
        "imapSecure": None,
    }


def test_apply_discovery_leaves_another_servers_port_alone() -> None:
    result = provider_settings("google")
    assert result is not None

    filled, names = apply_discovery({"imapHost": "mail.custom.test", "smtpHost": ""}, result)

    assert names == ["smtpHost", "smtpPort"]
    assert "imapPort" not in filled
    assert "imapSecure" not in filled
    assert filled["smtpSecure"] is True


def test_apply_discovery_with_nothing_found_changes_nothing() -> None:
    assert apply_discovery({"imapHost": None}, NOT_FOUND) == ({"imapHost": None}, [])
