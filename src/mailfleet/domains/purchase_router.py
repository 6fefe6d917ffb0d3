"""Buying domains: availability, purchase orders, their payment links.

Included before the domains router: /v1/domains/available, /purchase,
/payment-link and /orders are not domain ids.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response, status
from pydantic import HttpUrl

from mailfleet.billing import wallet
from mailfleet.deps import (
    KeyringDep,
    SessionDep,
    SettingsDep,
    WorkspaceManageDep,
    WorkspaceReadDep,
)
from mailfleet.domains import purchases
from mailfleet.domains.providers import Env
from mailfleet.domains.purchase_schemas import (
    AvailabilityOut,
    AvailabilitySearchOut,
    OrderItemOut,
    OrderOut,
    PaymentLinkOut,
    PriceOut,
    PurchaseIn,
)
from mailfleet.kit.envelope import (
    WORKSPACE_ERRORS,
    Envelope,
    ErrorEnvelope,
    ListEnvelope,
    errors,
    ok,
)
from mailfleet.kit.idempotency import check_idempotency_key
from mailfleet.kit.pagination import PageDep
from mailfleet.models import DomainOrder, DomainOrderItem

router = APIRouter(prefix="/v1", tags=["domain purchases"], responses=WORKSPACE_ERRORS)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Send the same key and body again and get the same order (200), "
        "never a second one or a second charge",
    ),
]


async def _env(settings: SettingsDep, keyring: KeyringDep) -> Env:
    return Env(settings, keyring)


EnvDep = Annotated[Env, Depends(_env)]
# The registrar (or the payment provider) refused or failed: REGISTRAR_ERROR,
# PAYMENT_PROVIDER_ERROR.
UPSTREAM_ERROR: dict[int | str, dict[str, Any]] = {
    502: {"model": ErrorEnvelope, "description": "The registrar or payment provider failed"}
}


def _quote_out(item: purchases.NameQuote) -> AvailabilityOut:
    return AvailabilityOut(
        domain=item.name,
        unicode_name=item.unicode_name,
        available=item.available,
        premium=item.premium,
        price=PriceOut(amount=item.price, currency=item.currency, years=item.years)
        if item.price is not None
        else None,
        reason=item.reason,
        retry_after=item.retry_after,
    )


def _item_out(order: DomainOrder, item: DomainOrderItem) -> OrderItemOut:
    return OrderItemOut(
        id=item.id,
        domain=item.name,
        unicode_name=item.unicode_name,
        status=item.status,
        premium=item.premium,
        price=PriceOut(amount=item.price, currency=order.currency, years=order.years),
        reason=item.reason,
        new_price=PriceOut(amount=item.new_price, currency=order.currency, years=order.years)
        if item.new_price is not None
        else None,
        refunded=item.refunded,
        domain_id=item.domain_id,
        registered_at=item.registered_at,
        connected_at=item.connected_at,
    )


def order_out(order: DomainOrder, items: list[DomainOrderItem]) -> OrderOut:
    return OrderOut(
        id=order.id,
        status=order.status,
        registrar=order.registrar,
        years=order.years,
        dns_provider=order.dns_provider,
        mail_provider=order.mail_provider,
        auto_renew=order.auto_renew,
        total=order.total,
        currency=order.currency,
        charged=order.charged,
        payment_id=order.payment_id,
        items=[_item_out(order, item) for item in items],
        created_at=order.created_at,
        completed_at=order.completed_at,
    )


@router.get(
    "/domains/available",
    operation_id="domains.purchases:available",
    responses={**errors(409, 429), **UPSTREAM_ERROR},
)
async def available_domains(
    ctx: WorkspaceReadDep,
    settings: SettingsDep,
    query: Annotated[
        str | None, Query(max_length=63, description="A brand: checked under each of `tlds`")
    ] = None,
    tlds: Annotated[
        str | None, Query(max_length=200, description="Comma-separated TLDs (default com)")
    ] = None,
    domains: Annotated[
        str | None, Query(max_length=13000, description="Comma-separated names, instead of query")
    ] = None,
    years: Annotated[int, Query(ge=1, le=10)] = 1,
) -> Envelope[AvailabilitySearchOut]:
    """Availability and price of names (the registrar's price plus the markup), and
    a few look-alike suggestions built from the query that can be bought."""
    label, results, suggestions = await purchases.search(settings, query, tlds, domains, years)
    return ok(
        AvailabilitySearchOut(
            query=label,
            results=[_quote_out(item) for item in results],
            suggestions=[_quote_out(item) for item in suggestions],
        )
    )


@router.post(
    "/domains/purchase",
    operation_id="domains.purchases:create",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {
            "description": "An earlier request with this Idempotency-Key made the order",
            "model": Envelope[OrderOut],
        },
        **errors(409, 429),
        **UPSTREAM_ERROR,
    },
)
async def purchase_domains(
    body: PurchaseIn,
    response: Response,
    ctx: WorkspaceManageDep,
    session: SessionDep,
    env: EnvDep,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[OrderOut]:
    """Buy names: an order is made once every name is valid, available and priced.
    With billing on, the total is taken from the wallet, or the order waits for
    payment (GET /v1/domains/payment-link). Each name is then registered, connected
    and checked in the background. Honours Idempotency-Key."""
    key = check_idempotency_key(idempotency_key)
    order, created = await purchases.create_order(
        session, env, ctx.workspace_id, ctx.user.id, body, key
    )
    items = await purchases.order_items(session, order.id)
    if not created:
        response.status_code = status.HTTP_200_OK
        response.headers["idempotent-replayed"] = "true"
        return ok(order_out(order, items), "This Idempotency-Key already made this order")
    if order.status == "pending_payment":
        message = (
            "The wallet does not cover this order: pay it through "
            f"GET /v1/domains/payment-link?orderId={order.id}"
        )
    else:
        message = f"Buying {len(items)} domain(s); follow GET /v1/domains/orders/{order.id}"
    return ok(order_out(order, items), message)


@router.get(
    "/domains/payment-link",
    operation_id="domains.purchases:payment_link",
    responses={**errors(409), **UPSTREAM_ERROR},
)
async def domain_payment_link(
    ctx: WorkspaceManageDep,
    session: SessionDep,
    settings: SettingsDep,
    order_id: Annotated[str, Query(alias="orderId", min_length=1, max_length=24)],
    success_url: Annotated[HttpUrl | None, Query(alias="successUrl")] = None,
    cancel_url: Annotated[HttpUrl | None, Query(alias="cancelUrl")] = None,
) -> Envelope[PaymentLinkOut]:
    """A Stripe Checkout link for what the wallet lacks to pay a waiting order (the
    same link while it is open). Once paid, the order is charged and goes on."""
    provider = wallet.payment_provider(settings)
    order, payment = await purchases.payment_link(
        session,
        settings,
        provider,
        ctx.workspace,
        ctx.user,
        order_id,
        str(success_url) if success_url else None,
        str(cancel_url) if cancel_url else None,
    )
    return ok(
        PaymentLinkOut(
            order_id=order.id,
            payment_id=payment.id,
            amount=payment.amount,
            currency=payment.currency,
            status=payment.status,
            checkout_url=payment.checkout_url,
        )
    )


@router.get("/domains/orders", operation_id="domains.purchases:list")
async def list_orders(
    ctx: WorkspaceReadDep, session: SessionDep, page: PageDep
) -> ListEnvelope[OrderOut]:
    orders, total = await purchases.list_orders(session, ctx.workspace_id, page)
    items = await purchases.items_of(session, [order.id for order in orders])
    return ListEnvelope(
        data=[order_out(order, items[order.id]) for order in orders],
        pagination=page.describe(total),
    )


@router.get("/domains/orders/{order_id}", operation_id="domains.purchases:get")
async def get_order(
    order_id: str, ctx: WorkspaceReadDep, session: SessionDep
) -> Envelope[OrderOut]:
    order = await purchases.get_order(session, ctx.workspace_id, order_id)
    return ok(order_out(order, await purchases.order_items(session, order.id)))
