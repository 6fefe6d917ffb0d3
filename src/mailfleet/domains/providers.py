"""DNS providers of a workspace's domains, and records written through them.

Stored records always match the provider's: a change goes to the provider first and
is stored only once the provider accepted it (and with what the provider answered);
when storing then fails, the provider change is undone. Cloudflare credentials of a
workspace are kept here too."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.config import Settings
from mailfleet.dns.providers import (
    Applied,
    DnsProvider,
    RecordChange,
    ZoneRef,
    inverse,
)
from mailfleet.dns.providers.cloudflare import CloudflareProvider, CloudflareZone
from mailfleet.dns.providers.manual import ManualProvider
from mailfleet.dns.providers.pdns import PowerDnsProvider
from mailfleet.dns.records import (
    RecordData,
    RecordError,
    RecordType,
    zone_conflicts,
)
from mailfleet.kit.clock import utcnow
from mailfleet.kit.crypto import Keyring
from mailfleet.kit.errors import MailfleetError, ValidationFailed
from mailfleet.kit.ids import new_id
from mailfleet.models import (
    CloudflareCredential,
    DnsRecord,
    Domain,
)

log = logging.getLogger(__name__)


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


async def cloudflare_credential(
    session: AsyncSession, workspace_id: str
) -> CloudflareCredential | None:
    found: CloudflareCredential | None = await session.scalar(
        select(CloudflareCredential).where(CloudflareCredential.workspace_id == workspace_id)
    )
    return found


async def make_provider(
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
        credential = await cloudflare_credential(session, workspace_id)
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
    provider = await make_provider(session, env, workspace_id, kind)
    try:
        yield provider
    finally:
        await provider.aclose()


def zone_of(domain: Domain) -> ZoneRef:
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


def check_zone(domain: Domain, rows: Sequence[DnsRecord], changes: Sequence[RecordChange]) -> None:
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


def changes_for(edits: Sequence[Edit]) -> list[RecordChange]:
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
    changes = changes_for(edits)
    check_zone(domain, rows, changes)
    current = [(row.id, record_data(row)) for row in rows]
    zone = zone_of(domain)
    applied = await provider.apply(zone, changes, current)
    if journal is not None:
        journal[0].extend(changes)
        journal[1].update(applied)
    try:
        return await store_records(session, domain, edits, changes, applied)
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


async def store_records(
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
        row = edit.row or DnsRecord(id=change.key, domain_id=domain.id)
        if edit.purpose is not None:
            # A record Mailfleet now manages (an existing SPF or DMARC taken over) says so.
            row.purpose = edit.purpose
        row.name, row.type, row.content = record.name, record.type, record.content
        row.ttl, row.priority = record.ttl, record.priority
        if answer and answer.provider_id:
            row.provider_record_id = answer.provider_id
        if edit.row is None:
            session.add(row)
        stored.append(row)
    await session.flush()
    return stored


async def save_cloudflare(
    session: AsyncSession,
    env: Env,
    workspace_id: str,
    api_token: str | None,
    account_id: str | None,
) -> CloudflareCredential:
    """Verify a token with Cloudflare, then keep it encrypted; never shown again."""
    credential = await cloudflare_credential(session, workspace_id)
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
    credential = await cloudflare_credential(session, workspace_id)
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
