"""Console pages for domains: connect, the domain page (records editor, DNS check,
nameserver propagation, web forwarding, hosted mail), deleting a domain.

Hosted mailboxes, email forwarding and catch-all post to hosted.py; buying domains
is purchases.py. A form whose service refuses comes back as the domain page with
the message beside that form (and the status the API would answer).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from mailfleet.console.context import (
    ConsoleContext,
    ConsoleRoute,
    ContextDep,
    redirect,
    render,
    undo,
)
from mailfleet.console.forms import form_number, form_text, validation_message
from mailfleet.deps import KeyringDep, SessionDep, SettingsDep
from mailfleet.domains import service as domains
from mailfleet.domains.schemas import DnsRecordIn, DomainConnect, ForwardingIn, MailProviderChange
from mailfleet.kit.errors import MailfleetError
from mailfleet.kit.pagination import Page
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailserver import service as hosted_mail
from mailfleet.models import MAIL_PROVIDERS, Domain, Mailbox

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE: Final = 50
# Hosted mailboxes listed on a domain's page.
HOSTED_SHOWN: Final = 200
FORWARDING_LABELS: Final = {"url": "URL", "permanent": "Permanent", "keep_path": "Keep path"}


async def _domain_env(settings: SettingsDep, keyring: KeyringDep) -> domains.Env:
    return domains.Env(settings, keyring)


DomainEnvDep = Annotated[domains.Env, Depends(_domain_env)]


# The domain list and connecting a domain


@router.get("/domains", response_class=HTMLResponse)
async def domain_list(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    skip: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    page = Page(limit=PAGE_SIZE, skip=skip)
    found, total, counts = await domains.list_domains(
        session, ctx.workspace_id, domains.DomainFilters(), page
    )
    return render(
        request,
        "domains.html",
        ctx,
        domains=found,
        counts=counts,
        total=total,
        next_url=f"/domains?skip={skip + PAGE_SIZE}" if skip + PAGE_SIZE < total else None,
        previous_url=f"/domains?skip={max(skip - PAGE_SIZE, 0)}" if skip else None,
    )


@router.post("/domains", response_class=HTMLResponse)
async def connect_domain(
    request: Request, ctx: ContextDep, session: SessionDep, env: DomainEnvDep
) -> Response:
    form = await request.form()
    try:
        body = DomainConnect.model_validate(
            {
                "domain": form_text(form, "domain"),
                "dns_provider": form_text(form, "dns_provider") or "mailfleet",
                "mail_provider": form_text(form, "mail_provider") or "custom",
            }
        )
        connected = await domains.connect_domains(
            session,
            env,
            ctx.workspace_id,
            body.names(),
            body.dns_provider,
            body.mail_provider,
            single=True,
        )
    except ValidationError as exc:
        message = validation_message(exc, {"domain": "Domain", "dns_provider": "DNS provider"})
        return redirect(request, "/domains", message, "error")
    except MailfleetError as exc:
        return redirect(request, "/domains", exc.message, "error")
    domain = connected[0]
    return redirect(request, f"/domains/{domain.id}", f"{domain.name} connected")


# A domain's page


async def hosted_mailboxes(
    session: AsyncSession, ctx: ConsoleContext, domain: Domain
) -> list[Mailbox]:
    filters = mailboxes.MailboxFilters(domain=domain.name)
    found, _ = await mailboxes.list_mailboxes(
        session, ctx.workspace_id, filters, Page(limit=HOSTED_SHOWN, skip=0)
    )
    return [mailbox for mailbox in found if mailbox.hosted_domain_id == domain.id]


def expected_nameservers(settings: Any, domain: Domain) -> list[str]:
    """The NS names the registrar should have, as stored (no provider call on a view)."""
    if domain.dns_provider == "mailfleet":
        return list(domain.nameservers or settings.nameservers)
    return list(domain.nameservers or []) if domain.dns_provider == "cloudflare" else []


async def domain_view(
    request: Request,
    ctx: ConsoleContext,
    session: AsyncSession,
    domain: Domain,
    *,
    status_code: int = 200,
    errors: dict[str, str] | None = None,
    form: dict[str, Any] | None = None,
    **values: Any,
) -> Response:
    """The domain page; `errors` puts a message beside the form it names, `form`
    keeps what was typed there."""
    records = await domains.records_of(session, domain.id)
    count = await domains.mailbox_count(session, ctx.workspace_id, domain.name)
    routing = await hosted_mail.hosted_mail(session, domain)
    hosted = await hosted_mailboxes(session, ctx, domain) if routing is not None else []
    by_id = {mailbox.id: mailbox for mailbox in hosted}
    return render(
        request,
        "domain.html",
        ctx,
        status_code=status_code,
        domain=domain,
        records=records,
        locked=await domains.locked_records(session, domain, records),
        mailbox_count=count,
        nameservers=expected_nameservers(request.app.state.settings, domain),
        routing=routing,
        hosted=hosted,
        hosted_by_id=by_id,
        mail_providers=MAIL_PROVIDERS,
        errors=errors or {},
        form=form or {},
        **values,
    )


async def refused(
    request: Request,
    ctx: ConsoleContext,
    session: AsyncSession,
    domain: Domain,
    section: str,
    exc: ValidationError | MailfleetError,
    form: dict[str, Any],
    labels: dict[str, str] | None = None,
) -> Response:
    """The domain page again, with why the form of `section` was refused beside it,
    and nothing of what the refused action may have written."""
    await undo(session, ctx)
    await session.refresh(domain)
    if isinstance(exc, ValidationError):
        status_code, message = 400, validation_message(exc, labels or {})
    else:
        status_code, message = exc.status_code, exc.message
    return await domain_view(
        request, ctx, session, domain, status_code=status_code, errors={section: message}, form=form
    )


@router.get("/domains/{domain_id}", response_class=HTMLResponse)
async def domain_page(
    domain_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    domain = await domains.get_domain(session, ctx.workspace_id, domain_id)
    return await domain_view(request, ctx, session, domain)


@router.get("/domains/{domain_id}/nameservers", response_class=HTMLResponse)
async def nameserver_propagation(
    domain_id: str, request: Request, ctx: ContextDep, session: SessionDep, env: DomainEnvDep
) -> Response:
    """Ask each resolver for the domain's NS set now (a read, as the API's GET is);
    htmx swaps the panel, a plain request gets the whole page with it."""
    domain = await domains.get_domain(session, ctx.workspace_id, domain_id)
    errors: dict[str, str] = {}
    propagation = None
    try:
        propagation = await domains.verify_nameservers(session, env, domain)
    except MailfleetError as exc:
        errors["nameservers"] = exc.message
    if request.headers.get("hx-request"):
        return render(
            request,
            "_nameservers.html",
            ctx,
            domain=domain,
            nameservers=expected_nameservers(env.settings, domain),
            propagation=propagation,
            errors=errors,
        )
    return await domain_view(request, ctx, session, domain, errors=errors, propagation=propagation)


# The records editor and the DNS check


def _record_body(form: FormData) -> DnsRecordIn:
    values: dict[str, Any] = {
        "type": form_text(form, "type").upper(),
        "name": form_text(form, "name") or "@",
        "content": form_text(form, "content"),
    }
    for number in ("ttl", "priority"):
        if form_text(form, number):
            values[number] = form_number(form, number)
    return DnsRecordIn.model_validate(values)


RECORD_LABELS: Final = {"type": "Type", "name": "Name", "content": "Content", "ttl": "TTL"}


@router.post("/domains/{domain_id}/records")
async def add_record(
    domain_id: str, request: Request, ctx: ContextDep, session: SessionDep, env: DomainEnvDep
) -> Response:
    return await _write_record(request, ctx, session, env, domain_id, None)


@router.post("/domains/{domain_id}/records/{record_id}")
async def change_record(
    domain_id: str,
    record_id: str,
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    env: DomainEnvDep,
) -> Response:
    return await _write_record(request, ctx, session, env, domain_id, record_id)


async def _write_record(
    request: Request,
    ctx: ConsoleContext,
    session: AsyncSession,
    env: domains.Env,
    domain_id: str,
    record_id: str | None,
) -> Response:
    """Add a record (no id), or save or delete one (the button pressed says which)."""
    domain = await domains.get_domain(session, ctx.workspace_id, domain_id)
    row = await domains.get_record(session, domain, record_id) if record_id else None
    form = await request.form()
    back = f"/domains/{domain.id}"
    try:
        if row is None:
            await domains.create_record(session, env, domain, _record_body(form))
            done = "Record added"
        elif form_text(form, "action") == "delete":
            await domains.delete_record(session, env, domain, row)
            done = "Record deleted"
        else:
            await domains.update_record(session, env, domain, row, _record_body(form))
            done = "Record saved"
    except ValidationError as exc:
        return redirect(request, back, validation_message(exc, RECORD_LABELS), "error")
    except MailfleetError as exc:
        return redirect(request, back, exc.message, "error")
    return redirect(request, back, done)


@router.post("/domains/{domain_id}/check")
async def check_domain(
    domain_id: str,
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    settings: SettingsDep,
    env: DomainEnvDep,
) -> Response:
    domain = await domains.get_domain(session, ctx.workspace_id, domain_id)
    plan = await domains.plan_dns_check(session, domain)
    outcome = await domains.run_dns_check(settings, plan)
    await domains.record_dns_check(session, env, domain, outcome)
    return redirect(request, f"/domains/{domain.id}", f"DNS checked: {domain.status}")


@router.post("/domains/{domain_id}/mail-provider", response_class=HTMLResponse)
async def switch_mail_provider(
    domain_id: str, request: Request, ctx: ContextDep, session: SessionDep, env: DomainEnvDep
) -> Response:
    """Move the domain's mail to the provider chosen (PUT /v1/domains/{id}/mail-provider)."""
    domain = await domains.get_domain(session, ctx.workspace_id, domain_id)
    form = await request.form()
    before = domain.mail_provider
    try:
        chosen = {"mail_provider": form_text(form, "mail_provider")}
        body = MailProviderChange.model_validate(chosen)
        await domains.switch_mail_provider(session, env, domain, body.mail_provider)
    except (ValidationError, MailfleetError) as exc:
        labels = {"mail_provider": "Mail provider"}
        return await refused(request, ctx, session, domain, "mail_provider", exc, {}, labels)
    if domain.mail_provider == before:
        return redirect(request, f"/domains/{domain.id}", f"Mail already goes to {before}")
    return redirect(
        request,
        f"/domains/{domain.id}",
        f"{domain.name} now gets its mail from {domain.mail_provider}",
    )


