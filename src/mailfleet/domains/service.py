"""Domains: connect, records written through the DNS provider, mail authentication
records, DNS checks, nameservers, forwarding, Cloudflare credentials.

Stored records always match the provider's: a change goes to the provider first and
is stored only once the provider accepted it (and with what the provider answered);
when storing then fails, the provider change is undone. Services flush, never commit
(except connect_domains, which must not hold a transaction across provider calls).
"""

from __future__ import annotations

import asyncio
import logging
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, cast

import dns.asyncresolver
import dns.exception
import dns.resolver
from sqlalchemy import Select, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.config import Settings
from mailfleet.db import after_commit
from mailfleet.dns.checks import DEFAULT_DKIM_SELECTORS, check_dkim, check_domain
from mailfleet.dns.providers import (
    Applied,
    DnsProvider,
    OpenedZone,
    RecordChange,
    ZoneRef,
    inverse,
)
from mailfleet.dns.providers.cloudflare import CloudflareProvider, CloudflareZone
from mailfleet.dns.providers.manual import ManualProvider
from mailfleet.dns.providers.pdns import PowerDnsProvider
from mailfleet.dns.records import (
    DmarcPolicy,
    MailProvider,
    RecordData,
    RecordError,
    RecordType,
    dkim_selector,
    dkim_txt,
    dmarc_record,
    generate_dkim_key,
    is_dmarc,
    is_spf,
    mail_plan,
    to_ascii_domain,
    validate_record,
    zone_conflicts,
)
from mailfleet.dns.resolver import make_resolver, to_dns_name
from mailfleet.domains import forwarding
from mailfleet.domains.repository import DnsCheckRepository, DnsRecordRepository, DomainRepository
from mailfleet.domains.schemas import DmarcIn, DnsRecordIn, ForwardingIn
from mailfleet.kit.clock import isoformat, utcnow
from mailfleet.kit.crypto import Keyring
from mailfleet.kit.errors import Conflict, MailfleetError, NotFound, ValidationFailed
from mailfleet.kit.ids import new_id
from mailfleet.kit.names import ascii_name
from mailfleet.kit.pagination import Page
from mailfleet.models import (
    CloudflareCredential,
    DkimKey,
    DkimKeyStatus,
    DnsRecord,
    Domain,
    DomainDnsCheck,
    DomainStatus,
    Mailbox,
)

log = logging.getLogger(__name__)

DEFAULT_DMARC = DmarcPolicy(p="quarantine")
# How long a replaced DKIM key stays published: mail signed with it just before the
# switch may sit in queues and be verified days later.
DKIM_RETIRE_GRACE = timedelta(days=7)
CHECK_NAMES = ("mx", "spf", "dkim", "dmarc")
# Records the customer edits only through their own endpoint.
_GUARDED_PURPOSES = {
    "ns": "The apex NS records belong to the DNS provider",
    "forwarding": "This record serves domain forwarding; use DELETE /v1/domains/{id}/forwarding",
}


class NotConfigured(MailfleetError):
    """This Mailfleet server lacks a setting the request needs."""

    status_code = 409
    code = "NOT_CONFIGURED"


@dataclass(frozen=True)
class Env:
    """What domain operations need besides the session."""

    settings: Settings
    keyring: Keyring


def invalid(exc: RecordError, prefix: str = "") -> ValidationFailed:
    where = f"{prefix}{exc.field}" if prefix else exc.field
    return ValidationFailed(
        f"Invalid {where}: {exc.message}", [{"field": where, "message": exc.message}]
    )


# -------------------------------------------------------------------- providers


async def _credential(session: AsyncSession, workspace_id: str) -> CloudflareCredential | None:
    found: CloudflareCredential | None = await session.scalar(
        select(CloudflareCredential).where(CloudflareCredential.workspace_id == workspace_id)
    )
    return found


