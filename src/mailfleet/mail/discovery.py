"""Provider settings discovery: the IMAP and SMTP servers behind an email address.

Sources, first answer wins:

1. an explicit ``provider`` ("google", "zoho", ...): the DeepLead seed's table;
2. the email's domain in that table (gmail.com, outlook.com, ...);
3. the domain's MX records, matched against hosted-mail services (Google Workspace,
   Microsoft 365, Zoho by region, GoDaddy, ...);
4. Mozilla autoconfig, in Thunderbird's order: ``autoconfig.<domain>``, the
   domain's ``/.well-known/autoconfig`` URL, the Thunderbird ISPDB for the domain,
   then the ISPDB for the registrable domain of the MX host, which finds domains
   hosted at an ISP the ISPDB knows.

Steps 3 and 4 reach hosts a user named. Every host passes netguard first and the
request goes to the address netguard approved, the name kept for TLS SNI and the
Host header: a second lookup by the HTTP client could answer with a private
address (DNS rebinding). One discovery has a budget (``timeout``); a host that
accepts and never answers costs one request timeout at most, never the budget of
the autoconfig candidates fetched beside it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final
from xml.etree.ElementTree import Element, ParseError

import dns.exception
import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring as parse_xml

from mailfleet import __version__
from mailfleet.dns.resolver import lookup_mx, make_resolver, normalize_name
from mailfleet.kit.names import ascii_name, registrable_domain
from mailfleet.kit.netguard import IPAddress, NetguardError, guard_host
from mailfleet.kit.tls import client_context
from mailfleet.mail.probes import Security

__all__ = [
    "ISPDB_BASE_URL",
    "NOT_FOUND",
    "PROVIDER_DOMAINS",
    "Discoverer",
    "DiscoveryResult",
    "HttpClientFactory",
    "ServerSettings",
    "apply_discovery",
    "default_http_client",
    "parse_autoconfig",
    "provider_settings",
    "registrable_domain",
]

logger = logging.getLogger(__name__)

ISPDB_BASE_URL: Final = "https://autoconfig.thunderbird.net/v1.1/"
REQUEST_TIMEOUT: Final = 3.0
DNS_TIMEOUT: Final = 3.0
MAX_BODY_BYTES: Final = 100_000
MAX_REDIRECTS: Final = 3
_DEADLINE_GRACE: Final = 0.5
# A domain that published nothing is asked again soon: the answer may have been a
# passing failure, and a customer may be fixing their DNS right now. Long enough
# that a bulk import of one domain does not refetch for every mailbox.
NEGATIVE_CACHE_TTL: Final = 60.0
DEFAULT_CACHE_SIZE: Final = 4096
USER_AGENT: Final = f"Mailfleet/{__version__} (mail settings discovery)"

_EMAIL_ADDRESS: Final = "%EMAILADDRESS%"
_EMAIL_LOCALPART: Final = "%EMAILLOCALPART%"
_EMAIL_DOMAIN: Final = "%EMAILDOMAIN%"
_LABEL_RE: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_SOCKET_TYPES: Final[Mapping[str, Security]] = {
    "SSL": "ssl",
    "STARTTLS": "starttls",
    "PLAIN": "none",
}
# Current names, and "plain"/"secure", their names in older documents.
_PASSWORD_AUTH: Final = frozenset({"password-cleartext", "password-encrypted", "plain", "secure"})
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str
    port: int
    security: Security
    # None: not known; callers log in with the email address, as every provider in
    # the tables here expects.
    username: str | None = None


@dataclass(frozen=True, slots=True)
class DiscoveryResult:
    provider: str | None
    imap: ServerSettings | None
    smtp: ServerSettings | None
    # "provider-table", "domain-table", "mx:<host>", "autoconfig:<url>",
    # "ispdb:<domain>" or "none".
    source: str

    @property
    def found(self) -> bool:
        return self.imap is not None or self.smtp is not None


NOT_FOUND: Final = DiscoveryResult(provider=None, imap=None, smtp=None, source="none")


def _servers(
    imap: tuple[str, int, Security], smtp: tuple[str, int, Security]
) -> tuple[ServerSettings, ServerSettings]:
    return ServerSettings(*imap), ServerSettings(*smtp)


# The DeepLead seed's providers (seed 003), with the hosts and ports the providers
# document for IMAP and for authenticated submission.
_SEED_PROVIDERS: Final[Mapping[str, tuple[ServerSettings, ServerSettings]]] = {
    "google": _servers(("imap.gmail.com", 993, "ssl"), ("smtp.gmail.com", 587, "starttls")),
    "microsoft": _servers(
        ("outlook.office365.com", 993, "ssl"), ("smtp.office365.com", 587, "starttls")
    ),
    "yahoo": _servers(("imap.mail.yahoo.com", 993, "ssl"), ("smtp.mail.yahoo.com", 465, "ssl")),
    "zoho": _servers(("imap.zoho.com", 993, "ssl"), ("smtp.zoho.com", 465, "ssl")),
    "icloud": _servers(("imap.mail.me.com", 993, "ssl"), ("smtp.mail.me.com", 587, "starttls")),
    "godaddy": _servers(
        ("imap.secureserver.net", 993, "ssl"), ("smtpout.secureserver.net", 465, "ssl")
    ),
    "namecheap": _servers(
        ("mail.privateemail.com", 993, "ssl"), ("mail.privateemail.com", 465, "ssl")
    ),
}

# Hosted-mail services found by MX only: they have no consumer domain to list, but
# "provider" may still name them.
_MX_ONLY_PROVIDERS: Final[Mapping[str, tuple[ServerSettings, ServerSettings]]] = {
    "fastmail": _servers(("imap.fastmail.com", 993, "ssl"), ("smtp.fastmail.com", 465, "ssl")),
    "yandex": _servers(("imap.yandex.com", 993, "ssl"), ("smtp.yandex.com", 465, "ssl")),
    "ionos": _servers(("imap.ionos.com", 993, "ssl"), ("smtp.ionos.com", 587, "starttls")),
    "ovh": _servers(("ssl0.ovh.net", 993, "ssl"), ("ssl0.ovh.net", 465, "ssl")),
    "rackspace": _servers(
        ("secure.emailsrvr.com", 993, "ssl"), ("secure.emailsrvr.com", 465, "ssl")
    ),
    "migadu": _servers(("imap.migadu.com", 993, "ssl"), ("smtp.migadu.com", 465, "ssl")),
    "mailbox.org": _servers(("imap.mailbox.org", 993, "ssl"), ("smtp.mailbox.org", 465, "ssl")),
    "titan": _servers(("imap.titan.email", 993, "ssl"), ("smtp.titan.email", 465, "ssl")),
    "hostinger": _servers(("imap.hostinger.com", 993, "ssl"), ("smtp.hostinger.com", 465, "ssl")),
}

_PROVIDERS: Final[Mapping[str, tuple[ServerSettings, ServerSettings]]] = {
    **_SEED_PROVIDERS,
    **_MX_ONLY_PROVIDERS,
}

PROVIDER_DOMAINS: Final[Mapping[str, str]] = {
    "gmail.com": "google",
    "googlemail.com": "google",
    "outlook.com": "microsoft",
    "hotmail.com": "microsoft",
    "live.com": "microsoft",
    "yahoo.com": "yahoo",
    "yahoo.co.uk": "yahoo",
    "zoho.com": "zoho",
    "zohomail.com": "zoho",
    "icloud.com": "icloud",
    "me.com": "icloud",
    "mac.com": "icloud",
    "secureserver.net": "godaddy",
    "privateemail.com": "namecheap",
}

# Names other platforms' dialects (and people) use for the same providers.
_PROVIDER_ALIASES: Final[Mapping[str, str]] = {
    "gmail": "google",
    "googleworkspace": "google",
    "gsuite": "google",
    "outlook": "microsoft",
    "hotmail": "microsoft",
    "office365": "microsoft",
    "microsoft365": "microsoft",
    "o365": "microsoft",
    "zohomail": "zoho",
    "apple": "icloud",
    "privateemail": "namecheap",
    "mailboxorg": "mailbox.org",
}


@dataclass(frozen=True, slots=True)
class _MxRule:
    suffix: str  # the MX host itself or any name under it
    provider: str
    imap: ServerSettings
    smtp: ServerSettings


def _rule(suffix: str, provider: str) -> _MxRule:
    imap, smtp = _PROVIDERS[provider]
    return _MxRule(suffix, provider, imap, smtp)


def _zoho(region: str) -> _MxRule:
    # Domains hosted at Zoho log in at the organisation ("pro") hosts of their data
    # centre; imap.zoho.com is for personal @zoho.com accounts.
    return _MxRule(
        region,
        "zoho",
        ServerSettings(f"imappro.{region}", 993, "ssl"),
        ServerSettings(f"smtppro.{region}", 465, "ssl"),
    )


def _ionos(region: str) -> _MxRule:
    return _MxRule(
        region,
        "ionos",
        ServerSettings(f"imap.{region}", 993, "ssl"),
        ServerSettings(f"smtp.{region}", 587, "starttls"),
    )


# Outbound-only services (Mailgun, SendGrid) and bridge-only ones (Proton) are
# absent on purpose: nobody logs in to them over IMAP with a password.
_MX_RULES: Final[tuple[_MxRule, ...]] = tuple(
    sorted(
        (
            _rule("google.com", "google"),  # aspmx.l.google.com, alt*, smtp.google.com
            _rule("googlemail.com", "google"),  # aspmx2.googlemail.com, ...
            _rule("protection.outlook.com", "microsoft"),
            _rule("mx.microsoft", "microsoft"),  # Exchange Online's DNSSEC MX hosts
            _zoho("zoho.com"),
            _zoho("zoho.eu"),
            _zoho("zoho.in"),
            _zoho("zoho.com.au"),
            _zoho("zoho.jp"),
            _rule("secureserver.net", "godaddy"),
            _rule("privateemail.com", "namecheap"),
            _rule("yahoodns.net", "yahoo"),
            _rule("mail.icloud.com", "icloud"),
            _rule("messagingengine.com", "fastmail"),
            _rule("mx.yandex.net", "yandex"),
            _rule("mx.yandex.ru", "yandex"),
            _ionos("ionos.com"),
            _ionos("ionos.de"),
            _ionos("ionos.co.uk"),
            _ionos("ionos.es"),
            _ionos("ionos.fr"),
            _ionos("ionos.it"),
            _rule("mail.ovh.net", "ovh"),
            _rule("emailsrvr.com", "rackspace"),
            _rule("migadu.com", "migadu"),
            _rule("mailbox.org", "mailbox.org"),
            _rule("titan.email", "titan"),
            _rule("hostinger.com", "hostinger"),
        ),
        # The most specific suffix first, so a narrower rule is never shadowed.
        key=lambda rule: -rule.suffix.count("."),
    )
)

# Providers whose MX records say more than the table does (region, organisation
# hosts): an explicit provider is refined by MX only for these.
_REFINED_BY_MX: Final = frozenset(
    rule.provider for rule in _MX_RULES if (rule.imap, rule.smtp) != _PROVIDERS[rule.provider]
)

# Names an autoconfig answer's provider after the hosts it points at.
_PROVIDER_BY_HOST: Final[Mapping[str, str]] = {
    settings.host: provider for provider, pair in _PROVIDERS.items() for settings in pair
} | {settings.host: rule.provider for rule in _MX_RULES for settings in (rule.imap, rule.smtp)}


def provider_settings(provider: str) -> DiscoveryResult | None:
    """The static settings of a known provider ("google", "zoho", ...), or None.

    Usernames are None: without an address there is nothing to fill in.
    """
    key = _provider_key(provider)
    if key is None:
        return None
    imap, smtp = _PROVIDERS[key]
    return DiscoveryResult(provider=key, imap=imap, smtp=smtp, source="provider-table")


def _provider_key(provider: str | None) -> str | None:
    if provider is None:
        return None
    text = provider.strip().lower()
    if text in _PROVIDERS:
        return text
    compact = re.sub(r"[\s_.-]+", "", text)
    key = _PROVIDER_ALIASES.get(compact, compact)
    return key if key in _PROVIDERS else None


def _with_username(result: DiscoveryResult, username: str) -> DiscoveryResult:
    return replace(
        result,
        imap=None if result.imap is None else replace(result.imap, username=username),
        smtp=None if result.smtp is None else replace(result.smtp, username=username),
    )


def _table_template(provider: str, source: str) -> DiscoveryResult:
    imap, smtp = _PROVIDERS[provider]
    result = DiscoveryResult(provider=provider, imap=imap, smtp=smtp, source=source)
    return _with_username(result, _EMAIL_ADDRESS)


def _match_mx(exchanges: Sequence[str]) -> DiscoveryResult | None:
    for exchange in exchanges:
        for rule in _MX_RULES:
            if exchange == rule.suffix or exchange.endswith("." + rule.suffix):
                result = DiscoveryResult(
                    provider=rule.provider, imap=rule.imap, smtp=rule.smtp, source=f"mx:{exchange}"
                )
                return _with_username(result, _EMAIL_ADDRESS)
    return None


# ------------------------------------------------------------------ autoconfig XML


def _local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(element: Element, name: str) -> str | None:
    for child in element:
        if _local_name(child.tag) == name:
            return (child.text or "").strip()
    return None


def _valid_host(text: str) -> str | None:
    name = text.strip().lower().removesuffix(".")
    if not name:
        return None
    try:
        return str(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        pass
    try:
        host = ascii_name(name)
    except ValueError:
        return None
    if not all(_LABEL_RE.fullmatch(x) for x in host.split(".")):
        return None
    return host


def _server_from(element: Element, domain: str) -> tuple[ServerSettings, bool] | None:
    hostname = (_child_text(element, "hostname") or "").replace(_EMAIL_DOMAIN, domain)
    host = _valid_host(hostname)
    port_text = _child_text(element, "port") or ""
    security = _SOCKET_TYPES.get((_child_text(element, "socketType") or "").upper())
    if host is None or security is None or not (port_text.isascii() and port_text.isdigit()):
        return None
    port = int(port_text)
    if not 0 < port < 65536:
        return None
    username = _child_text(element, "username")
    settings = ServerSettings(
        host, port, security, username.replace(_EMAIL_DOMAIN, domain) if username else None
    )
    methods = {
        (child.text or "").strip().lower()
        for child in element
        if _local_name(child.tag) == "authentication"
    }
    return settings, not methods or bool(methods & _PASSWORD_AUTH)


def _first_server(
    root: Element, element_name: str, kind: str, domain: str
) -> ServerSettings | None:
    candidates: list[tuple[ServerSettings, bool]] = []
    for element in root.iter():
        if _local_name(element.tag) == element_name and element.get("type", "").lower() == kind:
            parsed = _server_from(element, domain)
            if parsed is not None:
                candidates.append(parsed)
    # Mailfleet logs in with passwords, so a server that takes only OAuth2 loses to
    # a later one that takes a password.
    for settings, takes_password in candidates:
        if takes_password:
            return settings
    return candidates[0][0] if candidates else None


def parse_autoconfig(
    document: bytes, domain: str
) -> tuple[ServerSettings | None, ServerSettings | None]:
    """The first IMAP and SMTP servers of a config-v1.1 document, or (None, None).

    %EMAILDOMAIN% is filled in; %EMAILADDRESS% and %EMAILLOCALPART% stay in the
    username for each address to fill. DTDs are refused outright: the document
    comes from whoever controls the domain, and entities are how XML bombs work.
    """
    try:
        root = parse_xml(document, forbid_dtd=True)
    except (ParseError, DefusedXmlException, ValueError):
        return None, None
    if _local_name(root.tag) != "clientConfig":
        return None, None
    return (
        _first_server(root, "incomingServer", "imap", domain),
        _first_server(root, "outgoingServer", "smtp", domain),
    )


def _render(template: DiscoveryResult, email: str, local_part: str) -> DiscoveryResult:
    def fill(settings: ServerSettings | None) -> ServerSettings | None:
        if settings is None or settings.username is None:
            return settings
        username = settings.username.replace(_EMAIL_ADDRESS, email).replace(
            _EMAIL_LOCALPART, local_part
        )
        # A placeholder we do not know (%REALNAME% has no place in a login) would
        # reach the server verbatim; better to let the caller use the address.
        return replace(settings, username=None if "%" in username else username)

    return replace(template, imap=fill(template.imap), smtp=fill(template.smtp))


def _split_email(email: str) -> tuple[str, str]:
    local_part, at, domain_text = email.strip().rpartition("@")
    if not at or not local_part or not domain_text:
        raise ValueError("not an email address")
    try:
        domain = normalize_name(domain_text)
    except ValueError:
        raise ValueError("the email address has an invalid domain") from None
    if "." not in domain:
        raise ValueError("the email address has an invalid domain")
    return local_part, domain


# ------------------------------------------------------------------------- HTTP

HttpClientFactory = Callable[[ssl.SSLContext], httpx.AsyncClient]
"""Builds the client for one fetch, given the TLS context that verifies servers."""


def default_http_client(verify: ssl.SSLContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        verify=verify,
        follow_redirects=False,
        # A proxy from the environment would connect by name, after netguard.
        trust_env=False,
        timeout=REQUEST_TIMEOUT,
        # Requests go to pinned addresses: a pooled connection opened (and its
        # certificate checked) for one name must not carry a request for another.
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def _is_https_target(url: httpx.URL) -> bool:
    return url.scheme == "https" and not url.userinfo and bool(url.raw_host) and url.port != 0


class _Unusable(Exception):
    """A fetch ended without a document; the message says why, for the debug log."""


class Discoverer:
    """Finds mail settings for addresses; one per process, its cache shared by callers.

    ``nameservers`` (MAILFLEET_DNS_NAMESERVERS; None for the system resolver) answer
    the MX lookups and netguard's lookups alike. ``timeout`` bounds one discovery;
    ``request_timeout`` bounds one autoconfig fetch, redirects included.
    ``ispdb_base_url=None`` turns the Thunderbird ISPDB off. ``autoconfig_port`` is
    for tests only: the port of ``autoconfig.<domain>`` and ``<domain>``, whose
    test servers cannot listen on 443.
    """

    def __init__(
        self,
        *,
        nameservers: list[str] | None,
        allow_private: bool,
        timeout: float = 5.0,
        http_client_factory: HttpClientFactory = default_http_client,
        ispdb_base_url: str | None = ISPDB_BASE_URL,
        tls_ca_file: Path | None = None,
        cache_ttl: float = 3600,
        cache_size: int = DEFAULT_CACHE_SIZE,
        request_timeout: float = REQUEST_TIMEOUT,
        autoconfig_port: int | None = None,
    ) -> None:
        if timeout <= 0 or request_timeout <= 0:
            raise ValueError("timeouts must be positive")
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        if autoconfig_port is not None and not 0 < autoconfig_port < 65536:
            raise ValueError("autoconfig_port must be 1..65535")
        self._nameservers = list(nameservers) if nameservers else None
        self._allow_private = allow_private
        self._timeout = timeout
        self._request_timeout = request_timeout
        self._client_factory = http_client_factory
        self._ispdb = self._ispdb_base(ispdb_base_url)
        self._tls = client_context(tls_ca_file)
        self._cache_ttl = cache_ttl
        self._cache_size = cache_size
        self._autoconfig_port = autoconfig_port
        self._cache: dict[tuple[str, str], tuple[float, DiscoveryResult]] = {}
        # Workers may call from several threads' event loops.
        self._cache_lock = threading.Lock()
        self._inflight: dict[tuple[str, str], asyncio.Task[DiscoveryResult]] = {}

    @staticmethod
    def _ispdb_base(url: str | None) -> str | None:
        if url is None:
            return None
        parsed = httpx.URL(url)
        if not _is_https_target(parsed) or parsed.query or parsed.fragment:
            raise ValueError("ispdb_base_url must be an https URL without credentials or query")
        return url if url.endswith("/") else url + "/"

    # ---------------------------------------------------------------- public

    async def discover(self, email: str, provider: str | None = None) -> DiscoveryResult:
        """Settings for ``email``, usernames filled in; ``NOT_FOUND`` when none are known.

        Raises ValueError only for an address without a valid domain. An unknown
        ``provider`` value ("custom", "smtp") is ignored: detection decides.
        """
        address = email.strip()
        local_part, domain = _split_email(address)
        provider_key = _provider_key(provider)
        domain_provider = PROVIDER_DOMAINS.get(domain)
        if provider_key is not None and (
            provider_key not in _REFINED_BY_MX or domain_provider is not None
        ):
            template = _table_template(provider_key, "provider-table")
        elif provider_key is None and domain_provider is not None:
            template = _table_template(domain_provider, "domain-table")
        else:
            key = (domain, provider_key or "")
            cached = self._cached(key)
            template = cached if cached is not None else await self._shared(key, address)
        return _render(template, address, local_part)

    async def mail_provider(
        self, email: str, *, provider: str | None = None, hosts: Sequence[str] = ()
    ) -> str | None:
        """The provider hosting ``email``'s mailbox ("google", "microsoft", ...), or None.

        In order: ``provider`` when it names a known one, the address's domain, the
        mailbox's IMAP/SMTP ``hosts``, then the domain's MX records (cached like a
        discovery). No autoconfig fetch: only a name is wanted, and it must be quick.
        """
        explicit = _provider_key(provider)
        if explicit is not None:
            return explicit
        _, domain = _split_email(email.strip())
        if domain in PROVIDER_DOMAINS:
            return PROVIDER_DOMAINS[domain]
        for host in hosts:
            name = host.strip().lower().rstrip(".")
            if name in _PROVIDER_BY_HOST:
                return _PROVIDER_BY_HOST[name]
            by_suffix = _match_mx([name])
            if by_suffix is not None:
                return by_suffix.provider
        key = (domain, "#mx")
        found = self._cached(key)
        if found is None:
            deadline = asyncio.get_running_loop().time() + self._timeout
            exchanges = await self._mx_hosts(domain, deadline)
            found = _match_mx(exchanges or ()) or NOT_FOUND
            if exchanges is not None:
                self._store(key, found)
        return found.provider

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # ----------------------------------------------------------------- cache

    def _cached(self, key: tuple[str, str]) -> DiscoveryResult | None:
        with self._cache_lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            expires, result = entry
            if expires <= time.monotonic():
                del self._cache[key]
                return None
            return result

    def _store(self, key: tuple[str, str], result: DiscoveryResult) -> None:
        ttl = self._cache_ttl if result.found else min(self._cache_ttl, NEGATIVE_CACHE_TTL)
        if ttl <= 0:
            return
        with self._cache_lock:
            now = time.monotonic()
            self._cache.pop(key, None)
            if len(self._cache) >= self._cache_size:
                for stale in [k for k, (expires, _) in self._cache.items() if expires <= now]:
                    del self._cache[stale]
            while len(self._cache) >= self._cache_size:
                # Insertion order is age order: the oldest entry goes first.
                del self._cache[next(iter(self._cache))]
            self._cache[key] = (now + ttl, result)

    async def _shared(self, key: tuple[str, str], email: str) -> DiscoveryResult:
        # Concurrent discoveries of one domain (a bulk import) share one lookup.
        loop = asyncio.get_running_loop()
        task = self._inflight.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._discover_uncached(key, email))
            self._inflight[key] = task

            def forget(done: asyncio.Task[DiscoveryResult]) -> None:
                if self._inflight.get(key) is done:
                    del self._inflight[key]

            task.add_done_callback(forget)
        # Shielded: one caller giving up must not cancel the lookup for the others.
        return await asyncio.shield(task)

    # ------------------------------------------------------------- detection

    async def _discover_uncached(self, key: tuple[str, str], email: str) -> DiscoveryResult:
        domain, provider_text = key
        provider_key = provider_text or None
        deadline = asyncio.get_running_loop().time() + self._timeout
        try:
            # The steps watch the deadline themselves and cancel what they
            # started; this catches one that does not, after a grace for that.
            async with asyncio.timeout_at(deadline + _DEADLINE_GRACE):
                result = await self._detect(domain, provider_key, email, deadline)
        except TimeoutError:
            # Says nothing about the domain, so it is not cached.
            logger.info("mail settings discovery for %s ran out of time", domain)
            if provider_key is None:
                return NOT_FOUND
            return _table_template(provider_key, "provider-table")
        self._store(key, result)
        return result

    async def _detect(
        self, domain: str, provider_key: str | None, email: str, deadline: float
    ) -> DiscoveryResult:
        exchanges = await self._mx_hosts(domain, deadline)
        detected = _match_mx(exchanges or ())
        if provider_key is not None:
            # An explicit provider wins; its MX records only pick the right hosts
            # (Zoho's region) when they name the same provider.
            if detected is not None and detected.provider == provider_key:
                return detected
            return _table_template(provider_key, "provider-table")
        if detected is not None:
            return detected
        return await self._autoconfig(domain, email, exchanges, deadline)

    async def _mx_hosts(self, domain: str, deadline: float) -> list[str] | None:
        """MX hosts by preference; [] when the domain has none, None when unknown."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            return None
        try:
            resolver = make_resolver(self._nameservers, timeout=min(DNS_TIMEOUT, remaining))
        except (dns.exception.DNSException, ValueError) as exc:
            logger.warning("no DNS resolver for mail settings discovery: %s", exc)
            return None
        result = await lookup_mx(resolver, domain)
        if result.unknown:
            logger.debug("MX lookup for %s failed: %s", domain, result.error)
            return None
        return [record.exchange for record in result.records if record.exchange]

    def _autoconfig_url(self, host: str, path: str, email: str | None) -> httpx.URL:
        params = {"emailaddress": email} if email is not None else None
        return httpx.URL(
            scheme="https", host=host, port=self._autoconfig_port, path=path, params=params
        )

    async def _autoconfig(
        self, domain: str, email: str, exchanges: list[str] | None, deadline: float
    ) -> DiscoveryResult:
        candidates: list[tuple[str, httpx.URL]] = []
        for url in (
            self._autoconfig_url(f"autoconfig.{domain}", "/mail/config-v1.1.xml", email),
            self._autoconfig_url(domain, "/.well-known/autoconfig/mail/config-v1.1.xml", None),
        ):
            # The query (the address of whoever came first) stays out of the source.
            candidates.append((f"autoconfig:{url.copy_with(query=None)}", url))
        if self._ispdb is not None:
            candidates.append((f"ispdb:{domain}", httpx.URL(self._ispdb + domain)))
            mx_base = registrable_domain(exchanges[0]) if exchanges else None
            if mx_base is not None and mx_base != domain:
                candidates.append((f"ispdb:{mx_base}", httpx.URL(self._ispdb + mx_base)))
        return await self._first_config(domain, candidates, deadline)

    async def _first_config(
        self, domain: str, candidates: list[tuple[str, httpx.URL]], deadline: float
    ) -> DiscoveryResult:
        loop = asyncio.get_running_loop()
        tasks = [
            loop.create_task(self._fetch_config(domain, url, deadline)) for _, url in candidates
        ]
        try:
            # Fetched together, taken in order: a later source that answers first
            # waits for the earlier ones to fail.
            for (source, _), task in zip(candidates, tasks, strict=True):
                remaining = deadline - loop.time()
                if not task.done() and remaining > 0:
                    await asyncio.wait([task], timeout=remaining)
                if not task.done():
                    break
                found = _as_result(source, task.result())
                if found is not None:
                    return found
            # Out of time with an earlier source still pending: settle for the
            # best one that did answer.
            for (source, _), task in zip(candidates, tasks, strict=True):
                if task.done() and not task.cancelled() and task.exception() is None:
                    found = _as_result(source, task.result())
                    if found is not None:
                        return found
            return NOT_FOUND
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch_config(
        self, domain: str, url: httpx.URL, deadline: float
    ) -> tuple[ServerSettings | None, ServerSettings | None]:
        budget = min(self._request_timeout, deadline - asyncio.get_running_loop().time())
        if budget <= 0:
            return None, None
        try:
            async with asyncio.timeout(budget):
                document = await self._fetch(url, budget)
        except TimeoutError:
            logger.debug("autoconfig fetch from %s: no answer in %.1f s", url.host, budget)
            return None, None
        except _Unusable as exc:
            logger.debug("autoconfig fetch from %s: %s", url.host, exc)
            return None, None
        return parse_autoconfig(document, domain)

    async def _fetch(self, url: httpx.URL, budget: float) -> bytes:
        for _hop in range(MAX_REDIRECTS + 1):
            if not _is_https_target(url):
                raise _Unusable("only https URLs without credentials are fetched")
            host = url.raw_host.decode("ascii")
            try:
                addresses = await guard_host(
                    host,
                    allow_private=self._allow_private,
                    timeout=budget,
                    nameservers=self._nameservers,
                )
            except NetguardError as exc:
                raise _Unusable(f"{exc.code}: {exc.message}") from None
            answer = await self._get(url, host, addresses, budget)
            if isinstance(answer, bytes):
                return answer
            try:
                url = url.join(answer)
            except httpx.InvalidURL:
                raise _Unusable("redirected to an invalid URL") from None
        raise _Unusable(f"more than {MAX_REDIRECTS} redirects")

    async def _get(
        self, url: httpx.URL, host: str, addresses: list[IPAddress], budget: float
    ) -> bytes | str:
        """The body of a 200 answer, or the Location of a redirect."""
        headers = {
            # The name, not the pinned address, so virtual hosts route as published.
            "host": url.netloc.decode("ascii"),
            "user-agent": USER_AGENT,
            # Compressed bodies could expand past the size cap inside one chunk.
            "accept-encoding": "identity",
            "accept": "application/xml, text/xml;q=0.9, */*;q=0.1",
        }
        failure = "no address to connect to"
        async with self._client_factory(self._tls) as client:
            for address in addresses:
                request = client.build_request(
                    "GET",
                    url.copy_with(host=str(address)),
                    headers=headers,
                    timeout=budget,
                    extensions={"sni_hostname": host},
                )
                try:
                    response = await client.send(request, stream=True, follow_redirects=False)
                except httpx.ConnectError as exc:
                    # Another address of the same host may answer.
                    failure = f"could not connect to {address}: {exc}"
                    continue
                except httpx.HTTPError as exc:
                    raise _Unusable(f"{type(exc).__name__}: {exc}") from None
                try:
                    return await _read_answer(response)
                except httpx.HTTPError as exc:
                    raise _Unusable(f"{type(exc).__name__}: {exc}") from None
                finally:
                    await response.aclose()
        raise _Unusable(failure)


