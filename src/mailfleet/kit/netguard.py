"""The one guard every outbound connection to a user-supplied host passes.

Callers connect to an address the guard returned, never to the name again: a
second DNS lookup could answer with a private address (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Sequence
from typing import Final, Literal

import dns.exception

from mailfleet.kit.names import ascii_name
from mailfleet.kit.nameservers import make_resolver

__all__ = [
    "FORBIDDEN_TARGET",
    "HOST_NOT_FOUND",
    "INVALID_TARGET",
    "IPAddress",
    "NetguardError",
    "forbidden_reason",
    "guard_host",
    "guard_url",
    "is_forbidden_address",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
NetguardCode = Literal["HOST_NOT_FOUND", "FORBIDDEN_TARGET", "INVALID_TARGET"]

HOST_NOT_FOUND: Final = "HOST_NOT_FOUND"
FORBIDDEN_TARGET: Final = "FORBIDDEN_TARGET"
INVALID_TARGET: Final = "INVALID_TARGET"

# Ranges Python's ipaddress flags do not cover on every supported version.
_EXTRA_FORBIDDEN: Final[tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]] = (
    (ipaddress.IPv4Network("100.64.0.0/10"), "shared address space"),
    (ipaddress.IPv4Network("192.0.0.0/24"), "IETF protocol assignment"),
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "local-use NAT64"),
)
_NAT64_WELL_KNOWN: Final = ipaddress.IPv6Network("64:ff9b::/96")
_LABEL_RE: Final = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_MAX_SHOWN: Final = 80


class NetguardError(Exception):
    """An outbound target was refused; ``code`` says why in one word."""

    def __init__(
        self, code: NetguardCode, message: str, *, host: str, address: str | None = None
    ) -> None:
        super().__init__(message)
        self.code: NetguardCode = code
        self.message = message
        self.host = host
        self.address = address


def _shown(value: str) -> str:
    # repr() escapes control characters, so hostile input cannot forge log lines.
    text = value if len(value) <= _MAX_SHOWN else value[:_MAX_SHOWN] + "..."
    return repr(text)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64_WELL_KNOWN:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public target (e.g. ``"loopback"``), or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            # These addresses reach the embedded IPv4 host, so judge that host.
            reason = forbidden_reason(embedded)
            return None if reason is None else f"{reason} via embedded IPv4 {embedded}"
        if ip.teredo is not None:
            return "Teredo tunnel"
        if ip.is_site_local:
            return "site-local"
    checks = (
        (ip.is_unspecified, "unspecified"),
        (ip.is_loopback, "loopback"),
        (ip.is_link_local, "link-local"),
        (ip.is_multicast, "multicast"),
        (ip.is_private, "private"),
        (ip.is_reserved, "reserved"),
    )
    for flagged, reason in checks:
        if flagged:
            return reason
    for network, reason in _EXTRA_FORBIDDEN:
        if ip.version == network.version and ip in network:
            return reason
    if not ip.is_global:
        return "non-global"
    return None


def is_forbidden_address(ip: IPAddress) -> bool:
    """True when ``ip`` is not a public unicast address."""
    return forbidden_reason(ip) is not None


def _parse_literal(host: str) -> IPAddress | None:
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def _normalise_hostname(host: str) -> str | None:
    """The ASCII (IDNA) form of a host name, or None when it is not a valid name."""
    try:
        name = ascii_name(host)
    except ValueError:
        return None
    if not all(_LABEL_RE.fullmatch(label) for label in name.split(".")):
        return None
    return name


def _check(
    host: str, addresses: list[IPAddress], *, allow_private: bool, literal: bool
) -> list[IPAddress]:
    if not allow_private:
        for ip in addresses:
            reason = forbidden_reason(ip)
            if reason is not None:
                if not literal:
                    target = f"host {_shown(host)} resolves to {ip}"
                elif host.strip("[]") == str(ip):
                    target = f"address {ip}"
                else:
                    target = f"address {_shown(host)} ({ip})"
                raise NetguardError(
                    FORBIDDEN_TARGET,
                    f"{target}, which is not public ({reason}); outbound connections "
                    "may not reach it unless MAILFLEET_ALLOW_PRIVATE_NETWORKS=true (for "
                    "servers on this machine or your own network)",
                    host=host,
                    address=str(ip),
                )
    return addresses


async def guard_host(
    host: str,
    *,
    allow_private: bool,
    # The guard owns a default lookup deadline so that no caller can forget one.
    timeout: float = 5.0,  # noqa: ASYNC109
    nameservers: Sequence[str] | None = None,
) -> list[IPAddress]:
    """Resolve ``host`` and return its addresses, refusing any non-public one.

    One forbidden address refuses the whole host, since a connection may pick any
    of them. With ``nameservers`` (MAILFLEET_DNS_NAMESERVERS), names are resolved
    there instead of through the system resolver.
    """
    literal = _parse_literal(host)
    if literal is not None:
        return _check(host, [literal], allow_private=allow_private, literal=True)
    ascii_name = _normalise_hostname(host)
    if ascii_name is None:
        raise NetguardError(INVALID_TARGET, f"invalid host name {_shown(host)}", host=host)

    if nameservers:
        resolved = await _resolve_with(ascii_name, list(nameservers), timeout)
        if not resolved:
            raise NetguardError(
                HOST_NOT_FOUND, f"host {_shown(host)} could not be resolved", host=host
            )
        return _check(host, resolved, allow_private=allow_private, literal=False)

    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(ascii_name, None, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise NetguardError(
            HOST_NOT_FOUND,
            f"host {_shown(host)} could not be resolved within {timeout:g} seconds",
            host=host,
        ) from None
    except (OSError, UnicodeError):
        raise NetguardError(
            HOST_NOT_FOUND, f"host {_shown(host)} could not be resolved", host=host
        ) from None

    addresses: list[IPAddress] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        ip = ipaddress.ip_address(sockaddr[0])
        if ip not in addresses:
            addresses.append(ip)
    if not addresses:
        raise NetguardError(HOST_NOT_FOUND, f"host {_shown(host)} has no IP addresses", host=host)
    return _check(host, addresses, allow_private=allow_private, literal=False)


async def _resolve_with(name: str, nameservers: list[str], lifetime: float) -> list[IPAddress]:
    """A and AAAA records of ``name`` from the given resolvers (empty when none).

    Any failure (NXDOMAIN, timeout, SERVFAIL) counts as "no addresses": the guard
    refuses what it cannot resolve, whatever the reason.
    """
    resolver = make_resolver(nameservers, timeout=lifetime)
    found: list[IPAddress] = []
    for rtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(name, rtype, search=False)
        except (dns.exception.DNSException, OSError):
            continue
        for value in sorted(rdata.address for rdata in answer):
            ip = ipaddress.ip_address(value)
            if ip not in found:
                found.append(ip)
    return found


async def guard_url(
    url: str,
    *,
    allow_private: bool,
    require_https: bool = False,
    nameservers: Sequence[str] | None = None,
) -> str:
    """Check an http(s) URL and its host, and return the host as parsed."""

    def invalid(reason: str, host: str = "") -> NetguardError:
        # The URL itself is never echoed: its userinfo, path or query (webhook
        # URLs often embed a token) may be secret.
        where = f" for host {_shown(host)}" if host else ""
        return NetguardError(INVALID_TARGET, f"invalid URL{where}: {reason}", host=host)

    # urlsplit silently drops tabs and newlines, so reject them before it can.
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise invalid("it contains whitespace or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        raise invalid("it cannot be parsed") from None
    host = parts.hostname or ""
    allowed = ("https",) if require_https else ("http", "https")
    if parts.scheme.lower() not in allowed:
        raise invalid(f"the scheme must be {' or '.join(allowed)}", host)
    if "@" in parts.netloc:
        raise invalid("credentials in the URL are not allowed", host)
    if not host:
        raise invalid("it has no host")
    if port == 0:
        raise invalid("port 0 is not allowed", host)
    await guard_host(host, allow_private=allow_private, nameservers=nameservers)
    return host
