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

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel

from mailfleet.billing import invoices, service, wallet
from mailfleet.billing.ledger import PaymentProviderFailed
from mailfleet.billing.money import format_amount
from mailfleet.billing.payments import provider_for
from mailfleet.billing.payments.base import PaymentProviderError
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
    WorkspaceContext,
    workspace_context,
)
from mailfleet.kit.envelope import ERROR_RESPONSES, Envelope, ListEnvelope, ok
from mailfleet.kit.errors import Forbidden, NotFound, ValidationFailed
from mailfleet.kit.idempotency import check_idempotency_key
from mailfleet.kit.pagination import PageDep
from mailfleet.models import Workspace
from mailfleet.models.billing import Invoice, Payment, Plan, WalletEntry

router = APIRouter(responses=ERROR_RESPONSES)

MANAGER_ROLES = ("owner", "admin")
IDEMPOTENCY_HEADER = "idempotency-key"
# Billing stores its keys in a longer column (IdempotentRequest.key) than other areas.
MAX_BILLING_IDEMPOTENCY_KEY = 255


async def billing_workspace(
    request: Request, actor: ActorDep, session: SessionDep
) -> WorkspaceContext:
    """The workspace as usual; a superuser's user credential may name any workspace."""
    requested = request.headers.get("x-workspace-id")
    if actor.user.is_superuser and actor.workspace_scope is None and requested:
        workspace = await session.get(Workspace, requested)
        if workspace is None:
            raise NotFound(f"Workspace {requested} not found")
        request.state.workspace_id = workspace.id
        return WorkspaceContext(actor=actor, workspace=workspace, role="owner")
    return await workspace_context(request, actor, session)


BillingWorkspaceDep = Annotated[WorkspaceContext, Depends(billing_workspace)]


def require_manager(ctx: WorkspaceContext) -> None:
    if ctx.role not in MANAGER_ROLES and not ctx.user.is_superuser:
        raise Forbidden("Only the workspace's owners and admins manage its billing")


def require_superuser(ctx: WorkspaceContext) -> None:
    if not ctx.user.is_superuser or ctx.actor.workspace_scope is not None:
        raise Forbidden("Only a superuser (with a user key or login) may do this")


def _json(model: BaseModel) -> dict[str, Any]:
    data: dict[str, Any] = model.model_dump(mode="json", by_alias=True)
    return data


async def idempotent(
    request: Request,
    session: SessionDep,
    workspace_id: str,
    body: BaseModel | None,
    run: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
) -> JSONResponse:
    """Run a money-moving request once per Idempotency-Key: a retry with the same
    key and the same request gets the stored answer (and `idempotent-replayed:
    true`); the same key with another request is a 400."""
    key = check_idempotency_key(
        request.headers.get(IDEMPOTENCY_HEADER), max_length=MAX_BILLING_IDEMPOTENCY_KEY
    )
    if key is None:
        status_code, content = await run()
        return JSONResponse(content, status_code=status_code)
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
    status_code, content = await run()
    await wallet.store_idempotent_response(session, workspace_id, key, status_code, content)
    return JSONResponse(content, status_code=status_code)


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


