"""Domain, DNS record, DNS check, nameserver, forwarding and Cloudflare routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from mailfleet.deps import (
    KeyringDep,
    SessionDep,
    SettingsDep,
    WorkspaceReadDep,
    WorkspaceWriteDep,
)
from mailfleet.dns.records import relative_name, txt_strings
from mailfleet.domains import service
from mailfleet.domains.schemas import (
    CloudflareIn,
    CloudflareOut,
    CloudflareZoneOut,
    DkimKeyOut,
    DmarcIn,
    DnsCheckHistoryOut,
    DnsCheckOut,
    DnsRecordIn,
    DnsRecordOut,
    DomainConnect,
    DomainDetailOut,
    DomainOut,
    ForwardingIn,
    ForwardingOut,
    MailProviderChange,
    NameserversOut,
    NameserverVerifyOut,
)
from mailfleet.kit.envelope import WORKSPACE_ERRORS, Envelope, ListEnvelope, errors, ok
from mailfleet.kit.pagination import PageDep
from mailfleet.mailserver.service import hosted_mail
from mailfleet.models import DkimKey, DnsRecord, Domain

router = APIRouter(prefix="/v1", tags=["domains"], responses=WORKSPACE_ERRORS)


async def domain_env(settings: SettingsDep, keyring: KeyringDep) -> service.Env:
    return service.Env(settings, keyring)


EnvDep = Annotated[service.Env, Depends(domain_env)]


def domain_out(domain: Domain, mailbox_count: int) -> DomainOut:
    forwarding = None
    if domain.forward_url:
        forwarding = ForwardingOut(
            url=domain.forward_url,
            permanent=domain.forward_permanent,
            keep_path=domain.forward_keep_path,
        )
    return DomainOut(
        id=domain.id,
        name=domain.name,
        unicode_name=domain.unicode_name,
        status=domain.status,
        dns_provider=domain.dns_provider,
        mail_provider=domain.mail_provider,
        mailbox_count=mailbox_count,
        nameservers=list(domain.nameservers or []),
        nameserver_status=domain.ns_status,
        nameservers_checked_at=domain.ns_checked_at,
        dns_health=domain.dns_health,
        dns_checked_at=domain.dns_checked_at,
        dmarc=domain.dmarc_policy,
        forwarding=forwarding,
        setup_instructions=[
            {**step, "instructions": str(step.get("instructions", "")).replace("{id}", domain.id)}
            for step in domain.setup_instructions or []
        ],
        created_at=domain.created_at,
        updated_at=domain.updated_at,
    )


def record_out(domain: Domain, row: DnsRecord) -> DnsRecordOut:
    return DnsRecordOut(
        id=row.id,
        domain_id=row.domain_id,
        name=row.name,
        host=relative_name(row.name, domain.name),
        type=row.type,
        content=row.content,
        priority=row.priority,
        ttl=row.ttl,
        strings=txt_strings(row.content) if row.type == "TXT" else None,
        purpose=row.purpose,
        managed=row.purpose is not None,
        provider_record_id=row.provider_record_id,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def key_out(domain: Domain, key: DkimKey) -> DkimKeyOut:
    return DkimKeyOut(
        selector=key.selector,
        status=key.status,
        record_name=f"{key.selector}._domainkey.{domain.name}",
        public_key=key.public_key,
        activated_at=key.activated_at,
        retired_at=key.retired_at,
        created_at=key.created_at,
    )


async def _detail(session: SessionDep, domain: Domain) -> DomainDetailOut:
    count = await service.mailbox_count(session, domain.workspace_id, domain.name)
    keys = await service.dkim_keys(session, domain.id)
    rows = await service.records_of(session, domain.id)
    return DomainDetailOut(
        **domain_out(domain, count).model_dump(),
        dkim=[key_out(domain, key) for key in keys],
        records=[record_out(domain, row) for row in rows],
        hosted_mail=await hosted_mail(session, domain),
    )


async def _listing(
    status_filter: Annotated[
        str | None, Query(alias="status", description="pending, active or misconfigured")
    ] = None,
    dns_provider: Annotated[str | None, Query(alias="dnsProvider")] = None,
    mail_provider: Annotated[str | None, Query(alias="mailProvider")] = None,
    search: Annotated[str | None, Query(max_length=253)] = None,
) -> service.DomainFilters:
    return service.DomainFilters(
        status=status_filter, dns_provider=dns_provider, mail_provider=mail_provider, search=search
    )


FiltersDep = Annotated[service.DomainFilters, Depends(_listing)]


@router.post(
    "/domains/connect",
    operation_id="domains:connect",
    status_code=status.HTTP_201_CREATED,
    responses=errors(409),
)
async def connect_domains(
    body: DomainConnect, ctx: WorkspaceWriteDep, session: SessionDep, env: EnvDep
) -> Envelope[list[DomainOut]]:
    """Connect one or many domains: host (or find) their zone and write mail records."""
    domains = await service.connect_domains(
        session,
        env,
        ctx.workspace_id,
        body.names(),
        body.dns_provider,
        body.mail_provider,
        single=bool(body.domain) and not body.domains,
    )
    return ok([domain_out(d, 0) for d in domains], f"{len(domains)} domain(s) connected")


@router.get("/domains", operation_id="domains:list")
async def list_domains(
    ctx: WorkspaceReadDep, session: SessionDep, page: PageDep, filters: FiltersDep
) -> ListEnvelope[DomainOut]:
    domains, total, counts = await service.list_domains(session, ctx.workspace_id, filters, page)
    return ListEnvelope(
        data=[domain_out(d, counts.get(d.name, 0)) for d in domains],
        pagination=page.describe(total),
    )


@router.get("/domains/assignable", operation_id="domains:list_assignable")
async def assignable_domains(
    ctx: WorkspaceReadDep, session: SessionDep, page: PageDep, filters: FiltersDep
) -> ListEnvelope[DomainOut]:
    """Domains ready to take new mailboxes: their latest DNS check found nothing broken."""
    filters = service.DomainFilters(
        dns_provider=filters.dns_provider,
        mail_provider=filters.mail_provider,
        search=filters.search,
        assignable=True,
    )
    domains, total, counts = await service.list_domains(session, ctx.workspace_id, filters, page)
    return ListEnvelope(
        data=[domain_out(d, counts.get(d.name, 0)) for d in domains],
        pagination=page.describe(total),
    )


@router.get("/domains/{domain_id}", operation_id="domains:get")
async def get_domain(
    domain_id: str, ctx: WorkspaceReadDep, session: SessionDep
) -> Envelope[DomainDetailOut]:
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    return ok(await _detail(session, domain))


@router.put(
    "/domains/{domain_id}/mail-provider",
    operation_id="domains:switch_mail_provider",
    responses=errors(409),
)
async def switch_mail_provider(
    domain_id: str,
    body: MailProviderChange,
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    env: EnvDep,
) -> Envelope[DomainDetailOut]:
    """Move the domain's mail to another provider: its MX, SPF, DKIM (and Microsoft's
    autodiscover) are rewritten for it at the DNS provider, as connecting with it would
    have written them; the next DNS sweep checks it. To `self-hosted`, Mailfleet makes
    a DKIM key and its mail server takes the domain's mail; away from it, 409 while the
    domain still hosts mailboxes."""
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    before = domain.mail_provider
    await service.switch_mail_provider(session, env, domain, body.mail_provider)
    message = (
        f"{domain.name} already gets its mail from {before}"
        if before == body.mail_provider
        else f"{domain.name} now gets its mail from {body.mail_provider} (was {before})"
    )
    return ok(await _detail(session, domain), message)


@router.delete("/domains/{domain_id}", operation_id="domains:delete", responses=errors(409))
async def delete_domain(
    domain_id: str, ctx: WorkspaceWriteDep, session: SessionDep, env: EnvDep
) -> Envelope[None]:
    """Remove a domain no mailbox uses (409 with `mailboxCount` otherwise)."""
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    await service.delete_domain(session, env, domain)
    return ok(None, f"Domain {domain.name} removed")


@router.get("/domains/{domain_id}/dns-records", operation_id="domains.dns_records:list")
async def list_records(
    domain_id: str, ctx: WorkspaceReadDep, session: SessionDep
) -> Envelope[list[DnsRecordOut]]:
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    rows = await service.records_of(session, domain.id)
    return ok([record_out(domain, row) for row in rows])


@router.post(
    "/domains/{domain_id}/dns-records",
    operation_id="domains.dns_records:create",
    status_code=status.HTTP_201_CREATED,
)
async def create_record(
    domain_id: str, body: DnsRecordIn, ctx: WorkspaceWriteDep, session: SessionDep, env: EnvDep
) -> Envelope[DnsRecordOut]:
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    row = await service.create_record(session, env, domain, body)
    return ok(record_out(domain, row), "DNS record created")


@router.put(
    "/domains/{domain_id}/dns-records/{record_id}",
    operation_id="domains.dns_records:update",
    responses=errors(409),
)
async def update_record(
    domain_id: str,
    record_id: str,
    body: DnsRecordIn,
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    env: EnvDep,
) -> Envelope[DnsRecordOut]:
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    row = await service.get_record(session, domain, record_id)
    row = await service.update_record(session, env, domain, row, body)
    return ok(record_out(domain, row), "DNS record updated")


@router.delete(
    "/domains/{domain_id}/dns-records/{record_id}",
    operation_id="domains.dns_records:delete",
    responses=errors(409),
)
async def delete_record(
    domain_id: str, record_id: str, ctx: WorkspaceWriteDep, session: SessionDep, env: EnvDep
) -> Envelope[None]:
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    row = await service.get_record(session, domain, record_id)
    await service.delete_record(session, env, domain, row)
    return ok(None, "DNS record deleted")


@router.post("/domains/{domain_id}/dmarc", operation_id="domains:set_dmarc")
async def set_dmarc(
    domain_id: str, body: DmarcIn, ctx: WorkspaceWriteDep, session: SessionDep, env: EnvDep
) -> Envelope[DnsRecordOut]:
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    row = await service.set_dmarc(session, env, domain, body)
    return ok(record_out(domain, row), "DMARC record set")


@router.post(
    "/domains/{domain_id}/dkim/rotate",
    operation_id="domains:rotate_dkim",
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(409),
)
async def rotate_dkim(
    domain_id: str, ctx: WorkspaceWriteDep, session: SessionDep, env: EnvDep
) -> Envelope[DkimKeyOut]:
    """Publish a new DKIM key; it takes over once a DNS check sees it live."""
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    key = await service.rotate_dkim(session, env, domain)
    return ok(
        key_out(domain, key),
        f"Selector {key.selector} published; the current key stays active until a DNS "
        "check sees the new one live",
    )


@router.get(
    "/domains/{domain_id}/dns-check", operation_id="domains:check_dns", responses=errors(409)
)
async def check_dns(
    domain_id: str, ctx: WorkspaceReadDep, session: SessionDep, env: EnvDep
) -> Envelope[DnsCheckOut]:
    """Look MX, SPF, DKIM and DMARC up now, store the result, and return it."""
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    plan = await service.plan_dns_check(session, domain)
    outcome = await service.run_dns_check(env.settings, plan)
    changes = await service.record_dns_check(session, env, domain, outcome)
    return ok(DnsCheckOut(**service.check_summary(domain, changes)))


@router.get(
    "/domains/{domain_id}/dns-check/history",
    operation_id="domains:list_dns_checks",
)
async def check_history(
    domain_id: str, ctx: WorkspaceReadDep, session: SessionDep, page: PageDep
) -> ListEnvelope[DnsCheckHistoryOut]:
    """Checks whose outcome changed, newest first."""
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    rows, total = await service.history(session, domain, page)
    return ListEnvelope(
        data=[DnsCheckHistoryOut.model_validate(row) for row in rows],
        pagination=page.describe(total),
    )


@router.get(
    "/domains/{domain_id}/nameservers",
    operation_id="domains:get_nameservers",
    responses=errors(409),
)
async def get_nameservers(
    domain_id: str, ctx: WorkspaceReadDep, session: SessionDep, env: EnvDep
) -> Envelope[NameserversOut]:
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    names = await service.nameservers(session, env, domain)
    if names:
        instructions = "Set these nameservers at your domain registrar."
    else:
        instructions = "Manual DNS: keep your nameservers and copy the DNS records to your host."
    return ok(
        NameserversOut(
            domain_id=domain.id,
            domain=domain.name,
            dns_provider=domain.dns_provider,
            nameservers=names,
            instructions=instructions,
        )
    )


@router.get(
    "/domains/{domain_id}/nameservers/verify",
    operation_id="domains:verify_nameservers",
    responses=errors(409),
)
async def verify_nameservers(
    domain_id: str, ctx: WorkspaceReadDep, session: SessionDep, env: EnvDep
) -> Envelope[NameserverVerifyOut]:
    """Ask each configured resolver for the domain's NS set."""
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    return ok(NameserverVerifyOut(**await service.verify_nameservers(session, env, domain)))


