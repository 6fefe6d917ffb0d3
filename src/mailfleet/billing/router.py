"""Billing endpoints: plans, subscriptions, the wallet, invoices, billing details,
and Stripe's webhook.

Owners and admins of a workspace manage its billing; members and viewers read.
Superusers manage plans, grant credit, record manual payments, and may act on
any workspace's billing by naming it in `x-workspace-id`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from mailfleet.billing import invoices, plans, subscriptions, wallet
from mailfleet.billing.money import format_amount
from mailfleet.billing.payments.stripe import StripeProvider
from mailfleet.billing.schemas import (
    AutoRechargeIn,
    AutoRechargeOut,
    BillingDetailsIn,
    BillingDetailsOut,
    CreditIn,
    CreditOut,
    InvoiceLineOut,
    InvoiceOut,
    LedgerEntryOut,
    PaymentOut,
    PlanCreate,
    PlanOut,
    PlanUpdate,
    ProrationOut,
    StripeWebhookOut,
    SubscriptionChangeOut,
    SubscriptionCreate,
    SubscriptionOut,
    SubscriptionUpdate,
    TopUpIn,
    TopUpOut,
    WalletOut,
)
from mailfleet.deps import (
    ActorDep,
    SessionDep,
    SettingsDep,
    SuperuserDep,
    WorkspaceContext,
    workspace_permission,
)
from mailfleet.kit.envelope import AUTH_ERRORS, WORKSPACE_ERRORS, Envelope, ListEnvelope, errors, ok
from mailfleet.kit.errors import NotFound, ValidationFailed
from mailfleet.kit.idempotency import check_idempotency_key
from mailfleet.kit.pagination import PageDep
from mailfleet.models.billing import Invoice, Payment, PaymentStatus, Plan, WalletEntry

router = APIRouter()

# Billing stores its keys in a longer column (IdempotentRequest.key) than other areas.
MAX_BILLING_IDEMPOTENCY_KEY = 255

# A workspace's billing as usual, except that a superuser's user credential may
# name any workspace in x-workspace-id and manages it.
BillingReadDep = Annotated[
    WorkspaceContext, Depends(workspace_permission("read", superuser_reach=True))
]
BillingManageDep = Annotated[
    WorkspaceContext, Depends(workspace_permission("manage", superuser_reach=True))
]
BillingSuperuserDep = Annotated[
    WorkspaceContext, Depends(workspace_permission("superuser", superuser_reach=True))
]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Retry safely: the same key and request get the stored answer, once charged",
    ),
]


async def idempotent(
    request: Request,
    session: SessionDep,
    workspace_id: str,
    key: str | None,
    body: BaseModel | None,
    run: Callable[[], Awaitable[tuple[int, Envelope[Any]]]],
) -> JSONResponse:
    """Run a money-moving request once per Idempotency-Key: a retry with the same
    key and the same request gets the stored answer (and `idempotent-replayed:
    true`); the same key with another request is a 400.

    The answer is rendered here, not by FastAPI, because it is stored as JSON for
    the replay: the route's response_model documents it."""
    key = check_idempotency_key(key, max_length=MAX_BILLING_IDEMPOTENCY_KEY)
    if key is None:
        status_code, answer = await run()
        return JSONResponse(_json(answer), status_code=status_code)
    canonical = json.dumps(
        {
            "method": request.method,
            "path": request.url.path,
            "body": body.model_dump(mode="json") if body is not None else None,
        },
        sort_keys=True,
    )
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
    stored = await wallet.claim_idempotency_key(session, workspace_id, key, fingerprint)
    if stored is not None:
        return JSONResponse(
            stored.body, status_code=stored.status_code, headers={"idempotent-replayed": "true"}
        )
    status_code, answer = await run()
    content = _json(answer)
    await wallet.store_idempotent_response(session, workspace_id, key, status_code, content)
    return JSONResponse(content, status_code=status_code)