async def _make_provider(
    session: AsyncSession, env: Env, workspace_id: str, kind: str
) -> DnsProvider:
    settings = env.settings
    if kind == "mailfleet":
        if not settings.pdns_api_url or not settings.pdns_api_key:
            raise ValidationFailed.for_field(
                "dnsProvider",
                "DNS hosting by Mailfleet is not configured on this server "
                "(MAILFLEET_PDNS_API_URL, MAILFLEET_PDNS_API_KEY); use cloudflare or manual",
            )
        return PowerDnsProvider(
            settings.pdns_api_url,
            settings.pdns_api_key,
            settings.nameservers,
            settings.pdns_server_id,
        )
    if kind == "cloudflare":
        credential = await _credential(session, workspace_id)
        if credential is None:
            raise ValidationFailed.for_field(
                "dnsProvider", "Save a Cloudflare API token first with POST /v1/cloudflare"
            )
        return CloudflareProvider(
            env.keyring.decrypt(credential.api_token_enc),
            settings.cloudflare_api_url,
            credential.account_id,
        )
    return ManualProvider()


@asynccontextmanager
async def provider_for(
    session: AsyncSession, env: Env, workspace_id: str, kind: str
) -> AsyncIterator[DnsProvider]:
    provider = await _make_provider(session, env, workspace_id, kind)
    try:
        yield provider
    finally:
        await provider.aclose()


def _zone(domain: Domain) -> ZoneRef:
    return ZoneRef(domain.name, domain.provider_zone_id)


def record_data(row: DnsRecord) -> RecordData:
    return RecordData(row.name, cast(RecordType, row.type), row.content, row.ttl, row.priority)


@dataclass
class Edit:
    """One record to add (row None), change, or remove (after None)."""

    row: DnsRecord | None
    after: RecordData | None
    purpose: str | None = None


async def records_of(session: AsyncSession, domain_id: str) -> list[DnsRecord]:
    return list(
        await session.scalars(
            select(DnsRecord)
            .where(DnsRecord.domain_id == domain_id)
            .order_by(DnsRecord.name, DnsRecord.type, DnsRecord.priority, DnsRecord.content)
        )
    )


def _check_zone(domain: Domain, rows: Sequence[DnsRecord], changes: Sequence[RecordChange]) -> None:
    state = {row.id: record_data(row) for row in rows}
    touched: set[str] = set()
    for change in changes:
        for record in (change.before, change.after):
            if record is not None:
                touched.add(record.name)
        if change.after is None:
            state.pop(change.key, None)
        else:
            state[change.key] = change.after
    # Only names this change touches: a zone imported with an old problem must not
    # block unrelated edits.
    problems = zone_conflicts((r for r in state.values() if r.name in touched), domain.name)
    if problems:
        field_name, message = problems[0]
        raise ValidationFailed(
            f"Invalid {field_name}: {message}", [{"field": f, "message": m} for f, m in problems]
        )


def _changes_for(edits: Sequence[Edit]) -> list[RecordChange]:
    return [
        RecordChange(
            key=edit.row.id if edit.row else new_id(),
            before=record_data(edit.row) if edit.row else None,
            after=edit.after,
            provider_id=edit.row.provider_record_id if edit.row else None,
        )
        for edit in edits
    ]


async def write_records(
    session: AsyncSession,
    provider: DnsProvider,
    domain: Domain,
    edits: Sequence[Edit],
    rows: Sequence[DnsRecord] | None = None,
    *,
    journal: tuple[list[RecordChange], dict[str, Applied]] | None = None,
) -> list[DnsRecord | None]:
    """Apply edits at the provider, then store what it answered; rows in edit order
    (None for removals). `journal` collects what the provider accepted."""
    if rows is None:
        rows = await records_of(session, domain.id)
    changes = _changes_for(edits)
    _check_zone(domain, rows, changes)
    current = [(row.id, record_data(row)) for row in rows]
    zone = _zone(domain)
    applied = await provider.apply(zone, changes, current)
    if journal is not None:
        journal[0].extend(changes)
        journal[1].update(applied)
    try:
        return await _store(session, domain, edits, changes, applied)
    except Exception:
        # The provider holds a change we could not store; undo it there so the two
        # agree again, then report the original failure.
        log.warning("storing DNS records of %s failed; undoing them at the provider", domain.id)
        after = dict(current)
        for change in changes:
            if change.after is None:
                after.pop(change.key, None)
            else:
                after[change.key] = change.after
        try:
            await provider.apply(zone, inverse(changes, applied), list(after.items()))
        except Exception:
            log.exception("could not undo DNS changes of domain %s at its provider", domain.id)
        raise