@router.post(
    "/domains/{domain_id}/forwarding", operation_id="domains:set_forwarding", responses=errors(409)
)
async def set_forwarding(
    domain_id: str, body: ForwardingIn, ctx: WorkspaceWriteDep, session: SessionDep, env: EnvDep
) -> Envelope[DomainOut]:
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    domain = await service.set_forwarding(session, env, domain, body)
    count = await service.mailbox_count(session, domain.workspace_id, domain.name)
    return ok(domain_out(domain, count), "Domain forwarding enabled")


@router.delete("/domains/{domain_id}/forwarding", operation_id="domains:remove_forwarding")
async def remove_forwarding(
    domain_id: str, ctx: WorkspaceWriteDep, session: SessionDep, env: EnvDep
) -> Envelope[DomainOut]:
    domain = await service.get_domain(session, ctx.workspace_id, domain_id)
    domain = await service.remove_forwarding(session, env, domain)
    count = await service.mailbox_count(session, domain.workspace_id, domain.name)
    return ok(domain_out(domain, count), "Domain forwarding removed")


async def _cloudflare_out(
    session: SessionDep, env: service.Env, workspace_id: str, domains: list[DomainOut]
) -> CloudflareOut:
    credential, zones, connected = await service.cloudflare_overview(session, env, workspace_id)
    return CloudflareOut(
        configured=credential is not None,
        account_id=credential.account_id if credential else None,
        verified_at=credential.verified_at if credential else None,
        zones=[
            CloudflareZoneOut(
                id=zone.id,
                name=zone.name,
                status=zone.status,
                name_servers=zone.name_servers,
                connected=zone.name in connected,
            )
            for zone in zones
        ],
        domains=domains,
    )