def subscription_out(view: service.SubscriptionView) -> SubscriptionOut:
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
    plan = service.self_hosted_plan(settings)
    return SubscriptionOut(
        id=service.SELF_HOSTED_PLAN_ID,
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


@router.get("/v1/plans", response_model=ListEnvelope[PlanOut], tags=["billing"])
async def list_plans(
    actor: ActorDep,
    session: SessionDep,
    settings: SettingsDep,
    page: PageDep,
    include_inactive: Annotated[bool, Query(alias="includeInactive")] = False,
) -> Any:
    """Plans on offer (superusers may add `includeInactive=true`). With billing off
    the built-in unlimited "self-hosted" plan comes first."""
    everything = include_inactive and actor.user.is_superuser
    plans, total = await service.list_plans(session, page, include_inactive=everything)
    data = [plan_out(plan) for plan in plans]
    if not service.billing_enabled(settings):
        data.insert(0, plan_out(service.self_hosted_plan(settings), builtin=True))
        total += 1
    return {"success": True, "data": data, "pagination": page.describe(total)}


def _superuser(actor: Any) -> None:
    if not actor.user.is_superuser or actor.workspace_scope is not None:
        raise Forbidden("Only a superuser (with a user key or login) manages plans")


@router.post(
    "/v1/plans",
    response_model=Envelope[PlanOut],
    status_code=status.HTTP_201_CREATED,
    tags=["billing"],
)
async def create_plan(
    body: PlanCreate, actor: ActorDep, session: SessionDep, settings: SettingsDep
) -> Any:
    _superuser(actor)
    return ok(plan_out(await service.create_plan(session, settings, body)), "Plan created")


@router.get("/v1/plans/{plan_id}", response_model=Envelope[PlanOut], tags=["billing"])
async def get_plan(
    plan_id: str, actor: ActorDep, session: SessionDep, settings: SettingsDep
) -> Any:
    if plan_id == service.SELF_HOSTED_PLAN_ID:
        return ok(plan_out(service.self_hosted_plan(settings), builtin=True))
    return ok(plan_out(await service.get_plan(session, plan_id)))


@router.put("/v1/plans/{plan_id}", response_model=Envelope[PlanOut], tags=["billing"])
async def update_plan(plan_id: str, body: PlanUpdate, actor: ActorDep, session: SessionDep) -> Any:
    _superuser(actor)
    plan = await service.get_plan(session, plan_id)
    return ok(plan_out(await service.update_plan(session, plan, body)), "Plan updated")


# Subscriptions


@router.get(
    "/v1/subscriptions", response_model=ListEnvelope[SubscriptionOut], tags=["subscriptions"]
)
async def list_subscriptions(
    ctx: BillingWorkspaceDep, session: SessionDep, settings: SettingsDep, page: PageDep
) -> Any:
    """The workspace's subscriptions, newest first. With billing off: the built-in
    self-hosted one."""
    if not service.billing_enabled(settings):
        data = [self_hosted_subscription(ctx, settings)] if page.skip == 0 else []
        return {"success": True, "data": data, "pagination": page.describe(1)}
    rows, total = await service.list_subscriptions(session, ctx.workspace_id, page)
    data = [subscription_out(await service.view(session, row)) for row in rows]
    return {"success": True, "data": data, "pagination": page.describe(total)}


@router.post(
    "/v1/subscriptions",
    response_model=Envelope[SubscriptionOut],
    status_code=status.HTTP_201_CREATED,
    tags=["subscriptions"],
    responses={402: {"description": "INSUFFICIENT_FUNDS: top up the wallet first"}},
)
async def create_subscription(
    body: SubscriptionCreate,
    request: Request,
    ctx: BillingWorkspaceDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Any:
    """Subscribe to `quantity` mailbox seats on a plan; the first period is paid
    from the wallet now. Honours Idempotency-Key."""
    require_manager(ctx)

    async def run() -> tuple[int, dict[str, Any]]:
        subscription = await service.create_subscription(
            session, settings, ctx.workspace_id, body, user_id=ctx.user.id
        )
        out = subscription_out(await service.view(session, subscription))
        return 201, ok(_json(out), "Subscription started")

    return await idempotent(request, session, ctx.workspace_id, body, run)


@router.get(
    "/v1/subscriptions/{subscription_id}",
    response_model=Envelope[SubscriptionOut],
    tags=["subscriptions"],
)
async def get_subscription(
    subscription_id: str, ctx: BillingWorkspaceDep, session: SessionDep, settings: SettingsDep
) -> Any:
    if subscription_id == service.SELF_HOSTED_PLAN_ID and not service.billing_enabled(settings):
        return ok(self_hosted_subscription(ctx, settings))
    subscription = await service.get_subscription(session, ctx.workspace_id, subscription_id)
    return ok(subscription_out(await service.view(session, subscription)))


@router.put(
    "/v1/subscriptions/{subscription_id}",
    response_model=Envelope[SubscriptionChangeOut],
    tags=["subscriptions"],
)
async def change_subscription(
    subscription_id: str,
    body: SubscriptionUpdate,
    request: Request,
    ctx: BillingWorkspaceDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Any:
    """Upgrade or downgrade now (plan and/or quantity), prorated for the time left
    in the period: charged from, or credited to, the wallet. Honours Idempotency-Key."""
    require_manager(ctx)

    async def run() -> tuple[int, dict[str, Any]]:
        subscription = await service.get_subscription(session, ctx.workspace_id, subscription_id)
        change = await service.change_subscription(
            session, settings, subscription, body, user_id=ctx.user.id
        )
        out = SubscriptionChangeOut(
            subscription=subscription_out(await service.view(session, change.subscription)),
            proration=ProrationOut(
                amount=change.proration.amount,
                remaining_seconds=change.proration.remaining_seconds,
                period_seconds=change.proration.period_seconds,
                invoice_id=change.invoice.id if change.invoice else None,
            ),
        )
        return 200, ok(_json(out), "Subscription updated")

    return await idempotent(request, session, ctx.workspace_id, body, run)


@router.delete(
    "/v1/subscriptions/{subscription_id}",
    response_model=Envelope[SubscriptionOut],
    tags=["subscriptions"],
)
async def cancel_subscription(
    subscription_id: str, ctx: BillingWorkspaceDep, session: SessionDep, settings: SettingsDep
) -> Any:
    """Cancel at the end of the paid period (undo with PUT `cancelAtPeriodEnd: false`)."""
    require_manager(ctx)
    subscription = await service.get_subscription(session, ctx.workspace_id, subscription_id)
    subscription = await service.cancel_subscription(session, settings, subscription)
    return ok(
        subscription_out(await service.view(session, subscription)),
        "Subscription canceled; it stays active until the end of the paid period",
    )


# Wallet


@router.get("/v1/wallet", response_model=Envelope[WalletOut], tags=["wallet"])
async def get_wallet(ctx: BillingWorkspaceDep, session: SessionDep, settings: SettingsDep) -> Any:
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


@router.get("/v1/wallet/transactions", response_model=ListEnvelope[LedgerEntryOut], tags=["wallet"])
async def list_transactions(ctx: BillingWorkspaceDep, session: SessionDep, page: PageDep) -> Any:
    """The ledger, newest first: every movement with the balance after it."""
    rows, total = await wallet.list_entries(session, ctx.workspace_id, page)
    return {
        "success": True,
        "data": [entry_out(row) for row in rows],
        "pagination": page.describe(total),
    }


@router.post(
    "/v1/wallet/balance",
    response_model=Envelope[TopUpOut],
    status_code=status.HTTP_201_CREATED,
    tags=["wallet"],
)
async def add_balance(
    body: TopUpIn,
    request: Request,
    ctx: BillingWorkspaceDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Any:
    """Top up. Stripe: answers with the payment and its `checkoutUrl`; the wallet is
    credited when Stripe confirms the payment. Manual: a superuser records money
    received, credited at once. Honours Idempotency-Key."""
    require_manager(ctx)

    async def run() -> tuple[int, dict[str, Any]]:
        try:
            provider = provider_for(settings)
        except PaymentProviderError as exc:
            raise PaymentProviderFailed(exc.message) from None
        payment = await wallet.start_topup(
            session, settings, provider, ctx.workspace, ctx.user, body
        )
        balance = (await wallet.summary(session, settings, ctx.workspace_id)).balance
        message = (
            "Wallet credited"
            if payment.status == "succeeded"
            else "Pay at checkoutUrl; the wallet is credited once the payment succeeds"
        )
        return 201, ok(_json(TopUpOut(payment=payment_out(payment), balance=balance)), message)

    return await idempotent(request, session, ctx.workspace_id, body, run)


@router.post(
    "/v1/wallet/credits",
    response_model=Envelope[CreditOut],
    status_code=status.HTTP_201_CREATED,
    tags=["wallet"],
)
async def add_credit(
    body: CreditIn,
    request: Request,
    ctx: BillingWorkspaceDep,
    session: SessionDep,
    settings: SettingsDep,
) -> Any:
    """Grant credit with a reason (superusers). Honours Idempotency-Key."""
    require_superuser(ctx)

    async def run() -> tuple[int, dict[str, Any]]:
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
        return 201, ok(_json(out), "Credit added")

    return await idempotent(request, session, ctx.workspace_id, body, run)


@router.post("/v1/wallet/auto-recharge", response_model=Envelope[AutoRechargeOut], tags=["wallet"])
async def enable_auto_recharge(
    body: AutoRechargeIn, ctx: BillingWorkspaceDep, session: SessionDep, settings: SettingsDep
) -> Any:
    """When enabled, the saved card (from the first Stripe top-up) is charged
    `amount` whenever a charge leaves the balance under `threshold`, and what a
    renewal lacks (plus the threshold) when the wallet cannot cover it."""
    require_manager(ctx)
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
    "/v1/billing/payments/{payment_id}", response_model=Envelope[PaymentOut], tags=["wallet"]
)
async def get_payment(payment_id: str, ctx: BillingWorkspaceDep, session: SessionDep) -> Any:
    return ok(payment_out(await wallet.get_payment(session, ctx.workspace_id, payment_id)))


# Invoices


@router.get("/v1/billing/invoices", response_model=ListEnvelope[InvoiceOut], tags=["billing"])
async def list_invoices(ctx: BillingWorkspaceDep, session: SessionDep, page: PageDep) -> Any:
    rows, total = await invoices.list_invoices(session, ctx.workspace_id, page)
    return {
        "success": True,
        "data": [invoice_out(row) for row in rows],
        "pagination": page.describe(total),
    }


@router.get("/v1/billing/invoices/{invoice_id}.html", response_class=HTMLResponse, tags=["billing"])
async def invoice_html(invoice_id: str, ctx: BillingWorkspaceDep, session: SessionDep) -> Any:
    """The invoice as a printable page."""
    invoice = await invoices.get_invoice(session, ctx.workspace_id, invoice_id)
    return HTMLResponse(invoices.render_invoice_html(invoice, ctx.workspace.name))


@router.get(
    "/v1/billing/invoices/{invoice_id}", response_model=Envelope[InvoiceOut], tags=["billing"]
)
async def get_invoice(invoice_id: str, ctx: BillingWorkspaceDep, session: SessionDep) -> Any:
    return ok(invoice_out(await invoices.get_invoice(session, ctx.workspace_id, invoice_id)))


# Billing details


@router.get(
    "/v1/billing/details", response_model=Envelope[BillingDetailsOut | None], tags=["billing"]
)
async def get_billing_details(ctx: BillingWorkspaceDep, session: SessionDep) -> Any:
    details = await invoices.get_details(session, ctx.workspace_id)
    return ok(BillingDetailsOut.model_validate(details) if details else None)


@router.post("/v1/billing/details", response_model=Envelope[BillingDetailsOut], tags=["billing"])
async def save_billing_details(
    body: BillingDetailsIn, ctx: BillingWorkspaceDep, session: SessionDep
) -> Any:
    """Create or replace the details printed on invoices. The tax id is checked
    for the country (EU VAT numbers, and each country's VAT or TIN format)."""
    require_manager(ctx)
    details = await invoices.save_details(session, ctx.workspace_id, body)
    return ok(BillingDetailsOut.model_validate(details), "Billing details saved")


# Stripe


@router.post("/v1/billing/stripe/webhook", tags=["billing"], include_in_schema=True)
async def stripe_webhook(request: Request, session: SessionDep, settings: SettingsDep) -> Any:
    """Stripe's events, verified with the endpoint's signing secret
    (MAILFLEET_STRIPE_WEBHOOK_SECRET). Each event id is applied once."""
    if settings.payment_provider != "stripe" or not settings.stripe_secret_key:
        raise NotFound("Stripe is not the payment provider here")
    payload = await request.body()
    provider = StripeProvider.for_settings(settings)
    try:
        event = provider.verify_webhook(payload, request.headers.get("stripe-signature"))
    except ValueError as exc:
        raise ValidationFailed(
            str(exc),
            [{"field": "Stripe-Signature", "in": "header", "message": str(exc)}],
        ) from None
    outcome = await wallet.handle_stripe_event(session, settings, event)
    return {"received": True, "outcome": outcome}
