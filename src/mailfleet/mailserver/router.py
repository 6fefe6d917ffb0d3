"""Hosted mailboxes of a self-hosted domain, its email forwarding and its catch-all."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from mailfleet.deps import KeyringDep, SessionDep, SettingsDep, WorkspaceWriteDep
from mailfleet.kit.envelope import WORKSPACE_ERRORS, Envelope, errors, ok
from mailfleet.kit.errors import ValidationFailed
from mailfleet.mailserver import service
from mailfleet.mailserver.schemas import (
    MAX_ITEMS,
    CatchAllIn,
    CatchAllOut,
    EmailForwardingIn,
    HostedMailboxesIn,
    HostedMailboxesOut,
    HostedMailboxIn,
    HostedMailOut,
)

router = APIRouter(prefix="/v1", tags=["hosted mail"], responses=WORKSPACE_ERRORS)


def _parse_items(body: Any) -> list[HostedMailboxIn]:
    """One object, or `{"mailboxes": [...]}`; any invalid item fails the request (400
    naming it, e.g. `mailboxes.3.username`) before anything is created."""
    if isinstance(body, dict) and "mailboxes" in body:
        items = body.get("mailboxes")
        if isinstance(items, list) and len(items) > MAX_ITEMS:
            raise ValidationFailed.for_field(
                "mailboxes", f"at most {MAX_ITEMS} mailboxes per request, not {len(items)}"
            )
        model: type[HostedMailboxIn] | type[HostedMailboxesIn] = HostedMailboxesIn
    else:
        model = HostedMailboxIn
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors, body=None) from None
    return parsed.mailboxes if isinstance(parsed, HostedMailboxesIn) else [parsed]


_MAILBOX_EXAMPLE: dict[str, Any] = {"username": "alice", "firstName": "Alice", "lastName": "Ng"}


@router.post(
    "/domains/{domain_id}/mailboxes",
    operation_id="hosted_mail:create_mailboxes",
    status_code=status.HTTP_201_CREATED,
    # The single-mailbox refusal is answered as an error envelope of its own.
    response_model=Envelope[HostedMailboxesOut],
    responses=errors(409),
)
async def assign_mailboxes(
    domain_id: str,
    body: Annotated[
        Any,
        Body(
            description="One mailbox, or {mailboxes: [...]} (up to 1,000)",
            examples=[_MAILBOX_EXAMPLE, {"mailboxes": [_MAILBOX_EXAMPLE]}],
        ),
    ],
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    settings: SettingsDep,
    keyring: KeyringDep,
) -> Envelope[HostedMailboxesOut] | JSONResponse:
    """Create hosted mailboxes: active at once, on Mailfleet's own mail server.

    A password Mailfleet generated is in this response only."""
    items = _parse_items(body)
    domain = await service.get_hosted_domain(session, ctx.workspace_id, domain_id)
    results = await service.create_hosted_mailboxes(session, settings, keyring, domain, items)
    counts = service.summary(results)
    data = HostedMailboxesOut(summary=counts, results=results)
    if counts["created"] == 0 and len(results) == 1 and results[0].error:
        error = results[0].error
        code = str(error.get("code", "CONFLICT"))
        status_code = {"CONFLICT": 409, "NOT_FOUND": 404}.get(code, 403)
        return JSONResponse({"success": False, "error": error}, status_code=status_code)
    message = f"{counts['created']} of {counts['total']} mailboxes created"
    return ok(data, message)


@router.post(
    "/domains/{domain_id}/email-forwarding",
    operation_id="hosted_mail:set_forwarding",
)
async def enable_email_forwarding(
    domain_id: str, body: EmailForwardingIn, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[HostedMailOut | None]:
    domain = await service.get_hosted_domain(session, ctx.workspace_id, domain_id)
    changed = await service.set_email_forwarding(session, domain, body)
    return ok(
        await service.hosted_mail(session, domain),
        f"Mail to {len(changed)} mailboxes is forwarded to {body.forward_to}",
    )


@router.delete(
    "/domains/{domain_id}/email-forwarding", operation_id="hosted_mail:remove_forwarding"
)
async def remove_email_forwarding(
    domain_id: str,
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    mailbox_ids: Annotated[
        str | None,
        Query(alias="mailboxIds", description="Comma-separated; default: every mailbox"),
    ] = None,
) -> Envelope[HostedMailOut | None]:
    domain = await service.get_hosted_domain(session, ctx.workspace_id, domain_id)
    ids = [part.strip() for part in mailbox_ids.split(",") if part.strip()] if mailbox_ids else None
    changed = await service.remove_email_forwarding(session, domain, ids)
    return ok(await service.hosted_mail(session, domain), f"Forwarding removed from {changed}")


@router.post("/domains/{domain_id}/catch-all", operation_id="hosted_mail:set_catch_all")
async def enable_catch_all(
    domain_id: str, body: CatchAllIn, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[CatchAllOut]:
    domain = await service.get_hosted_domain(session, ctx.workspace_id, domain_id)
    await service.set_catch_all(session, domain, body.destination)
    return ok(CatchAllOut(destination=body.destination), "Catch-all enabled")


@router.delete("/domains/{domain_id}/catch-all", operation_id="hosted_mail:remove_catch_all")
async def remove_catch_all(
    domain_id: str, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[None]:
    domain = await service.get_hosted_domain(session, ctx.workspace_id, domain_id)
    await service.remove_catch_all(session, domain)
    return ok(None, "Catch-all removed")
