"""Domains: connect, list, delete; their records, DMARC and DKIM keys; forwarding.

Records are written through the workspace's DNS provider (providers.py); DNS
checks are in checks.py, nameserver delegation in nameservers.py. Services flush,
never commit (except connect_domains, which must not hold a transaction across
provider calls).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Collection, Sequence
from contextlib import suppress
from dataclasses import dataclass, field

from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.db import after_commit
from mailfleet.dns.providers import (
    Applied,
    DnsProvider,
    OpenedZone,
    RecordChange,
    ZoneRef,
    inverse,
)
from mailfleet.dns.records import (
    DmarcPolicy,
    RecordData,
    RecordError,
    RecordType,
    dkim_txt,
    dmarc_record,
    is_dmarc,
    is_spf,
    to_ascii_domain,
    validate_record,
)
from mailfleet.domains import forwarding

# The router's entry points that live in the modules split out of this one.
from mailfleet.domains.checks import check_summary as check_summary
from mailfleet.domains.checks import history as history
from mailfleet.domains.checks import plan_dns_check as plan_dns_check
from mailfleet.domains.checks import record_dns_check as record_dns_check
from mailfleet.domains.checks import run_dns_check as run_dns_check
from mailfleet.domains.mail_provider import make_dkim_key, plan_edits, plan_for
from mailfleet.domains.mail_provider import switch_mail_provider as switch_mail_provider
from mailfleet.domains.nameservers import nameservers as nameservers
from mailfleet.domains.nameservers import verify_nameservers as verify_nameservers
from mailfleet.domains.providers import (
    Edit,
    NotConfigured,
    changes_for,
    check_zone,
    invalid,
    make_provider,
    provider_for,
    record_data,
    store_records,
    write_records,
    zone_of,
)
from mailfleet.domains.providers import Env as Env
from mailfleet.domains.providers import cloudflare_overview as cloudflare_overview
from mailfleet.domains.providers import records_of as records_of
from mailfleet.domains.providers import save_cloudflare as save_cloudflare
from mailfleet.domains.repository import (
    DnsRecordRepository,
    DomainRepository,
)
from mailfleet.domains.repository import dkim_keys as dkim_keys
from mailfleet.domains.schemas import DmarcIn, DnsRecordIn, ForwardingIn
from mailfleet.kit.errors import Conflict, NotFound, ValidationFailed
from mailfleet.kit.ids import new_id
from mailfleet.kit.names import ascii_name
from mailfleet.kit.pagination import Page
from mailfleet.models import (
    DkimKey,
    DkimKeyStatus,
    DnsRecord,
    Domain,
    DomainStatus,
    Mailbox,
)
from mailfleet.webhooks import events
from mailfleet.webhooks import service as webhooks

log = logging.getLogger(__name__)

DEFAULT_DMARC = DmarcPolicy(p="quarantine")
# Records the customer edits only through their own endpoint.
_GUARDED_PURPOSES = {
    "ns": "The apex NS records belong to the DNS provider",
    "forwarding": "This record serves domain forwarding; use DELETE /v1/domains/{id}/forwarding",
}


# ---------------------------------------------------------------------- domains


async def mailbox_count(session: AsyncSession, workspace_id: str, name: str) -> int:
    return (
        await session.scalar(
            select(func.count())
            .select_from(Mailbox)
            .where(Mailbox.workspace_id == workspace_id, Mailbox.domain == name)
        )
        or 0
    )


async def mailbox_counts(
    session: AsyncSession, workspace_id: str, names: Sequence[str]
) -> dict[str, int]:
    if not names:
        return {}
    rows = await session.execute(
        select(Mailbox.domain, func.count())
        .where(Mailbox.workspace_id == workspace_id, Mailbox.domain.in_(list(names)))
        .group_by(Mailbox.domain)
    )
    return {name: count for name, count in rows}


def normalise_names(names: Sequence[str], single: bool) -> list[tuple[str, str]]:
    result: list[tuple[str, str]] = []
    seen: set[str] = set()
    for index, raw in enumerate(names):
        where = "domain" if single else f"domains.{index}"
        try:
            ascii_name, unicode_name = to_ascii_domain(raw, where)
        except RecordError as exc:
            raise invalid(exc) from None
        if ascii_name in seen:
            raise ValidationFailed.for_field(where, f"{ascii_name} is listed twice")
        seen.add(ascii_name)
        result.append((ascii_name, unicode_name))
    return result


@dataclass
class _Connecting:
    """One domain on its way through a connect: claimed, then set up at the provider."""

    domain: Domain
    rows: list[DnsRecord] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    changes: list[RecordChange] = field(default_factory=list)
    applied: dict[str, Applied] = field(default_factory=dict)
    key: DkimKey | None = None
    opened: OpenedZone | None = None


async def connect_domains(
    session: AsyncSession,
    env: Env,
    workspace_id: str,
    names: Sequence[str],
    dns_provider: str,
    mail_provider: str,
    *,
    single: bool = False,
) -> list[Domain]:
    """Connect domains: open each zone at the provider and write its mail records.

    All or nothing: when one domain fails, the zones already set up for the others
    in this request are undone at the provider and nothing is stored.

    Three transactions, on purpose (the one place this service commits): the
    claim (the domain rows, whose unique names stop a concurrent connect of the
    same name before it reaches the provider), then the provider calls with no
    transaction open (up to 100 names, each a few HTTP calls of up to 20 s: on
    SQLite a transaction held across them would lock out every other writer),
    then the records the provider accepted. A failure removes the claim.
    """
    wanted = normalise_names(names, single)
    taken = list(
        await session.scalars(select(Domain.name).where(Domain.name.in_([n for n, _ in wanted])))
    )
    if taken:
        raise Conflict(f"Already connected: {', '.join(sorted(taken))}", domains=sorted(taken))
    provider = await make_provider(session, env, workspace_id, dns_provider)
    try:
        claimed = [
            _Connecting(
                await _claim(session, workspace_id, name, uname, dns_provider, mail_provider)
            )
            for name, uname in wanted
        ]
        await session.commit()
        try:
            for item in claimed:
                await _set_up_at_provider(env, provider, item)
            for item in claimed:
                await _record_connect(session, item)
            connected = [
                (events.DOMAIN_CONNECTED, {"domainId": item.domain.id, "domain": item.domain.name})
                for item in claimed
            ]
            await webhooks.emit_many(session, workspace_id, connected)
            await session.commit()
        except BaseException:
            ids = [item.domain.id for item in claimed]
            # Before the rollback, which expires what the undo reads.
            await _undo_connect(provider, claimed)
            await session.rollback()
            await session.execute(delete(Domain).where(Domain.id.in_(ids)))
            await session.commit()
            raise
    finally:
        await provider.aclose()
    return [item.domain for item in claimed]


async def _claim(
    session: AsyncSession,
    workspace_id: str,
    name: str,
    unicode_name: str,
    dns_provider: str,
    mail_provider: str,
) -> Domain:
    domain = Domain(
        id=new_id(),
        workspace_id=workspace_id,
        name=name,
        unicode_name=unicode_name,
        dns_provider=dns_provider,
        mail_provider=mail_provider,
        status=DomainStatus.PENDING,
        nameservers=[],
        setup_instructions=[],
        forward_permanent=True,
        forward_keep_path=False,
    )
    session.add(domain)
    try:
        await session.flush()
    except IntegrityError:
        raise Conflict(f"Already connected: {name}", domains=[name]) from None
    return domain


async def _set_up_at_provider(env: Env, provider: DnsProvider, item: _Connecting) -> None:
    """Open the zone and write the mail records at the provider; touches no database."""
    domain = item.domain
    name = domain.name
    item.opened = opened = await provider.open_zone(name)
    domain.provider_zone_id = opened.zone_id
    domain.nameservers = list(opened.nameservers)

    rows = item.rows
    for existing in opened.existing:
        record = existing.record
        purpose = "ns" if record.type == "NS" and record.name == name else None
        rows.append(
            DnsRecord(
                id=new_id(),
                domain_id=domain.id,
                name=record.name,
                type=record.type,
                content=record.content,
                ttl=record.ttl,
                priority=record.priority,
                purpose=purpose,
                provider_record_id=existing.provider_id,
            )
        )

    if domain.mail_provider == "self-hosted":
        item.key = await make_dkim_key(env, domain.id, [], active=True)
    apex_spf = [row for row in rows if row.name == name and is_spf(record_data(row))]
    # One SPF record: the plan's merges into the existing one, which keeps its TTL.
    spf_row = apex_spf[0] if apex_spf else None
    existing_spf = spf_row.content if spf_row else None
    plan = plan_for(env, domain, domain.mail_provider, existing_spf=existing_spf, key=item.key)
    domain.setup_instructions = [dict(step) for step in plan.instructions]
    edits = plan_edits(domain, rows, plan, item.edits, (spf_row, existing_spf))
    dmarc_name = f"_dmarc.{name}"
    if not any(row.name == dmarc_name and is_dmarc(record_data(row)) for row in rows):
        edits.append(
            Edit(None, RecordData(dmarc_name, "TXT", dmarc_record(DEFAULT_DMARC)), "dmarc")
        )
        domain.dmarc_policy = DEFAULT_DMARC.to_dict()

    item.changes = changes_for(edits)
    check_zone(domain, rows, item.changes)
    # What the provider accepted is kept for the undo, so a failure later in this
    # request reverses exactly what was sent.
    current = [(row.id, record_data(row)) for row in rows]
    item.applied = await provider.apply(zone_of(domain), item.changes, current)


async def _record_connect(session: AsyncSession, item: _Connecting) -> None:
    domain = item.domain
    session.add(domain)
    session.add_all(item.rows)
    await session.flush()
    await store_records(session, domain, item.edits, item.changes, item.applied)
    if item.key is not None:
        session.add(item.key)
    await session.flush()


async def _undo_connect(provider: DnsProvider, claimed: Sequence[_Connecting]) -> None:
    for item in reversed(claimed):
        if item.opened is None:
            continue
        zone = ZoneRef(item.domain.name, item.opened.zone_id)
        try:
            await provider.abandon_zone(zone, item.opened, inverse(item.changes, item.applied))
        except Exception:
            log.exception("could not undo the connect of %s at its provider", zone.name)


async def get_domain(session: AsyncSession, workspace_id: str, domain_id: str) -> Domain:
    return await DomainRepository(session).get(workspace_id, domain_id)


@dataclass(frozen=True)
class DomainFilters:
    status: str | None = None
    dns_provider: str | None = None
    mail_provider: str | None = None
    search: str | None = None
    assignable: bool = False


def _filtered(workspace_id: str, filters: DomainFilters) -> Select[Domain]:
    query = DomainRepository.owned_by(workspace_id)
    if filters.assignable:
        query = query.where(Domain.status == DomainStatus.ACTIVE)
    if filters.status:
        query = query.where(Domain.status == filters.status)
    if filters.dns_provider:
        query = query.where(Domain.dns_provider == filters.dns_provider)
    if filters.mail_provider:
        query = query.where(Domain.mail_provider == filters.mail_provider)
    if filters.search:
        term = filters.search.strip().lower()
        with suppress(ValueError):
            term = ascii_name(term)
        query = query.where(Domain.name.like(f"%{term}%"))
    return query


async def list_domains(
    session: AsyncSession, workspace_id: str, filters: DomainFilters, page: Page
) -> tuple[list[Domain], int, dict[str, int]]:
    domains, total = await DomainRepository(session).newest_first(
        _filtered(workspace_id, filters), page
    )
    counts = await mailbox_counts(session, workspace_id, [d.name for d in domains])
    return domains, total, counts


async def delete_domain(session: AsyncSession, env: Env, domain: Domain) -> None:
    """Remove an unused domain; the zone stops being served if Mailfleet hosted it.

    A Cloudflare zone stays as it is: it belongs to the customer's account.
    """
    count = await mailbox_count(session, domain.workspace_id, domain.name)
    if count:
        raise Conflict(
            f"{count} mailbox(es) use {domain.name}; remove them first", mailboxCount=count
        )
    if domain.dns_provider == "mailfleet":
        async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as p:
            await p.close_zone(zone_of(domain))
    if domain.forward_url:
        after_commit(session, forwarding.invalidate)
    await session.delete(domain)
    await session.flush()


# ---------------------------------------------------------------------- records


async def get_record(session: AsyncSession, domain: Domain, record_id: str) -> DnsRecord:
    return await DnsRecordRepository(session).get(domain.id, record_id)


def _validated(domain: Domain, data: DnsRecordIn) -> RecordData:
    try:
        return validate_record(
            domain.name, data.type, data.name, data.content, ttl=data.ttl, priority=data.priority
        )
    except RecordError as exc:
        raise invalid(exc) from None


def record_lock(row: DnsRecord, dkim_selectors: Collection[str]) -> str | None:
    """Why `update_record` and `delete_record` refuse `row` (409), or None when they
    may change it. `dkim_selectors` are the selectors of the domain's DKIM keys."""
    reason = _GUARDED_PURPOSES.get(row.purpose or "")
    if reason:
        return reason
    if row.purpose == "dkim":
        selector = row.name.split("._domainkey.", 1)[0]
        if selector in dkim_selectors:
            return (
                f"DKIM selector {selector} holds Mailfleet's key; rotate it with "
                "POST /v1/domains/{id}/dkim/rotate"
            )
    return None