@router.get("/cloudflare", operation_id="cloudflare:get", tags=["cloudflare"])
async def get_cloudflare(
    ctx: WorkspaceReadDep, session: SessionDep, env: EnvDep
) -> Envelope[CloudflareOut]:
    """Whether a token is saved (never the token), and the account's zones."""
    return ok(await _cloudflare_out(session, env, ctx.workspace_id, []))


@router.post(
    "/cloudflare", operation_id="cloudflare:connect", tags=["cloudflare"], responses=errors(409)
)
async def post_cloudflare(
    body: CloudflareIn, ctx: WorkspaceWriteDep, session: SessionDep, env: EnvDep
) -> Envelope[CloudflareOut]:
    """Save (verified) credentials, connect domains through Cloudflare, or both."""
    messages = []
    if body.api_token or body.account_id:
        await service.save_cloudflare(
            session, env, ctx.workspace_id, body.api_token, body.account_id
        )
        messages.append("Cloudflare credentials saved")
    connected: list[DomainOut] = []
    names = body.names()
    if names:
        domains = await service.connect_domains(
            session,
            env,
            ctx.workspace_id,
            names,
            "cloudflare",
            body.mail_provider,
            single=bool(body.domain) and not body.domains,
        )
        connected = [domain_out(d, 0) for d in domains]
        messages.append(f"{len(domains)} domain(s) connected")
    return ok(await _cloudflare_out(session, env, ctx.workspace_id, connected), "; ".join(messages))
