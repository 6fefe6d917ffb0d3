"""A mail provider's records in a domain's zone: what its plan writes there
(`plan_for`, `plan_edits`: connecting a domain uses them too), and switching a
connected domain to another mail provider. A switch rewrites the mail records for
the new one (MX, SPF, DKIM, Microsoft's autodiscover) in one write at the DNS
provider, as connecting with that provider would have written them.

What the old provider's plan put in DNS goes: the apex MX pointing at its hosts, its
SPF mechanism (the rest of the SPF record stays), its autodiscover CNAME. Leaving
self-hosted mail, Mailfleet's DKIM keys are retired as a rotation retires them: their
records stay published through the grace (mail signed just before may still be on its
way), then the DNS sweep removes them. Records the customer added (a Google DKIM key
pasted in, their own MX) are theirs and stay, but for apex MX records when the new
provider has MX of its own: mail has one destination. A self-hosted domain that still
hosts mailboxes cannot switch away (409): their mail would stop arriving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from dataclasses import replace
from typing import cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.dns.records import (
    MailPlan,
    MailProvider,
    dkim_selector,
    generate_dkim_key,
    is_spf,
    mail_plan,
    strip_spf,
)
from mailfleet.domains.providers import (
    Edit,
    Env,
    provider_for,
    record_data,
    records_of,
    write_records,
)
from mailfleet.domains.repository import dkim_keys
from mailfleet.kit.clock import utcnow
from mailfleet.kit.errors import Conflict
from mailfleet.models import DkimKey, DkimKeyStatus, DnsRecord, Domain, Mailbox

SELF_HOSTED = "self-hosted"


def _host(name: str) -> str:
    return name.rstrip(".").lower()


def plan_for(
    env: Env,
    domain: Domain,
    provider: str,
    *,
    existing_spf: str | None = None,
    key: DkimKey | None = None,
) -> MailPlan:
    """`provider`'s mail records for the domain, as connecting with it writes them."""
    settings = env.settings
    return mail_plan(
        domain.name,
        cast(MailProvider, provider),
        dkim_selector=key.selector if key else None,
        dkim_public_key=key.public_key if key else None,
        existing_spf=existing_spf,
        mail_host=settings.mail_host if settings.mail_hostname else None,
    )


def _spf_mechanisms(plan: MailPlan) -> list[str]:
    """What the plan's SPF record added to the domain's: an include, or `mx`."""
    if plan.spf_include:
        return [f"include:{plan.spf_include}"]
    return ["mx"] if any(purpose == "spf" for purpose, _ in plan.records) else []


async def make_dkim_key(
    env: Env, domain_id: str, taken: Collection[str], *, active: bool
) -> DkimKey:
    """A new RSA key pair for a self-hosted domain under a selector not in `taken`,
    its private key sealed by the keyring; active at once, or pending until a DNS
    check sees it published (a rotation). Not added to any session."""
    private_pem, public_key = await asyncio.to_thread(generate_dkim_key)
    now = utcnow()
    return DkimKey(
        domain_id=domain_id,
        selector=dkim_selector(now, taken),
        public_key=public_key,
        private_key_enc=env.keyring.encrypt(private_pem),
        status=DkimKeyStatus.ACTIVE if active else DkimKeyStatus.PENDING,
        activated_at=now if active else None,
    )


async def hosted_mailboxes(session: AsyncSession, domain: Domain) -> int:
    count = await session.scalar(
        select(func.count()).select_from(Mailbox).where(Mailbox.hosted_domain_id == domain.id)
    )
    return count or 0