async def locked_records(
    session: AsyncSession, domain: Domain, rows: Sequence[DnsRecord]
) -> dict[str, str]:
    """`record_lock` of each of `rows` that is locked, by record id: what a records
    editor shows read-only instead of offering a change the API refuses."""
    selectors = {key.selector for key in await dkim_keys(session, domain.id)}
    return {row.id: reason for row in rows if (reason := record_lock(row, selectors))}


async def _guard(session: AsyncSession, domain: Domain, row: DnsRecord) -> None:
    selectors: set[str] = set()
    if row.purpose == "dkim":
        selectors = {key.selector for key in await dkim_keys(session, domain.id)}
    reason = record_lock(row, selectors)
    if reason:
        raise Conflict(reason)


async def create_record(
    session: AsyncSession, env: Env, domain: Domain, data: DnsRecordIn
) -> DnsRecord:
    record = _validated(domain, data)
    async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as provider:
        [row] = await write_records(session, provider, domain, [Edit(None, record)])
    assert row is not None
    return row


async def update_record(
    session: AsyncSession, env: Env, domain: Domain, row: DnsRecord, data: DnsRecordIn
) -> DnsRecord:
    await _guard(session, domain, row)
    record = _validated(domain, data)
    async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as provider:
        [stored] = await write_records(session, provider, domain, [Edit(row, record)])
    assert stored is not None
    return stored


