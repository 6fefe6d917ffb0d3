"""Console billing page: the wallet, its movements, subscriptions and invoices."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mailfleet.billing import invoices, plans, subscriptions, wallet
from mailfleet.billing.money import format_amount
from mailfleet.console.context import ConsoleRoute, ContextDep, render
from mailfleet.deps import SessionDep, SettingsDep
from mailfleet.kit.pagination import Page

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

SHOWN = 20


@router.get("/billing", response_class=HTMLResponse)
async def billing_page(
    request: Request, ctx: ContextDep, session: SessionDep, settings: SettingsDep
) -> Response:
    if not plans.billing_enabled(settings):
        return render(request, "billing.html", ctx, enabled=False)
    page = Page(limit=SHOWN, skip=0)
    found = await wallet.summary(session, settings, ctx.workspace_id)
    entries, _ = await wallet.list_entries(session, ctx.workspace_id, page)
    rows, _ = await subscriptions.list_subscriptions(session, ctx.workspace_id, page)
    bills, _ = await invoices.list_invoices(session, ctx.workspace_id, page)
    return render(
        request,
        "billing.html",
        ctx,
        enabled=True,
        balance=format_amount(found.balance, found.account.currency),
        entries=entries,
        subscriptions=[await subscriptions.view(session, row) for row in rows],
        invoices=bills,
        money=format_amount,
    )


@router.get("/billing/invoices/{invoice_id}", response_class=HTMLResponse)
async def invoice_page(
    invoice_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> HTMLResponse:
    """The printable invoice, as GET /v1/billing/invoices/{id}.html renders it."""
    invoice = await invoices.get_invoice(session, ctx.workspace_id, invoice_id)
    return HTMLResponse(invoices.render_invoice_html(invoice, ctx.workspace.name))
