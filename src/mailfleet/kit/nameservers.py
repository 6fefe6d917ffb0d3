"""dnspython resolvers for the configured nameservers (MAILFLEET_DNS_NAMESERVERS).

Below `dns/` (which adds typed lookups and checks on top) so that kit's network
guard can resolve through the same nameservers without importing a business
package.
"""

from __future__ import annotations

import ipaddress

import dns.asyncresolver
import dns.nameserver

DEFAULT_TIMEOUT = 3.0
# dnspython's per-nameserver attempt timeout; kept below the lifetime so a dead
# first nameserver still leaves time to ask the next one.
_MAX_ATTEMPT_TIMEOUT = 2.0


def parse_nameserver(text: str, default_port: int = 53) -> tuple[str, int]:
    """Split "host", "host:port", "v6", "[v6]" or "[v6]:port" into (ip, port).

    Hosts must be IP addresses: resolving a nameserver's own name would need another
    resolver, and a silent fallback to the system one would hide misconfiguration.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("empty nameserver")
    host, port_text = raw, ""
    if raw.startswith("["):
        close = raw.find("]")
        if close == -1:
            raise ValueError(f"nameserver {text!r}: missing ']'")
        host, rest = raw[1:close], raw[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"nameserver {text!r}: expected ':port' after ']'")
            port_text = rest[1:]
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"nameserver {text!r} is not an IP address") from None
    port = default_port
    if port_text:
        if not port_text.isdigit():
            raise ValueError(f"nameserver {text!r}: port must be a number")
        port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"nameserver {text!r}: port {port} out of range 1..65535")
    return str(address), port


def make_resolver(
    nameservers: list[str] | None, port: int = 53, timeout: float = DEFAULT_TIMEOUT
) -> dns.asyncresolver.Resolver:
    """Build an async resolver that gives up after `timeout` seconds per lookup.

    With `nameservers`, only those are asked (each "ip", "ip:port" or "[v6]:port";
    `port` applies to entries without one). Entries may use different ports:
    dnspython >= 2.4 carries a port per nameserver. Without `nameservers`, the system
    configuration (/etc/resolv.conf) is used and
    `dns.resolver.NoResolverConfiguration` propagates if there is none.
    No cache: checks must see the DNS as it is now, right after a customer edits it.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} out of range 1..65535")
    if nameservers is not None:
        if not nameservers:
            raise ValueError("nameservers must not be empty; pass None for the system resolver")
        servers: list[str | dns.nameserver.Nameserver] = []
        for entry in nameservers:
            address, server_port = parse_nameserver(entry, port)
            servers.append(dns.nameserver.Do53Nameserver(address, server_port))
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = servers
        resolver.port = port
    else:
        resolver = dns.asyncresolver.Resolver(configure=True)
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, _MAX_ATTEMPT_TIMEOUT)
    resolver.cache = None
    return resolver
