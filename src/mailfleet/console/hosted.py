"""Console forms for a self-hosted domain's mail: hosted mailboxes (add, delete),
email forwarding and catch-all. Each answers with the domain page: a redirect when
it worked, the page with the message beside the form when the service refused.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.console.context import (
    ConsoleContext,
    ConsoleError,
    ConsoleRoute,
    ContextDep,
    redirect,
)
from mailfleet.console.domains import domain_view, refused
from mailfleet.console.forms import form_text
from mailfleet.deps import KeyringDep, SessionDep, SettingsDep
from mailfleet.kit.errors import MailfleetError
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailserver import service as hosted_mail
from mailfleet.mailserver.schemas import (
    CatchAllIn,
    EmailForwardingIn,
    HostedMailboxIn,
    HostedUpdateIn,
)
from mailfleet.models import Domain, Mailbox

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

MAILBOX_LABELS: Final = {
    "username": "Username",
    "first_name": "First name",
    "last_name": "Last name",
    "password": "Password",
}
FORWARD_LABELS: Final = {"forward_to": "Forward to", "mailbox_ids": "Mailboxes"}


@router.post("/domains/{domain_id}/mailboxes", response_class=HTMLResponse)
async def add_hosted_mailbox(
    domain_id: str,
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    settings: SettingsDep,
    keyring: KeyringDep,
) -> Response:
    """One hosted mailbox, active at once; a password Mailfleet generated is shown on
    this answer only (never in a redirect, a cookie or a log)."""
    domain = await hosted_mail.get_hosted_domain(session, ctx.workspace_id, domain_id)
    form = await request.form()
    kept = {name: form_text(form, name) for name in ("username", "first_name", "last_name")}
    password = form.get("password")
    values: dict[str, Any] = {**kept}
    if isinstance(password, str) and password:
        values["password"] = password
    try:
        item = HostedMailboxIn.model_validate(values)
        [result] = await hosted_mail.create_hosted_mailboxes(
            session, settings, keyring, domain, [item]
        )
    except (ValidationError, MailfleetError) as exc:
        return await refused(request, ctx, session, domain, "mailbox", exc, kept, MAILBOX_LABELS)
    if result.error:
        code = str(result.error.get("code", "CONFLICT"))
        return await domain_view(
            request,
            ctx,
            session,
            domain,
            status_code={"CONFLICT": 409, "NOT_FOUND": 404}.get(code, 403),
            errors={"mailbox": str(result.error.get("message", "refused"))},
            form=kept,
        )
    if result.password is None:
        return redirect(request, f"/domains/{domain.id}", f"{result.email} created")
    return await domain_view(
        request, ctx, session, domain, new_mailbox=result.email, new_password=result.password
    )


async def _hosted_mailbox(
    session: AsyncSession, ctx: ConsoleContext, domain: Domain, mailbox_id: str
) -> Mailbox:
    mailbox = await mailboxes.get_mailbox(session, ctx.workspace_id, mailbox_id)
    if mailbox.hosted_domain_id != domain.id:
        raise ConsoleError(404, f"{mailbox.email} is not a hosted mailbox of {domain.name}")
    return mailbox


@router.post("/domains/{domain_id}/mailboxes/{mailbox_id}/delete")
async def delete_hosted_mailbox(
    domain_id: str, mailbox_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    domain = await hosted_mail.get_hosted_domain(session, ctx.workspace_id, domain_id)
    mailbox = await _hosted_mailbox(session, ctx, domain, mailbox_id)
    email = mailbox.email
    remove_at = await mailboxes.remove_mailbox(session, mailbox)
    if remove_at is None:
        message = f"{email} deleted"
    else:
        message = f"{email} will be removed at the next renewal ({remove_at:%Y-%m-%d})"
    return redirect(request, f"/domains/{domain.id}", message)


@router.post("/domains/{domain_id}/mailboxes/{mailbox_id}/password", response_class=HTMLResponse)
async def reset_hosted_password(
    domain_id: str,
    mailbox_id: str,
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    keyring: KeyringDep,
) -> Response:
    """A new generated password, shown on this answer only; Dovecot takes it at the
    next login."""
    domain = await hosted_mail.get_hosted_domain(session, ctx.workspace_id, domain_id)
    mailbox = await _hosted_mailbox(session, ctx, domain, mailbox_id)
    password = await hosted_mail.update_hosted_mailbox(
        session, keyring, mailbox, HostedUpdateIn(reset_password=True)
    )
    return await domain_view(
        request, ctx, session, domain, new_mailbox=mailbox.email, new_password=password
    )


def _mailbox_ids(form: Any) -> list[str] | None:
    chosen = [value for value in form.getlist("mailbox_ids") if isinstance(value, str) and value]
    return chosen or None


@router.post("/domains/{domain_id}/email-forwarding", response_class=HTMLResponse)
async def email_forwarding(
    domain_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    """Forward the mail of the chosen hosted mailboxes (none chosen: all of them), or
    stop forwarding it (action=remove)."""
    domain = await hosted_mail.get_hosted_domain(session, ctx.workspace_id, domain_id)
    form = await request.form()
    ids = _mailbox_ids(form)
    kept = {"forward_to": form_text(form, "forward_to"), "keep_copy": form.get("keep_copy")}
    back = f"/domains/{domain.id}"
    try:
        if form_text(form, "action") == "remove":
            changed = await hosted_mail.remove_email_forwarding(session, domain, ids)
            return redirect(request, back, f"Forwarding removed from {changed} mailbox(es)")
        data = EmailForwardingIn.model_validate(
            {
                "forward_to": kept["forward_to"],
                "keep_copy": kept["keep_copy"] is not None,
                "mailbox_ids": ids,
            }
        )
        targets = await hosted_mail.set_email_forwarding(session, domain, data)
    except (ValidationError, MailfleetError) as exc:
        return await refused(
            request, ctx, session, domain, "email_forwarding", exc, kept, FORWARD_LABELS
        )
    return redirect(
        request, back, f"Mail to {len(targets)} mailbox(es) is forwarded to {data.forward_to}"
    )


@router.post("/domains/{domain_id}/catch-all", response_class=HTMLResponse)
async def catch_all(
    domain_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    """Send mail for addresses nobody owns to one address, or stop (action=remove)."""
    domain = await hosted_mail.get_hosted_domain(session, ctx.workspace_id, domain_id)
    form = await request.form()
    kept = {"destination": form_text(form, "destination")}
    back = f"/domains/{domain.id}"
    try:
        if form_text(form, "action") == "remove":
            await hosted_mail.remove_catch_all(session, domain)
            return redirect(request, back, "Catch-all removed")
        data = CatchAllIn.model_validate(kept)
        await hosted_mail.set_catch_all(session, domain, data.destination)
    except (ValidationError, MailfleetError) as exc:
        labels = {"destination": "Destination"}
        return await refused(request, ctx, session, domain, "catch_all", exc, kept, labels)
    return redirect(request, back, f"Mail to unknown addresses goes to {data.destination}")
