"""Console billing page: the wallet, its movements, subscriptions and invoices; owners
and admins top up (Stripe Checkout, or a payment a superuser records by hand),
subscribe, cancel a subscription and take the cancellation back."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError

from mailfleet.billing import invoices, plans, subscriptions, wallet
from mailfleet.billing.money import format_amount, minor_unit_digits
from mailfleet.billing.schemas import SubscriptionCreate, SubscriptionUpdate, TopUpIn
from mailfleet.console.context import (
    ConsoleError,
    ConsoleRoute,
    ContextDep,
    redirect,
    render,
    undo,
)
from mailfleet.console.forms import form_number, form_text, validation_message
from mailfleet.deps import SessionDep, SettingsDep
from mailfleet.kit.errors import MailfleetError
from mailfleet.kit.pagination import Page
from mailfleet.models import PaymentStatus, SubscriptionStatus

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

SHOWN = 20
LABELS: Final = {
    "amount": "Amount",
    "planId": "Plan",
    "quantity": "Mailboxes",
    "note": "Reference",
    "successUrl": "Return address",
}


async def _page(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    settings: SettingsDep,
    *,
    status_code: int = 200,
    **values: Any,
) -> Response:
    if not plans.billing_enabled(settings):
        return render(request, "billing.html", ctx, status_code=status_code, enabled=False)
    page = Page(limit=SHOWN, skip=0)
    found = await wallet.summary(session, settings, ctx.workspace_id)
    entries, _ = await wallet.list_entries(session, ctx.workspace_id, page)
    rows, _ = await subscriptions.list_subscriptions(session, ctx.workspace_id, page)
    bills, _ = await invoices.list_invoices(session, ctx.workspace_id, page)
    offered, _ = await plans.list_plans(session, Page(limit=100, skip=0), include_inactive=False)
    views = [await subscriptions.view(session, row) for row in rows]
    currency = found.account.currency
    return render(
        request,
        "billing.html",
        ctx,
        status_code=status_code,
        enabled=True,
        balance=format_amount(found.balance, currency),
        currency=currency,
        entries=entries,
        subscriptions=views,
        live=any(v.subscription.status != SubscriptionStatus.CANCELED for v in views),
        plans=offered,
        invoices=bills,
        money=format_amount,
        hosted_checkout=settings.payment_provider == "stripe",
        paid=request.query_params.get("paid") == "1",
        **{"form": {}, **values},
    )


@router.get("/billing", response_class=HTMLResponse)
async def billing_page(
    request: Request, ctx: ContextDep, session: SessionDep, settings: SettingsDep
) -> Response:
    return await _page(request, ctx, session, settings)


def _require_manage(ctx: ContextDep) -> None:
    # As the API: owners and admins manage billing; members and viewers read it.
    if not ctx.can_manage:
        raise ConsoleError(403, "Only the workspace's owners and admins manage its billing")


def _minor_units(text: str, currency: str) -> int | str:
    """ "25" or "25.50" in the wallet's currency as minor units; anything else as typed,
    for validation to name."""
    digits = minor_unit_digits(currency)
    try:
        value = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return text
    scaled = value.scaleb(digits)
    if not value.is_finite() or scaled != scaled.to_integral_value():
        return text
    return int(scaled)


@router.post("/billing/top-up", response_class=HTMLResponse)
async def top_up(
    request: Request, ctx: ContextDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """Stripe: a pending payment and off to its Checkout page (the webhook credits the
    wallet). Manual: a superuser records money received, credited at once."""
    _require_manage(ctx)
    form = await request.form()
    kept = {"amount": form_text(form, "amount"), "note": form_text(form, "note")}

    async def again(status_code: int, message: str) -> Response:
        # The pending payment written before the provider failed goes too.
        await undo(session, ctx)
        return await _page(
            request, ctx, session, settings, status_code=status_code, form=kept, topup_error=message
        )

    currency = settings.billing_currency
    amount = _minor_units(kept["amount"], currency) if kept["amount"] else None
    if isinstance(amount, str) or amount is None:
        return await again(400, f"Amount: enter an amount in {currency}, such as 25.00")
    back = str(request.base_url) + "billing"
    try:
        data = TopUpIn.model_validate(
            {
                "amount": amount,
                "note": kept["note"] or None,
                "successUrl": back + "?paid=1",
                "cancelUrl": back,
            }
        )
        provider = wallet.payment_provider(settings)
        payment = await wallet.start_topup(
            session, settings, provider, ctx.workspace, ctx.user, data
        )
    except ValidationError as exc:
        return await again(400, validation_message(exc, LABELS))
    except MailfleetError as exc:
        return await again(exc.status_code, exc.message)
    if payment.status == PaymentStatus.SUCCEEDED:
        done = format_amount(payment.amount, payment.currency)
        return redirect(request, "/billing", f"{done} recorded; the wallet is credited")
    if not payment.checkout_url:
        return await again(502, "The payment provider gave no checkout page; try again")
    # Off to the provider's page; it sends the browser back to /billing.
    return RedirectResponse(payment.checkout_url, status_code=303)


@router.post("/billing/subscriptions", response_class=HTMLResponse)
async def subscribe(
    request: Request, ctx: ContextDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """Subscribe to seats on a plan; the first period is paid from the wallet now."""
    _require_manage(ctx)
    form = await request.form()
    kept = {"plan_id": form_text(form, "plan_id"), "quantity": form_text(form, "quantity")}
    try:
        data = SubscriptionCreate.model_validate(
            {"planId": kept["plan_id"], "quantity": form_number(form, "quantity", 1)}
        )
        subscription = await subscriptions.create_subscription(
            session, settings, ctx.workspace_id, data, user_id=ctx.user.id
        )
    except (ValidationError, MailfleetError) as exc:
        if isinstance(exc, ValidationError):
            status_code, message = 400, validation_message(exc, LABELS)
        else:
            status_code, message = exc.status_code, exc.message
        # The subscription row is written before its first period is charged: a
        # wallet that cannot pay takes it back.
        await undo(session, ctx)
        return await _page(
            request,
            ctx,
            session,
            settings,
            status_code=status_code,
            form=kept,
            subscribe_error=message,
        )
    return redirect(
        request,
        "/billing",
        f"Subscribed to {subscription.quantity} mailboxes; paid from the wallet",
    )


@router.post("/billing/subscriptions/{subscription_id}/{action}")
async def subscription_action(
    subscription_id: str,
    action: str,
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """Cancel at the end of the paid period, or take that cancellation back."""
    _require_manage(ctx)
    subscription = await subscriptions.get_subscription(session, ctx.workspace_id, subscription_id)
    try:
        if action == "cancel":
            await subscriptions.cancel_subscription(session, settings, subscription)
            message = "Subscription canceled; it stays active until the end of the paid period"
        elif action == "resume":
            await subscriptions.change_subscription(
                session,
                settings,
                subscription,
                SubscriptionUpdate(cancel_at_period_end=False),
                user_id=ctx.user.id,
            )
            message = "Subscription kept: it renews at the end of the period"
        else:
            raise ConsoleError(404, f"No action {action!r}")
    except MailfleetError as exc:
        await undo(session, ctx)
        return redirect(request, "/billing", exc.message, "error")
    return redirect(request, "/billing", message)


@router.get("/billing/invoices/{invoice_id}", response_class=HTMLResponse)
async def invoice_page(
    invoice_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> HTMLResponse:
    """The printable invoice, as GET /v1/billing/invoices/{id}.html renders it."""
    invoice = await invoices.get_invoice(session, ctx.workspace_id, invoice_id)
    return HTMLResponse(invoices.render_invoice_html(invoice, ctx.workspace.name))