# Web forwarding


@router.post("/domains/{domain_id}/forwarding", response_class=HTMLResponse)
async def web_forwarding(
    domain_id: str, request: Request, ctx: ContextDep, session: SessionDep, env: DomainEnvDep
) -> Response:
    """Turn on (or change) the redirect of the domain's web address, or remove it."""
    domain = await domains.get_domain(session, ctx.workspace_id, domain_id)
    form = await request.form()
    kept = {
        "forward_url": form_text(form, "url"),
        "forward_permanent": form.get("permanent") is not None,
        "forward_keep_path": form.get("keep_path") is not None,
    }
    try:
        if form_text(form, "action") == "remove":
            await domains.remove_forwarding(session, env, domain)
            return redirect(request, f"/domains/{domain.id}", "Web forwarding removed")
        body = ForwardingIn.model_validate(
            {
                "url": kept["forward_url"],
                "permanent": kept["forward_permanent"],
                "keep_path": kept["forward_keep_path"],
            }
        )
        await domains.set_forwarding(session, env, domain, body)
    except (ValidationError, MailfleetError) as exc:
        return await refused(
            request, ctx, session, domain, "forwarding", exc, kept, FORWARDING_LABELS
        )
    return redirect(
        request, f"/domains/{domain.id}", f"{domain.name} now forwards to {domain.forward_url}"
    )