async def switch_mail_provider(
    session: AsyncSession, env: Env, domain: Domain, provider: str
) -> Domain:
    """Rewrite the domain's mail records for `provider` and make it the domain's. The
    same provider again changes nothing. The next DNS sweep checks the domain anew."""
    old = domain.mail_provider
    if provider == old:
        return domain
    if old == SELF_HOSTED:
        hosted = await hosted_mailboxes(session, domain)
        if hosted:
            raise Conflict(
                f"{domain.name} hosts {hosted} mailbox(es) on Mailfleet's mail server; "
                "delete them before its mail goes elsewhere",
                hostedMailboxCount=hosted,
            )
    rows = await records_of(session, domain.id)
    keys = await dkim_keys(session, domain.id)
    edits, spf = _leaving(domain, rows, plan_for(env, domain, old))

    new_key: DkimKey | None = None
    if provider == SELF_HOSTED:
        # Not a selector the zone has or a key had (a retired one may still be published).
        used = {row.name.split("._domainkey.", 1)[0] for row in rows if "._domainkey." in row.name}
        used.update(key.selector for key in keys)
        new_key = await make_dkim_key(env, domain.id, used, active=True)
    plan = plan_for(env, domain, provider, existing_spf=spf[1], key=new_key)
    edits = plan_edits(domain, rows, plan, edits, spf)

    async with provider_for(session, env, domain.workspace_id, domain.dns_provider) as dns:
        await write_records(session, dns, domain, edits, rows)
    now = utcnow()
    for key in keys:
        if key.status != DkimKeyStatus.RETIRED:
            # Mail signed before the switch may still be in flight: the key's record
            # stays published through the grace a rotation gives, then the DNS sweep
            # removes it and the key (checks._advance_dkim).
            key.status, key.retired_at = DkimKeyStatus.RETIRED, now
    if new_key is not None:
        session.add(new_key)
    domain.mail_provider = provider
    domain.setup_instructions = [dict(step) for step in plan.instructions]
    domain.dns_checked_at = None  # due at the next sweep
    domain.updated_at = now
    await session.flush()
    return domain


def _leaving(
    domain: Domain, rows: list[DnsRecord], plan: MailPlan
) -> tuple[list[Edit], tuple[DnsRecord | None, str | None]]:
    """Removals of what the old plan wrote (its DKIM records go with their retired
    keys, later), and the apex SPF row with its text without the old plan's mechanism
    (None: nothing is left of it)."""
    apex = domain.name
    old_mx = {_host(host) for host in plan.expected_mx}

    def planned(row: DnsRecord) -> bool:
        if row.name == apex and row.type == "MX":
            return _host(row.content) in old_mx
        return row.purpose == "autodiscover"

    edits = [Edit(row, None) for row in rows if planned(row)]
    spf = [row for row in rows if row.name == apex and is_spf(record_data(row))]
    if not spf:
        return edits, (None, None)
    return edits, (spf[0], strip_spf(spf[0].content, _spf_mechanisms(plan)))


def plan_edits(
    domain: Domain,
    rows: list[DnsRecord],
    plan: MailPlan,
    edits: list[Edit],
    spf: tuple[DnsRecord | None, str | None],
) -> list[Edit]:
    """`edits` and the new plan's records: its MX replace every apex MX left, its SPF
    record (merged into what was left of the old one) takes the apex SPF row's place,
    a CNAME whose name is in use is left out. Without an SPF of its own, what was
    left of the old record stays, or goes if nothing was."""
    apex = domain.name
    spf_row, spf_left = spf
    removed = {id(edit.row) for edit in edits}
    if any(purpose == "mx" for purpose, _ in plan.records):
        edits += [
            Edit(row, None)
            for row in rows
            if row.name == apex and row.type == "MX" and id(row) not in removed
        ]
    planned_spf = False
    for purpose, record in plan.records:
        if purpose == "spf":
            planned_spf = True
            if spf_row is not None:
                edits.append(Edit(spf_row, replace(record, ttl=spf_row.ttl), "spf"))
                continue
        elif record.type == "CNAME" and any(
            row.name == record.name and id(row) not in removed for row in rows
        ):
            continue  # the customer already uses that name; leave it to them
        edits.append(Edit(None, record, purpose))
    if spf_row is not None and not planned_spf:
        if spf_left is None:
            edits.append(Edit(spf_row, None))
        elif spf_left != spf_row.content:
            edits.append(Edit(spf_row, replace(record_data(spf_row), content=spf_left), "spf"))
    return edits