async def delete_record(session: AsyncSession, env: Env, domain: Domain, row: DnsRecord) -> None:
    await _guard(session, domain, row)
    async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as provider:
        await write_records(session, provider, domain, [Edit(row, None)])


# ---------------------------------------------------------------- DMARC and DKIM


async def set_dmarc(session: AsyncSession, env: Env, domain: Domain, data: DmarcIn) -> DnsRecord:
    policy = DmarcPolicy(
        p=data.p,
        sp=data.sp,
        pct=data.pct,
        rua=tuple(data.rua),
        ruf=tuple(data.ruf),
        adkim=data.adkim,
        aspf=data.aspf,
    )
    try:
        text = dmarc_record(policy)
    except RecordError as exc:
        raise invalid(exc) from None
    name = f"_dmarc.{domain.name}"
    rows = await records_of(session, domain.id)
    current = [row for row in rows if row.name == name and is_dmarc(record_data(row))]
    record = RecordData(name, "TXT", text)
    edits = [Edit(current[0] if current else None, record, "dmarc")]
    edits.extend(Edit(row, None) for row in current[1:])
    async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as provider:
        stored = await write_records(session, provider, domain, edits, rows)
    row = stored[0]
    assert row is not None
    domain.dmarc_policy = policy.to_dict()
    await session.flush()
    return row