def _json(answer: Envelope[Any]) -> dict[str, Any]:
    content: dict[str, Any] = answer.model_dump(mode="json", by_alias=True)
    return content


# Shapes


def plan_out(plan: Plan, *, builtin: bool = False) -> PlanOut:
    return PlanOut(
        id=plan.id,
        name=plan.name,
        description=plan.description,
        price_per_mailbox=plan.price_per_mailbox,
        currency=plan.currency,
        period=plan.period,
        max_mailboxes=plan.max_mailboxes,
        max_domains=plan.max_domains,
        active=plan.active,
        builtin=builtin,
        created_at=None if builtin else plan.created_at,
        updated_at=None if builtin else plan.updated_at,
    )


def subscription_out(view: subscriptions.SubscriptionView) -> SubscriptionOut:
    subscription, plan = view.subscription, view.plan
    return SubscriptionOut(
        id=subscription.id,
        plan_id=plan.id,
        plan_name=plan.name,
        status=subscription.status,
        quantity=subscription.quantity,
        unit_amount=subscription.unit_amount,
        amount=subscription.unit_amount * subscription.quantity,
        next_renewal_amount=plan.price_per_mailbox * subscription.quantity,
        currency=plan.currency,
        period=plan.period,
        current_period_start=subscription.current_period_start,
        current_period_end=subscription.current_period_end,
        cancel_at_period_end=subscription.cancel_at_period_end,
        canceled_at=subscription.canceled_at,
        ended_at=subscription.ended_at,
        past_due_since=subscription.past_due_since,
        suspended_at=subscription.suspended_at,
        scheduled_removals=view.scheduled_removals,
        created_at=subscription.created_at,
        updated_at=subscription.updated_at,
    )


def self_hosted_subscription(ctx: WorkspaceContext, settings: Any) -> SubscriptionOut:
    plan = plans.self_hosted_plan(settings)
    return SubscriptionOut(
        id=plans.SELF_HOSTED_PLAN_ID,
        plan_id=plan.id,
        plan_name=plan.name,
        status="active",
        quantity=None,
        unit_amount=0,
        amount=0,
        next_renewal_amount=0,
        currency=plan.currency,
        period=plan.period,
        current_period_start=None,
        current_period_end=None,
        cancel_at_period_end=False,
        canceled_at=None,
        ended_at=None,
        past_due_since=None,
        suspended_at=None,
        created_at=ctx.workspace.created_at,
        updated_at=None,
    )


def payment_out(payment: Payment) -> PaymentOut:
    return PaymentOut.model_validate(payment)


def entry_out(entry: WalletEntry) -> LedgerEntryOut:
    return LedgerEntryOut.model_validate(entry)


def invoice_out(invoice: Invoice) -> InvoiceOut:
    return InvoiceOut(
        id=invoice.id,
        number=invoice.number,
        kind=invoice.kind,
        status=invoice.status,
        currency=invoice.currency,
        lines=[InvoiceLineOut.model_validate(line) for line in invoice.lines],
        subtotal=invoice.subtotal,
        total=invoice.total,
        bill_to=invoice.bill_to,
        subscription_id=invoice.subscription_id,
        payment_id=invoice.payment_id,
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        issued_at=invoice.issued_at,
        paid_at=invoice.paid_at,
        html_url=f"/v1/billing/invoices/{invoice.id}.html",
    )


# Plans


@router.get("/v1/plans", operation_id="plans:list", tags=["billing"], responses=errors(401))
async def list_plans(
    actor: ActorDep,
    session: SessionDep,
    settings: SettingsDep,
    page: PageDep,
    include_inactive: Annotated[bool, Query(alias="includeInactive")] = False,
) -> ListEnvelope[PlanOut]:
    """Plans on offer (superusers may add `includeInactive=true`). With billing off
    the built-in unlimited "self-hosted" plan comes first."""
    everything = include_inactive and actor.user.is_superuser
    offered, total = await plans.list_plans(session, page, include_inactive=everything)
    data = [plan_out(plan) for plan in offered]
    if not plans.billing_enabled(settings):
        data.insert(0, plan_out(plans.self_hosted_plan(settings), builtin=True))
        total += 1
    return ListEnvelope(data=data, pagination=page.describe(total))