# Deleting a domain


@router.get("/domains/{domain_id}/delete", response_class=HTMLResponse)
async def confirm_delete(
    domain_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    ctx.require_write()
    domain = await domains.get_domain(session, ctx.workspace_id, domain_id)
    count = await domains.mailbox_count(session, ctx.workspace_id, domain.name)
    return render(request, "domain_delete.html", ctx, domain=domain, mailbox_count=count)


@router.post("/domains/{domain_id}/delete", response_class=HTMLResponse)
async def delete_domain(
    domain_id: str, request: Request, ctx: ContextDep, session: SessionDep, env: DomainEnvDep
) -> Response:
    """Only once the name is typed again: the zone Mailfleet hosts goes with it."""
    domain = await domains.get_domain(session, ctx.workspace_id, domain_id)
    count = await domains.mailbox_count(session, ctx.workspace_id, domain.name)
    form = await request.form()
    typed = form_text(form, "confirm").lower().rstrip(".")
    if typed not in (domain.name, domain.unicode_name.lower()):
        return render(
            request,
            "domain_delete.html",
            ctx,
            status_code=400,
            domain=domain,
            mailbox_count=count,
            error=f"Type {domain.unicode_name} to confirm.",
        )
    name = domain.unicode_name
    try:
        await domains.delete_domain(session, env, domain)
    except MailfleetError as exc:
        await undo(session, ctx)
        await session.refresh(domain)
        return render(
            request,
            "domain_delete.html",
            ctx,
            status_code=exc.status_code,
            domain=domain,
            mailbox_count=count,
            error=exc.message,
        )
    return redirect(request, "/domains", f"{name} deleted")