async def _read_answer(response: httpx.Response) -> bytes | str:
    status = response.status_code
    if status in _REDIRECT_STATUSES:
        location = str(response.headers.get("location", ""))
        if not location:
            raise _Unusable(f"answered {status} without a Location")
        return location
    if status != 200:
        raise _Unusable(f"answered {status}")
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise _Unusable(f"answered with content-encoding {encoding!r}")
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise _Unusable(f"the document is larger than {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _Unusable(f"the document is larger than {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _as_result(
    source: str, servers: tuple[ServerSettings | None, ServerSettings | None]
) -> DiscoveryResult | None:
    imap, smtp = servers
    if imap is None and smtp is None:
        return None
    provider = _PROVIDER_BY_HOST.get(imap.host if imap else "") or _PROVIDER_BY_HOST.get(
        smtp.host if smtp else ""
    )
    return DiscoveryResult(provider=provider, imap=imap, smtp=smtp, source=source)


# ------------------------------------------------------------ request filling


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def apply_discovery(
    explicit: Mapping[str, Any], result: DiscoveryResult
) -> tuple[dict[str, Any], list[str]]:
    """Fill the missing imapHost/imapPort/smtpHost/smtpPort (and imapSecure/smtpSecure)
    of a flat request from ``result``; explicit values always win.

    Returns the filled copy and the names filled, in the seed's order: DeepLead's
    ``autoFilledFields``. The secure flags are filled with their port but not
    listed, since the seed's requests have no such fields to report. When the
    request names a different host than the one discovered, that protocol's port
    and flag are left alone: they belong to the discovered server, not to the one
    the request names.
    """
    filled = dict(explicit)
    names: list[str] = []
    for protocol, settings in (("imap", result.imap), ("smtp", result.smtp)):
        if settings is None:
            continue
        host_key, port_key, secure_key = f"{protocol}Host", f"{protocol}Port", f"{protocol}Secure"
        given_host = filled.get(host_key)
        if _missing(given_host):
            filled[host_key] = settings.host
            names.append(host_key)
        elif str(given_host).strip().lower().removesuffix(".") != settings.host:
            continue
        given_port = filled.get(port_key)
        if _missing(given_port):
            filled[port_key] = settings.port
            names.append(port_key)
        elif given_port != settings.port:
            continue
        if _missing(filled.get(secure_key)):
            filled[secure_key] = settings.security != "none"
    return filled, names