async def _store(
    session: AsyncSession,
    domain: Domain,
    edits: Sequence[Edit],
    changes: Sequence[RecordChange],
    applied: dict[str, Applied],
) -> list[DnsRecord | None]:
    stored: list[DnsRecord | None] = []
    for edit, change in zip(edits, changes, strict=True):
        if change.after is None:
            if edit.row is not None:
                await session.delete(edit.row)
            stored.append(None)
            continue
        answer = applied.get(change.key)
        # The provider's rendering wins (e.g. Cloudflare's normalised content).
        record = answer.record if answer and answer.record else change.after
        row = edit.row or DnsRecord(id=change.key, domain_id=domain.id, purpose=edit.purpose)
        row.name, row.type, row.content = record.name, record.type, record.content
        row.ttl, row.priority = record.ttl, record.priority
        if answer and answer.provider_id:
            row.provider_record_id = answer.provider_id
        if edit.row is None:
            session.add(row)
        stored.append(row)
    await session.flush()
    return stored


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
    provider = await _make_provider(session, env, workspace_id, dns_provider)
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
    mail_provider = cast(MailProvider, domain.mail_provider)
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

    selector = public_key = None
    if mail_provider == "self-hosted":
        private_pem, public_key = await asyncio.to_thread(generate_dkim_key)
        selector = dkim_selector(utcnow(), [])
        item.key = DkimKey(
            domain_id=domain.id,
            selector=selector,
            public_key=public_key,
            private_key_enc=env.keyring.encrypt(private_pem),
            status=DkimKeyStatus.ACTIVE,
            activated_at=utcnow(),
        )
    apex_spf = [row for row in rows if row.name == name and is_spf(record_data(row))]
    plan = mail_plan(
        name,
        mail_provider,
        dkim_selector=selector,
        dkim_public_key=public_key,
        existing_spf=apex_spf[0].content if apex_spf else None,
        mail_host=env.settings.mail_host if env.settings.mail_hostname else None,
    )
    domain.setup_instructions = [dict(step) for step in plan.instructions]
    edits = item.edits
    planned_mx = any(purpose == "mx" for purpose, _ in plan.records)
    if planned_mx:
        # The mail provider's MX replace whatever the zone pointed mail at before.
        edits.extend(Edit(row, None) for row in rows if row.name == name and row.type == "MX")
    for purpose, record in plan.records:
        if purpose == "spf" and apex_spf:
            # One SPF record: ours merges into the existing one, which keeps its TTL.
            apex_spf[0].purpose = "spf"
            edits.append(Edit(apex_spf[0], replace(record, ttl=apex_spf[0].ttl), "spf"))
            continue
        if record.type == "CNAME" and any(row.name == record.name for row in rows):
            continue  # the customer already uses that name; leave it to them
        edits.append(Edit(None, record, purpose))
    dmarc_name = f"_dmarc.{name}"
    if not any(row.name == dmarc_name and is_dmarc(record_data(row)) for row in rows):
        edits.append(
            Edit(None, RecordData(dmarc_name, "TXT", dmarc_record(DEFAULT_DMARC)), "dmarc")
        )
        domain.dmarc_policy = DEFAULT_DMARC.to_dict()

    item.changes = _changes_for(edits)
    _check_zone(domain, rows, item.changes)
    # What the provider accepted is kept for the undo, so a failure later in this
    # request reverses exactly what was sent.
    current = [(row.id, record_data(row)) for row in rows]
    item.applied = await provider.apply(_zone(domain), item.changes, current)


async def _record_connect(session: AsyncSession, item: _Connecting) -> None:
    domain = item.domain
    session.add(domain)
    session.add_all(item.rows)
    await session.flush()
    await _store(session, domain, item.edits, item.changes, item.applied)
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


