"""A domain's nameservers: the ones its provider serves it from, and whether the
public DNS delegates to them yet."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.resolver
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.config import Settings
from mailfleet.dns.resolver import make_resolver, to_dns_name
from mailfleet.domains.providers import (
    Env,
    NotConfigured,
    provider_for,
    zone_of,
)
from mailfleet.kit.clock import utcnow
from mailfleet.kit.errors import Conflict
from mailfleet.models import (
    Domain,
)
from mailfleet.webhooks import events
from mailfleet.webhooks import service as webhooks

log = logging.getLogger(__name__)


async def nameservers(session: AsyncSession, env: Env, domain: Domain) -> list[str]:
    """The NS names to set at the registrar: Mailfleet's, or the Cloudflare zone's."""
    if domain.dns_provider == "cloudflare":
        async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as p:
            found = await p.nameservers(zone_of(domain))
        if found and found != domain.nameservers:
            domain.nameservers = found
            await session.flush()
        return found
    if domain.dns_provider == "mailfleet":
        return list(domain.nameservers or env.settings.nameservers)
    return []


def _resolver_addresses(settings: Settings) -> list[str]:
    if settings.dns_nameservers:
        return list(settings.dns_nameservers)
    try:
        return [str(ns) for ns in dns.resolver.Resolver(configure=True).nameservers]
    except dns.resolver.NoResolverConfiguration:
        raise NotConfigured(
            "No DNS resolvers: set MAILFLEET_DNS_NAMESERVERS or configure /etc/resolv.conf"
        ) from None


async def _ns_at(address: str, name: str, expected: set[str], lifetime: float) -> dict[str, Any]:
    resolver = make_resolver([address], timeout=lifetime)
    try:
        answer = await resolver.resolve(to_dns_name(name), "NS", search=False)
    except dns.resolver.NXDOMAIN:
        return _ns_result(address, "pending", [], f"{name} does not resolve there yet")
    except dns.resolver.NoAnswer:
        return _ns_result(address, "pending", [], "no NS records there yet")
    except (dns.exception.DNSException, OSError) as exc:
        reason = "timed out" if isinstance(exc, dns.exception.Timeout) else "failed"
        # Not "pending": we could not look, which says nothing about the delegation.
        return _ns_result(address, "unknown", [], f"the lookup {reason}")
    found = sorted({rdata.target.to_text(omit_final_dot=True).lower() for rdata in answer})
    present = expected & set(found)
    if present == expected and set(found) <= expected:
        return _ns_result(address, "propagated", found, "serves the expected nameservers")
    if present:
        missing = ", ".join(sorted(expected - set(found)))
        extra = ", ".join(sorted(set(found) - expected))
        detail = "; ".join(
            part
            for part in (f"missing {missing}" if missing else "", f"also {extra}" if extra else "")
            if part
        )
        return _ns_result(address, "partial", found, f"some expected nameservers ({detail})")
    return _ns_result(address, "pending", found, "still serves other nameservers")


def _ns_result(resolver: str, status: str, found: list[str], message: str) -> dict[str, Any]:
    return {"resolver": resolver, "status": status, "found": found, "message": message}


async def verify_nameservers(session: AsyncSession, env: Env, domain: Domain) -> dict[str, Any]:
    expected = await nameservers(session, env, domain)
    if not expected:
        raise Conflict(
            f"{domain.name} uses manual DNS: its nameservers stay with your DNS host, so "
            "there is no delegation to verify"
        )
    addresses = _resolver_addresses(env.settings)
    results = await asyncio.gather(
        *(
            _ns_at(address, domain.name, set(expected), env.settings.dns_timeout)
            for address in addresses
        )
    )
    statuses = [result["status"] for result in results]
    if statuses and all(s == "propagated" for s in statuses):
        overall = "propagated"
    elif any(s in ("propagated", "partial") for s in statuses):
        overall = "partial"
    elif statuses and all(s == "unknown" for s in statuses):
        overall = "unknown"
    else:
        overall = "pending"
    now = utcnow()
    if overall == "propagated" and domain.ns_status != "propagated":
        await webhooks.emit(
            session,
            domain.workspace_id,
            events.DOMAIN_NAMESERVERS_PROPAGATED,
            {"domainId": domain.id, "domain": domain.name, "nameservers": list(expected)},
        )
    if overall != "unknown":
        domain.ns_status = overall
    domain.ns_checked_at = now
    await session.flush()
    return {
        "domain_id": domain.id,
        "domain": domain.name,
        "status": overall,
        "expected": expected,
        "resolvers": results,
        "checked_at": now,
    }
