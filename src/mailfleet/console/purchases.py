"""Console pages for buying domains: search names (availability and price), buy
them (owners and admins, as the API), the orders and one order followed live, and
the payment link of an order the wallet cannot cover.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from mailfleet.billing import wallet
from mailfleet.billing.money import format_amount
from mailfleet.console.context import ConsoleError, ConsoleRoute, ContextDep, redirect, render
from mailfleet.console.forms import form_text, validation_message
from mailfleet.deps import KeyringDep, SessionDep, SettingsDep
from mailfleet.domains import purchases
from mailfleet.domains.providers import Env
from mailfleet.domains.purchase_schemas import PurchaseIn
from mailfleet.kit.errors import MailfleetError
from mailfleet.kit.idempotency import check_idempotency_key
from mailfleet.kit.pagination import Page
from mailfleet.models import DomainOrder, DomainOrderItem, OrderStatus

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

ORDERS_SHOWN: Final = 50
CONTACT_FIELDS: Final = (
    "first_name",
    "last_name",
    "organization",
    "address1",
    "address2",
    "city",
    "state_province",
    "postal_code",
    "country",
    "phone",
    "email",
)
PURCHASE_LABELS: Final = {
    "domains": "Domains",
    "years": "Years",
    "dns_provider": "DNS",
    "mail_provider": "Mail",
    **{f"contact.{name}": f"Registrant {name.replace('_', ' ')}" for name in CONTACT_FIELDS},
}


async def _env(settings: SettingsDep, keyring: KeyringDep) -> Env:
    return Env(settings, keyring)


EnvDep = Annotated[Env, Depends(_env)]


def _years(text: str | None) -> int:
    return int(text) if text and text.isdigit() and 1 <= int(text) <= 10 else 1


async def _buy_page(
    request: Request,
    ctx: ContextDep,
    settings: SettingsDep,
    *,
    query: str = "",
    tlds: str = "",
    names: str = "",
    years: int = 1,
    chosen: list[str] | None = None,
    status_code: int = 200,
    **values: Any,
) -> Response:
    """The search form, and the answers when a query (or names) was given."""
    results: list[purchases.NameQuote] = []
    suggestions: list[purchases.NameQuote] = []
    search_error = None
    if query or names:
        try:
            _, results, suggestions = await purchases.search(
                settings, query or None, tlds or None, names or None, years
            )
        except MailfleetError as exc:
            search_error = exc.message
            status_code = status_code if status_code != 200 else exc.status_code
    return render(
        request,
        "domain_buy.html",
        ctx,
        status_code=status_code,
        query=query,
        tlds=tlds,
        years=years,
        results=results,
        suggestions=suggestions,
        search_error=search_error,
        chosen=set(chosen or []),
        money=format_amount,
        # A fresh key per form: pressing Buy twice makes one order, not a 409.
        order_key=secrets.token_urlsafe(18),
        **values,
    )


@router.get("/domains/buy", response_class=HTMLResponse)
async def buy_page(
    request: Request,
    ctx: ContextDep,
    settings: SettingsDep,
    query: Annotated[str | None, Query(max_length=63)] = None,
    tlds: Annotated[str | None, Query(max_length=200)] = None,
    years: Annotated[str | None, Query(max_length=2)] = None,
) -> Response:
    return await _buy_page(
        request, ctx, settings, query=(query or "").strip(), tlds=tlds or "", years=_years(years)
    )


def _contact(form: FormData) -> dict[str, str] | None:
    contact = {name: form_text(form, f"contact_{name}") for name in CONTACT_FIELDS}
    if not any(contact.values()):
        return None
    return {name: value for name, value in contact.items() if value}


@router.post("/domains/orders", response_class=HTMLResponse)
async def buy_domains(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    settings: SettingsDep,
    env: EnvDep,
) -> Response:
    if not ctx.can_manage:
        raise ConsoleError(403, "Only the workspace's owners and admins buy domains")
    form = await request.form()
    names = [value.strip() for value in form.getlist("domains") if isinstance(value, str)]
    names = [name for name in names if name]
    years = _years(form_text(form, "years"))
    kept = {
        "dns_provider": form_text(form, "dns_provider"),
        "mail_provider": form_text(form, "mail_provider"),
        "auto_renew": form.get("auto_renew") is not None,
        "allow_premium": form.get("allow_premium") is not None,
        **{f"contact_{name}": form_text(form, f"contact_{name}") for name in CONTACT_FIELDS},
    }
    if not names:
        return await _buy_page(
            request,
            ctx,
            settings,
            query=form_text(form, "query"),
            tlds=form_text(form, "tlds"),
            years=years,
            status_code=400,
            buy_error="Tick at least one name to buy.",
            form=kept,
        )
    try:
        key = check_idempotency_key(form_text(form, "order_key") or None)
        data = PurchaseIn.model_validate(
            {
                "domains": names,
                "years": years,
                "dns_provider": kept["dns_provider"] or "mailfleet",
                "mail_provider": kept["mail_provider"] or "self-hosted",
                "auto_renew": kept["auto_renew"],
                "allow_premium": kept["allow_premium"],
                "contact": _contact(form),
            }
        )
        order, _ = await purchases.create_order(
            session, env, ctx.workspace_id, ctx.user.id, data, key
        )
    except (ValidationError, MailfleetError) as exc:
        if isinstance(exc, ValidationError):
            status_code, message = 400, validation_message(exc, PURCHASE_LABELS)
        else:
            status_code, message = exc.status_code, exc.message
        # The names again, ticked, so the choice is not lost (their quotes are cached).
        return await _buy_page(
            request,
            ctx,
            settings,
            names=",".join(names),
            years=years,
            chosen=names,
            status_code=status_code,
            buy_error=message,
            form=kept,
        )
    if order.status == OrderStatus.PENDING_PAYMENT:
        message = "The wallet does not cover this order: pay the rest to go on"
    else:
        message = f"Buying {', '.join(names)}"
    return redirect(request, f"/domains/orders/{order.id}", message)


@router.get("/domains/orders", response_class=HTMLResponse)
async def order_list(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    orders, total = await purchases.list_orders(
        session, ctx.workspace_id, Page(limit=ORDERS_SHOWN, skip=0)
    )
    items = await purchases.items_of(session, [order.id for order in orders])
    return render(
        request,
        "domain_orders.html",
        ctx,
        orders=orders,
        items=items,
        total=total,
        money=format_amount,
    )


async def _order(
    session: SessionDep, ctx: ContextDep, order_id: str
) -> tuple[DomainOrder, list[DomainOrderItem]]:
    order = await purchases.get_order(session, ctx.workspace_id, order_id)
    return order, await purchases.order_items(session, order.id)


@router.get("/domains/orders/{order_id}", response_class=HTMLResponse)
async def order_page(
    order_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    order, items = await _order(session, ctx, order_id)
    return render(request, "domain_order.html", ctx, order=order, items=items, money=format_amount)


@router.get("/domains/orders/{order_id}/progress", response_class=HTMLResponse)
async def order_progress(
    order_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    """The order's panel alone, which htmx polls until the order completes."""
    order, items = await _order(session, ctx, order_id)
    return render(
        request, "_order_progress.html", ctx, order=order, items=items, money=format_amount
    )


@router.post("/domains/orders/{order_id}/pay")
async def pay_order(
    order_id: str,
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    """To the payment provider's checkout for what the wallet lacks; it comes back to
    the order, which goes on once the payment arrives."""
    if not ctx.can_manage:
        raise ConsoleError(403, "Only the workspace's owners and admins pay for domains")
    back = f"/domains/orders/{order_id}"
    here = str(request.base_url).rstrip("/") + back
    try:
        provider = wallet.payment_provider(settings)
        _, payment = await purchases.payment_link(
            session, settings, provider, ctx.workspace, ctx.user, order_id, here, here
        )
    except MailfleetError as exc:
        # Money came in meanwhile and the order is paid: news, not a failure.
        paid = exc.extra.get("orderStatus") == OrderStatus.PROCESSING
        return redirect(request, back, exc.message, "notice" if paid else "error")
    if not payment.checkout_url:
        return redirect(request, back, "The payment provider gave no checkout link", "error")
    return RedirectResponse(payment.checkout_url, status_code=303)