async def rotate_dkim(session: AsyncSession, env: Env, domain: Domain) -> DkimKey:
    """Publish a new key under a new selector; it becomes the signing key once a DNS
    check sees it live, and the old selector stays published until then (and for a
    grace period after)."""
    if domain.mail_provider != "self-hosted":
        raise Conflict(
            f"DKIM keys of {domain.mail_provider} domains are made in the provider's admin "
            "console; only self-hosted domains rotate keys here"
        )
    keys = await dkim_keys(session, domain.id)
    waiting = [key for key in keys if key.status == DkimKeyStatus.PENDING]
    if waiting:
        raise Conflict(
            f"Selector {waiting[0].selector} is already waiting to be seen live; run "
            "GET /v1/domains/{id}/dns-check once DNS has it",
            selector=waiting[0].selector,
        )
    key = await make_dkim_key(env, domain.id, [key.selector for key in keys], active=False)
    name = f"{key.selector}._domainkey.{domain.name}"
    record = RecordData(name, "TXT", dkim_txt(key.public_key))
    async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as provider:
        await write_records(session, provider, domain, [Edit(None, record, "dkim")])
    session.add(key)
    await session.flush()
    return key


# ------------------------------------------------------------------- forwarding


def _forward_url(url: str, domain: Domain) -> str:
    text = url.strip()
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in text):
        raise ValidationFailed.for_field("url", "url must not contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(text)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError:
        raise ValidationFailed.for_field("url", "url is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValidationFailed.for_field(
            "url", "url must be an http:// or https:// URL with a host"
        )
    if parts.username or parts.password:
        raise ValidationFailed.for_field("url", "url must not contain credentials")
    if parts.hostname.rstrip(".").lower() == domain.name:
        raise ValidationFailed.for_field("url", "url must not point at the domain itself (a loop)")
    return text


async def set_forwarding(
    session: AsyncSession, env: Env, domain: Domain, data: ForwardingIn
) -> Domain:
    """Answer HTTP for the domain with a redirect: its apex A (or AAAA) record points
    at Mailfleet (MAILFLEET_PUBLIC_IP), whose middleware sends the redirect."""
    url = _forward_url(data.url, domain)
    address = env.settings.public_ip
    if not address:
        raise NotConfigured("Domain forwarding needs MAILFLEET_PUBLIC_IP on this server")
    rtype: RecordType = "AAAA" if ":" in address else "A"
    rows = await records_of(session, domain.id)
    apex = [row for row in rows if row.name == domain.name and row.type in ("A", "AAAA")]
    if not (len(apex) == 1 and apex[0].purpose == "forwarding" and apex[0].content == address):
        # Any other apex address would send part of the visitors elsewhere.
        edits = [Edit(row, None) for row in apex]
        edits.append(Edit(None, RecordData(domain.name, rtype, address, 300), "forwarding"))
        async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as p:
            await write_records(session, p, domain, edits, rows)
    domain.forward_url = url
    domain.forward_permanent = data.permanent
    domain.forward_keep_path = data.keep_path
    await session.flush()
    after_commit(session, forwarding.invalidate)
    return domain


async def remove_forwarding(session: AsyncSession, env: Env, domain: Domain) -> Domain:
    if not domain.forward_url:
        raise NotFound(f"{domain.name} has no forwarding")
    rows = await records_of(session, domain.id)
    edits = [Edit(row, None) for row in rows if row.purpose == "forwarding"]
    if edits:
        async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as p:
            await write_records(session, p, domain, edits, rows)
    domain.forward_url = None
    await session.flush()
    after_commit(session, forwarding.invalidate)
    return domain