async def dkim_keys(session: AsyncSession, domain_id: str) -> list[DkimKey]:
    return list(
        await session.scalars(
            select(DkimKey).where(DkimKey.domain_id == domain_id).order_by(DkimKey.created_at)
        )
    )


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
            await p.close_zone(_zone(domain))
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


async def _guard(session: AsyncSession, domain: Domain, row: DnsRecord) -> None:
    reason = _GUARDED_PURPOSES.get(row.purpose or "")
    if reason:
        raise Conflict(reason)
    if row.purpose == "dkim":
        selector = row.name.split("._domainkey.", 1)[0]
        for key in await dkim_keys(session, domain.id):
            if key.selector == selector:
                raise Conflict(
                    f"DKIM selector {selector} holds Mailfleet's key; rotate it with "
                    "POST /v1/domains/{id}/dkim/rotate"
                )


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
    row.purpose = "dmarc"
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
    selector = dkim_selector(utcnow(), [key.selector for key in keys])
    private_pem, public_key = await asyncio.to_thread(generate_dkim_key)
    record = RecordData(f"{selector}._domainkey.{domain.name}", "TXT", dkim_txt(public_key))
    async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as provider:
        await write_records(session, provider, domain, [Edit(None, record, "dkim")])
    key = DkimKey(
        domain_id=domain.id,
        selector=selector,
        public_key=public_key,
        private_key_enc=env.keyring.encrypt(private_pem),
        status=DkimKeyStatus.PENDING,
    )
    session.add(key)
    await session.flush()
    return key


# ------------------------------------------------------------------- DNS checks


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
    statuses = {result[name]["status"] for name in CHECK_NAMES}
    # An unknown says nothing about the records, so it never moves the status.
    if "fail" in statuses:
        if domain.status == DomainStatus.ACTIVE:
            domain.status = DomainStatus.MISCONFIGURED
    elif "unknown" not in statuses:
        domain.status = DomainStatus.ACTIVE
    domain.dns_health = result
    domain.dns_checked_at = utcnow()
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


# ------------------------------------------------------------------ nameservers


async def nameservers(session: AsyncSession, env: Env, domain: Domain) -> list[str]:
    """The NS names to set at the registrar: Mailfleet's, or the Cloudflare zone's."""
    if domain.dns_provider == "cloudflare":
        async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as p:
            found = await p.nameservers(_zone(domain))
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


# ------------------------------------------------------------------- Cloudflare


async def save_cloudflare(
    session: AsyncSession,
    env: Env,
    workspace_id: str,
    api_token: str | None,
    account_id: str | None,
) -> CloudflareCredential:
    """Verify a token with Cloudflare, then keep it encrypted; never shown again."""
    credential = await _credential(session, workspace_id)
    if api_token is None:
        if credential is None:
            raise ValidationFailed.for_field("apiToken", "apiToken is required the first time")
        api_token = env.keyring.decrypt(credential.api_token_enc)
    account = account_id or (credential.account_id if credential else None)
    provider = CloudflareProvider(api_token, env.settings.cloudflare_api_url, account)
    try:
        await provider.verify_token()
    finally:
        await provider.aclose()
    if credential is None:
        credential = CloudflareCredential(workspace_id=workspace_id, api_token_enc="")
        session.add(credential)
    credential.api_token_enc = env.keyring.encrypt(api_token)
    credential.account_id = account
    credential.verified_at = utcnow()
    await session.flush()
    return credential


async def cloudflare_overview(
    session: AsyncSession, env: Env, workspace_id: str
) -> tuple[CloudflareCredential | None, list[CloudflareZone], set[str]]:
    credential = await _credential(session, workspace_id)
    if credential is None:
        return None, [], set()
    provider = CloudflareProvider(
        env.keyring.decrypt(credential.api_token_enc),
        env.settings.cloudflare_api_url,
        credential.account_id,
    )
    try:
        zones = await provider.list_zones()
    finally:
        await provider.aclose()
    connected = set(
        await session.scalars(
            select(Domain.name).where(
                Domain.workspace_id == workspace_id, Domain.dns_provider == "cloudflare"
            )
        )
    )
    return credential, zones, connected


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
