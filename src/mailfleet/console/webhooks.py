"""Console pages for webhooks: endpoints, a new one (secret shown once), deliveries, retry."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from mailfleet.console.context import ConsoleRoute, ContextDep, redirect, render, undo
from mailfleet.console.forms import form_text, validation_message
from mailfleet.deps import KeyringDep, SessionDep, SettingsDep
from mailfleet.kit.errors import MailfleetError
from mailfleet.kit.pagination import Page
from mailfleet.webhooks import events
from mailfleet.webhooks import service as webhooks
from mailfleet.webhooks.schemas import WebhookCreate

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

SHOWN = 100


async def _page(request: Request, ctx: ContextDep, session: SessionDep, **values: Any) -> Response:
    endpoints, total = await webhooks.list_endpoints(
        session, ctx.workspace_id, Page(limit=SHOWN, skip=0)
    )
    return render(
        request,
        "webhooks.html",
        ctx,
        endpoints=endpoints,
        total=total,
        event_types=sorted(events.EVENT_TYPES),
        **values,
    )


@router.get("/webhooks", response_class=HTMLResponse)
async def webhooks_page(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    return await _page(request, ctx, session)


@router.post("/webhooks", response_class=HTMLResponse)
async def add_webhook(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Response:
    form = await request.form()
    chosen = [value for value in form.getlist("event_types") if isinstance(value, str)]
    try:
        data = WebhookCreate.model_validate(
            {
                "url": form_text(form, "url"),
                "description": form_text(form, "description"),
                "event_types": chosen or None,
            }
        )
        endpoint, secret = await webhooks.create_endpoint(
            session, keyring, settings, ctx.workspace_id, data
        )
    except ValidationError as exc:
        message = validation_message(exc, {"url": "URL", "event_types": "Events"})
        return redirect(request, "/webhooks", message, "error")
    except MailfleetError as exc:
        await undo(session, ctx)
        return redirect(request, "/webhooks", exc.message, "error")
    # The signing secret is shown on this answer only: never in a redirect or a cookie.
    return await _page(request, ctx, session, new_secret=secret, new_url=endpoint.url)


@router.get("/webhooks/{webhook_id}", response_class=HTMLResponse)
async def webhook_page(
    webhook_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    endpoint = await webhooks.get_endpoint(session, ctx.workspace_id, webhook_id)
    deliveries, total = await webhooks.list_deliveries(session, endpoint, Page(limit=SHOWN, skip=0))
    return render(
        request, "webhook.html", ctx, endpoint=endpoint, deliveries=deliveries, total=total
    )


@router.post("/webhooks/{webhook_id}/{action}")
async def webhook_action(
    webhook_id: str, action: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    endpoint = await webhooks.get_endpoint(session, ctx.workspace_id, webhook_id)
    back = f"/webhooks/{endpoint.id}"
    form = await request.form()
    try:
        if action == "test":
            await webhooks.send_test_event(session, endpoint)
            return redirect(request, back, "Test event sent")
        if action == "retry":
            delivery = await webhooks.get_delivery(
                session, endpoint, form_text(form, "delivery_id")
            )
            await webhooks.retry_delivery(session, endpoint, delivery)
            return redirect(request, back, "Delivery queued again")
        if action == "delete":
            await webhooks.delete_endpoint(session, endpoint)
            return redirect(request, "/webhooks", f"Webhook {endpoint.url} deleted")
    except MailfleetError as exc:
        await undo(session, ctx)
        return redirect(request, back, exc.message, "error")
    return redirect(request, back, f"No action {action!r}", "error")