@router.post(
    "/v1/plans",
    operation_id="plans:create",
    status_code=status.HTTP_201_CREATED,
    tags=["billing"],
    responses={**AUTH_ERRORS, **errors(409)},
)
async def create_plan(
    body: PlanCreate, actor: SuperuserDep, session: SessionDep, settings: SettingsDep
) -> Envelope[PlanOut]:
    return ok(plan_out(await plans.create_plan(session, settings, body)), "Plan created")


@router.get(
    "/v1/plans/{plan_id}", operation_id="plans:get", tags=["billing"], responses=errors(401, 404)
)
async def get_plan(
    plan_id: str, actor: ActorDep, session: SessionDep, settings: SettingsDep
) -> Envelope[PlanOut]:
    if plan_id == plans.SELF_HOSTED_PLAN_ID:
        return ok(plan_out(plans.self_hosted_plan(settings), builtin=True))
    return ok(plan_out(await plans.get_plan(session, plan_id)))


@router.put(
    "/v1/plans/{plan_id}",
    operation_id="plans:update",
    tags=["billing"],
    responses={**AUTH_ERRORS, **errors(404, 409)},
)
async def update_plan(
    plan_id: str, body: PlanUpdate, actor: SuperuserDep, session: SessionDep
) -> Envelope[PlanOut]:
    plan = await plans.get_plan(session, plan_id)
    return ok(plan_out(await plans.update_plan(session, plan, body)), "Plan updated")


# Subscriptions


@router.get(
    "/v1/subscriptions",
    operation_id="subscriptions:list",
    tags=["subscriptions"],
    responses=WORKSPACE_ERRORS,
)
async def list_subscriptions(
    ctx: BillingReadDep, session: SessionDep, settings: SettingsDep, page: PageDep
) -> ListEnvelope[SubscriptionOut]:
    """The workspace's subscriptions, newest first. With billing off: the built-in
    self-hosted one."""
    if not plans.billing_enabled(settings):
        data = [self_hosted_subscription(ctx, settings)] if page.skip == 0 else []
        return ListEnvelope(data=data, pagination=page.describe(1))
    rows, total = await subscriptions.list_subscriptions(session, ctx.workspace_id, page)
    data = [subscription_out(await subscriptions.view(session, row)) for row in rows]
    return ListEnvelope(data=data, pagination=page.describe(total))


