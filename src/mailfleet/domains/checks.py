"""DNS checks of a domain: plan (from the database), run (no transaction open),
record (what changed, DKIM keys advanced), history, and what is due for a recheck."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

import dns.asyncresolver
import dns.exception
import dns.resolver
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.config import Settings
from mailfleet.dns.checks import DEFAULT_DKIM_SELECTORS, check_dkim, check_domain
from mailfleet.dns.records import (
    MailProvider,
    mail_plan,
)
from mailfleet.dns.resolver import make_resolver
from mailfleet.domains.providers import (
    Edit,
    Env,
    NotConfigured,
    provider_for,
    records_of,
    write_records,
)
from mailfleet.domains.repository import (
    DnsCheckRepository,
    dkim_keys,
)
from mailfleet.kit.clock import isoformat, utcnow
from mailfleet.kit.pagination import Page
from mailfleet.models import (
    DkimKeyStatus,
    Domain,
    DomainDnsCheck,
    DomainStatus,
)
from mailfleet.webhooks import events
from mailfleet.webhooks import service as webhooks

log = logging.getLogger(__name__)

# How long a replaced DKIM key stays published: mail signed with it just before the
# switch may sit in queues and be verified days later.
DKIM_RETIRE_GRACE = timedelta(days=7)
CHECK_NAMES = ("mx", "spf", "dkim", "dmarc")


@dataclass(frozen=True)
class CheckPlan:
    """Everything a DNS check needs, read from the database before any lookup."""

    domain_id: str
    name: str
    mail_provider: str
    expected_mx: list[str] | None
    spf_include: str | None
    selectors: list[str]
    expected_key: str | None
    pending: list[tuple[str, str]] = field(default_factory=list)  # (selector, public key)


@dataclass(frozen=True)
class CheckOutcome:
    plan: CheckPlan
    result: dict[str, Any]
    live_pending: list[str]


async def plan_dns_check(session: AsyncSession, domain: Domain) -> CheckPlan:
    rows = await records_of(session, domain.id)
    keys = await dkim_keys(session, domain.id)
    apex_mx = [row.content for row in rows if row.name == domain.name and row.type == "MX"]
    suffix = f"._domainkey.{domain.name}"
    published = [row for row in rows if row.name.endswith(suffix)]
    provider = domain.mail_provider
    spf_include = mail_plan(domain.name, cast(MailProvider, provider)).spf_include
    expected_key: str | None = None
    if provider == "self-hosted":
        active = [key for key in keys if key.status == DkimKeyStatus.ACTIVE]
        selectors = [key.selector for key in active]
        expected_key = active[-1].public_key if active else None
    elif published:
        selectors = sorted({row.name[: -len(suffix)] for row in published})
        texts = [row.content for row in published if row.type == "TXT" and "p=" in row.content]
        expected_key = texts[0] if len(texts) == 1 and len(published) == 1 else None
    else:
        selectors = DEFAULT_DKIM_SELECTORS.get(provider, DEFAULT_DKIM_SELECTORS["custom"])
    return CheckPlan(
        domain_id=domain.id,
        name=domain.name,
        mail_provider=provider,
        expected_mx=[host for host in apex_mx if host] or None,
        spf_include=spf_include,
        selectors=list(selectors),
        expected_key=expected_key,
        pending=[
            (key.selector, key.public_key) for key in keys if key.status == DkimKeyStatus.PENDING
        ],
    )


def resolver_for(settings: Settings) -> dns.asyncresolver.Resolver:
    try:
        return make_resolver(settings.dns_nameservers or None, timeout=settings.dns_timeout)
    except dns.resolver.NoResolverConfiguration:
        raise NotConfigured(
            "No DNS resolvers: set MAILFLEET_DNS_NAMESERVERS or configure /etc/resolv.conf"
        ) from None


async def run_dns_check(settings: Settings, plan: CheckPlan) -> CheckOutcome:
    """The live lookups; touches no database, so no transaction waits on DNS."""
    resolver = resolver_for(settings)
    result = await check_domain(
        resolver,
        plan.name,
        provider=plan.mail_provider,
        dkim_selectors=plan.selectors,
        expected_mx=plan.expected_mx,
        spf_include=plan.spf_include,
        expected_dkim_key=plan.expected_key,
    )
    live: list[str] = []
    for selector, public_key in plan.pending:
        found = await check_dkim(resolver, plan.name, [selector], expected_public_key=public_key)
        if found.status in ("pass", "warn"):
            live.append(selector)
    return CheckOutcome(plan, result.to_dict(), live)


def _changes(previous: dict[str, Any] | None, result: dict[str, Any]) -> list[dict[str, Any]]:
    changes = []
    for name in CHECK_NAMES:
        before = (previous or {}).get(name, {}).get("status")
        after = result[name]["status"]
        if before != after:
            changes.append({"check": name, "from": before, "to": after})
    return changes


async def record_dns_check(
    session: AsyncSession, env: Env, domain: Domain, outcome: CheckOutcome
) -> list[dict[str, Any]]:
    """Store a check's result, move the domain's status, promote DKIM keys seen live;
    returns what changed since the previous check (kept as history)."""
    result = outcome.result
    changes = _changes(domain.dns_health, result)
    previous = domain.status
    statuses = {result[name]["status"] for name in CHECK_NAMES}
    # An unknown says nothing about the records, so it never moves the status.
    if "fail" in statuses:
        if domain.status == DomainStatus.ACTIVE:
            domain.status = DomainStatus.MISCONFIGURED
    elif "unknown" not in statuses:
        domain.status = DomainStatus.ACTIVE
    domain.dns_health = result
    domain.dns_checked_at = utcnow()
    if domain.status != previous:
        await webhooks.emit(
            session,
            domain.workspace_id,
            events.DOMAIN_DNS_STATUS_CHANGED,
            {
                "domainId": domain.id,
                "domain": domain.name,
                "previousStatus": previous,
                "status": domain.status,
            },
        )
    if changes:
        session.add(
            DomainDnsCheck(
                domain_id=domain.id, overall=result["overall"], result=result, changes=changes
            )
        )
    await _advance_dkim(session, env, domain, outcome.live_pending)
    await session.flush()
    return changes


async def _advance_dkim(session: AsyncSession, env: Env, domain: Domain, live: list[str]) -> None:
    keys = await dkim_keys(session, domain.id)
    now = utcnow()
    if live:
        for key in keys:
            if key.status == DkimKeyStatus.ACTIVE:
                key.status, key.retired_at = "retired", now
        for key in keys:
            if key.selector in live and key.status == DkimKeyStatus.PENDING:
                key.status, key.activated_at = "active", now
                log.info("domain %s: DKIM selector %s is live and active", domain.id, key.selector)
    expired = [
        key
        for key in keys
        if key.status == DkimKeyStatus.RETIRED
        and key.retired_at
        and now - key.retired_at > DKIM_RETIRE_GRACE
    ]
    if not expired:
        return
    names = {f"{key.selector}._domainkey.{domain.name}" for key in expired}
    rows = await records_of(session, domain.id)
    edits = [Edit(row, None) for row in rows if row.name in names]
    if edits:
        async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as p:
            await write_records(session, p, domain, edits, rows)
    for key in expired:
        await session.delete(key)


async def history(session: AsyncSession, domain: Domain, page: Page) -> tuple[list[Any], int]:
    repository = DnsCheckRepository(session)
    return await repository.newest_first(repository.owned_by(domain.id), page)


async def due_for_check(session: AsyncSession, settings: Settings, limit: int = 500) -> list[str]:
    cutoff = utcnow() - timedelta(seconds=settings.dns_recheck_interval)
    rows = await session.scalars(
        select(Domain.id)
        .where((Domain.dns_checked_at.is_(None)) | (Domain.dns_checked_at < cutoff))
        .order_by(Domain.dns_checked_at.is_not(None), Domain.dns_checked_at)
        .limit(limit)
    )
    return list(rows)


def check_summary(domain: Domain, changes: list[dict[str, Any]]) -> dict[str, Any]:
    health = domain.dns_health or {}
    return {
        "domain_id": domain.id,
        "domain": domain.name,
        "status": domain.status,
        "overall": health.get("overall", "unknown"),
        "checked_at": health.get("checkedAt") or isoformat(domain.dns_checked_at),
        "mx": health.get("mx", {}),
        "spf": health.get("spf", {}),
        "dkim": health.get("dkim", {}),
        "dmarc": health.get("dmarc", {}),
        "changes": changes,
    }