@router.post(
    "/v1/subscriptions",
    operation_id="subscriptions:create",
    status_code=status.HTTP_201_CREATED,
    tags=["subscriptions"],
    response_model=Envelope[SubscriptionOut],
    responses={**WORKSPACE_ERRORS, **errors(402, 409)},
)
async def create_subscription(
    body: SubscriptionCreate,
    request: Request,
    ctx: BillingManageDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Subscribe to `quantity` mailbox seats on a plan; the first period is paid
    from the wallet now. Honours Idempotency-Key."""

    async def run() -> tuple[int, Envelope[Any]]:
        subscription = await subscriptions.create_subscription(
            session, settings, ctx.workspace_id, body, user_id=ctx.user.id
        )
        out = subscription_out(await subscriptions.view(session, subscription))
        return 201, ok(out, "Subscription started")

    return await idempotent(request, session, ctx.workspace_id, idempotency_key, body, run)


@router.get(
    "/v1/subscriptions/{subscription_id}",
    operation_id="subscriptions:get",
    tags=["subscriptions"],
    responses=WORKSPACE_ERRORS,
)
async def get_subscription(
    subscription_id: str, ctx: BillingReadDep, session: SessionDep, settings: SettingsDep
) -> Envelope[SubscriptionOut]:
    if subscription_id == plans.SELF_HOSTED_PLAN_ID and not plans.billing_enabled(settings):
        return ok(self_hosted_subscription(ctx, settings))
    subscription = await subscriptions.get_subscription(session, ctx.workspace_id, subscription_id)
    return ok(subscription_out(await subscriptions.view(session, subscription)))


@router.put(
    "/v1/subscriptions/{subscription_id}",
    operation_id="subscriptions:update",
    tags=["subscriptions"],
    response_model=Envelope[SubscriptionChangeOut],
    responses={**WORKSPACE_ERRORS, **errors(402, 409)},
)
async def change_subscription(
    subscription_id: str,
    body: SubscriptionUpdate,
    request: Request,
    ctx: BillingManageDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Upgrade or downgrade now (plan and/or quantity), prorated for the time left
    in the period: charged from, or credited to, the wallet. Honours Idempotency-Key."""

    async def run() -> tuple[int, Envelope[Any]]:
        subscription = await subscriptions.get_subscription(
            session, ctx.workspace_id, subscription_id
        )
        change = await subscriptions.change_subscription(
            session, settings, subscription, body, user_id=ctx.user.id
        )
        out = SubscriptionChangeOut(
            subscription=subscription_out(await subscriptions.view(session, change.subscription)),
            proration=ProrationOut(
                amount=change.proration.amount,
                remaining_seconds=change.proration.remaining_seconds,
                period_seconds=change.proration.period_seconds,
                invoice_id=change.invoice.id if change.invoice else None,
            ),
        )
        return 200, ok(out, "Subscription updated")

    return await idempotent(request, session, ctx.workspace_id, idempotency_key, body, run)


@router.delete(
    "/v1/subscriptions/{subscription_id}",
    operation_id="subscriptions:cancel",
    tags=["subscriptions"],
    responses={**WORKSPACE_ERRORS, **errors(409)},
)
async def cancel_subscription(
    subscription_id: str, ctx: BillingManageDep, session: SessionDep, settings: SettingsDep
) -> Envelope[SubscriptionOut]:
    """Cancel at the end of the paid period (undo with PUT `cancelAtPeriodEnd: false`)."""
    subscription = await subscriptions.get_subscription(session, ctx.workspace_id, subscription_id)
    subscription = await subscriptions.cancel_subscription(session, settings, subscription)
    return ok(
        subscription_out(await subscriptions.view(session, subscription)),
        "Subscription canceled; it stays active until the end of the paid period",
    )


# Wallet


@router.get("/v1/wallet", operation_id="wallet:get", tags=["wallet"], responses=WORKSPACE_ERRORS)
async def get_wallet(
    ctx: BillingReadDep, session: SessionDep, settings: SettingsDep
) -> Envelope[WalletOut]:
    found = await wallet.summary(session, settings, ctx.workspace_id)
    account = found.account
    return ok(
        WalletOut(
            balance=found.balance,
            currency=account.currency,
            formatted_balance=format_amount(found.balance, account.currency),
            billing=settings.billing,
            payment_provider=settings.payment_provider,
            has_payment_method=bool(account.provider_payment_method_id),
            auto_recharge=AutoRechargeOut(
                enabled=account.auto_recharge_enabled,
                threshold=account.auto_recharge_threshold,
                amount=account.auto_recharge_amount,
            ),
        )
    )


@router.get(
    "/v1/wallet/transactions",
    operation_id="wallet:list_transactions",
    tags=["wallet"],
    responses=WORKSPACE_ERRORS,
)
async def list_transactions(
    ctx: BillingReadDep, session: SessionDep, page: PageDep
) -> ListEnvelope[LedgerEntryOut]:
    """The ledger, newest first: every movement with the balance after it."""
    rows, total = await wallet.list_entries(session, ctx.workspace_id, page)
    return ListEnvelope(data=[entry_out(row) for row in rows], pagination=page.describe(total))


@router.post(
    "/v1/wallet/balance",
    operation_id="wallet:top_up",
    status_code=status.HTTP_201_CREATED,
    tags=["wallet"],
    response_model=Envelope[TopUpOut],
    responses={**WORKSPACE_ERRORS, **errors(409)},
)
async def add_balance(
    body: TopUpIn,
    request: Request,
    ctx: BillingManageDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Top up. Stripe: answers with the payment and its `checkoutUrl`; the wallet is
    credited when Stripe confirms the payment. Manual: a superuser records money
    received, credited at once. Honours Idempotency-Key."""

    async def run() -> tuple[int, Envelope[Any]]:
        provider = wallet.payment_provider(settings)
        payment = await wallet.start_topup(
            session, settings, provider, ctx.workspace, ctx.user, body
        )
        balance = (await wallet.summary(session, settings, ctx.workspace_id)).balance
        message = (
            "Wallet credited"
            if payment.status == PaymentStatus.SUCCEEDED
            else "Pay at checkoutUrl; the wallet is credited once the payment succeeds"
        )
        return 201, ok(TopUpOut(payment=payment_out(payment), balance=balance), message)

    return await idempotent(request, session, ctx.workspace_id, idempotency_key, body, run)


@router.post(
    "/v1/wallet/credits",
    operation_id="wallet:grant_credit",
    status_code=status.HTTP_201_CREATED,
    tags=["wallet"],
    response_model=Envelope[CreditOut],
    responses={**WORKSPACE_ERRORS, **errors(409)},
)
async def add_credit(
    body: CreditIn,
    request: Request,
    ctx: BillingSuperuserDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Grant credit with a reason (superusers). Honours Idempotency-Key."""

    async def run() -> tuple[int, Envelope[Any]]:
        from mailfleet.kit.ids import new_id

        entry = await wallet.grant_credit(
            session,
            settings,
            ctx.workspace_id,
            amount=body.amount,
            reason=body.reason,
            user_id=ctx.user.id,
            key=f"credit:{new_id()}",
        )
        out = CreditOut(entry=entry_out(entry), balance=entry.balance_after)
        return 201, ok(out, "Credit added")

    return await idempotent(request, session, ctx.workspace_id, idempotency_key, body, run)


@router.post(
    "/v1/wallet/auto-recharge",
    operation_id="wallet:set_auto_recharge",
    tags=["wallet"],
    responses={**WORKSPACE_ERRORS, **errors(409)},
)
async def enable_auto_recharge(
    body: AutoRechargeIn, ctx: BillingManageDep, session: SessionDep, settings: SettingsDep
) -> Envelope[AutoRechargeOut]:
    """When enabled, the saved card (from the first Stripe top-up) is charged
    `amount` whenever a charge leaves the balance under `threshold`, and what a
    renewal lacks (plus the threshold) when the wallet cannot cover it."""
    account = await wallet.configure_auto_recharge(session, settings, ctx.workspace_id, body)
    message = None
    if account.auto_recharge_enabled and not account.provider_payment_method_id:
        message = "Enabled; it starts once a card is saved by a first top-up through checkout"
    return ok(
        AutoRechargeOut(
            enabled=account.auto_recharge_enabled,
            threshold=account.auto_recharge_threshold,
            amount=account.auto_recharge_amount,
        ),
        message,
    )


@router.get(
    "/v1/billing/payments/{payment_id}",
    operation_id="payments:get",
    tags=["wallet"],
    responses=WORKSPACE_ERRORS,
)
async def get_payment(
    payment_id: str, ctx: BillingReadDep, session: SessionDep
) -> Envelope[PaymentOut]:
    return ok(payment_out(await wallet.get_payment(session, ctx.workspace_id, payment_id)))


# Invoices


@router.get(
    "/v1/billing/invoices",
    operation_id="invoices:list",
    tags=["billing"],
    responses=WORKSPACE_ERRORS,
)
async def list_invoices(
    ctx: BillingReadDep, session: SessionDep, page: PageDep
) -> ListEnvelope[InvoiceOut]:
    rows, total = await invoices.list_invoices(session, ctx.workspace_id, page)
    return ListEnvelope(data=[invoice_out(row) for row in rows], pagination=page.describe(total))


@router.get(
    "/v1/billing/invoices/{invoice_id}.html",
    operation_id="invoices:get_html",
    response_class=HTMLResponse,
    tags=["billing"],
    responses=WORKSPACE_ERRORS,
)
async def invoice_html(invoice_id: str, ctx: BillingReadDep, session: SessionDep) -> HTMLResponse:
    """The invoice as a printable page."""
    invoice = await invoices.get_invoice(session, ctx.workspace_id, invoice_id)
    return HTMLResponse(invoices.render_invoice_html(invoice, ctx.workspace.name))


@router.get(
    "/v1/billing/invoices/{invoice_id}",
    operation_id="invoices:get",
    tags=["billing"],
    responses=WORKSPACE_ERRORS,
)
async def get_invoice(
    invoice_id: str, ctx: BillingReadDep, session: SessionDep
) -> Envelope[InvoiceOut]:
    return ok(invoice_out(await invoices.get_invoice(session, ctx.workspace_id, invoice_id)))


# Billing details


@router.get(
    "/v1/billing/details",
    operation_id="billing_details:get",
    tags=["billing"],
    responses=WORKSPACE_ERRORS,
)
async def get_billing_details(
    ctx: BillingReadDep, session: SessionDep
) -> Envelope[BillingDetailsOut | None]:
    details = await invoices.get_details(session, ctx.workspace_id)
    return ok(BillingDetailsOut.model_validate(details) if details else None)


@router.post(
    "/v1/billing/details",
    operation_id="billing_details:save",
    tags=["billing"],
    responses=WORKSPACE_ERRORS,
)
async def save_billing_details(
    body: BillingDetailsIn, ctx: BillingManageDep, session: SessionDep
) -> Envelope[BillingDetailsOut]:
    """Create or replace the details printed on invoices. The tax id is checked
    for the country (EU VAT numbers, and each country's VAT or TIN format)."""
    details = await invoices.save_details(session, ctx.workspace_id, body)
    return ok(BillingDetailsOut.model_validate(details), "Billing details saved")


# Stripe


# Public: Stripe signs the body instead of sending a credential. The body is read
# raw (the signature covers its bytes), so it is documented here.
_STRIPE_EVENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A Stripe event, as Stripe sends it",
        "content": {
            "application/json": {
                "schema": {"type": "object"},
                "example": {
                    "id": "evt_1Nq3",
                    "type": "checkout.session.completed",
                    "data": {"object": {"id": "cs_test_a1", "payment_status": "paid"}},
                },
            }
        },
    }
}


@router.post(
    "/v1/billing/stripe/webhook",
    operation_id="stripe:webhook",
    tags=["billing"],
    openapi_extra=_STRIPE_EVENT_BODY,
    responses=errors(400, 404),
)
async def stripe_webhook(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    stripe_signature: Annotated[str | None, Header(alias="Stripe-Signature")] = None,
) -> StripeWebhookOut:
    """Stripe's events, verified with the endpoint's signing secret
    (MAILFLEET_STRIPE_WEBHOOK_SECRET). Each event id is applied once."""
    if settings.payment_provider != "stripe" or not settings.stripe_secret_key:
        raise NotFound("Stripe is not the payment provider here")
    payload = await request.body()
    provider = StripeProvider.for_settings(settings)
    try:
        event = provider.verify_webhook(payload, stripe_signature)
    except ValueError as exc:
        raise ValidationFailed(
            str(exc),
            [{"field": "Stripe-Signature", "in": "header", "message": str(exc)}],
        ) from None
    outcome = await wallet.handle_stripe_event(session, settings, event)
    return StripeWebhookOut(outcome=outcome)
