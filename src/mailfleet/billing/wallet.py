"""The wallet: top-ups through the payment provider, credit grants, auto-recharge,
the provider's webhook events, and Idempotency-Key bookkeeping.

Money moves only through `ledger.post_entry`, under the workspace's lock and a
unique key per movement: a payment credits under `payment:<id>`, so the
checkout webhook, the PaymentIntent webhook and a redelivery of either credit
it once between them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.billing import invoices, ledger, plans, renewals
from mailfleet.billing.invoices import InvoiceLine
from mailfleet.billing.ledger import PaymentProviderFailed
from mailfleet.billing.payments import (
    ChargeOutcome,
    CheckoutRequest,
    OffSessionCharge,
    PaymentProvider,
    PaymentProviderError,
    provider_for,
)
from mailfleet.billing.repository import PaymentRepository, WalletEntryRepository
from mailfleet.billing.schemas import AutoRechargeIn, TopUpIn
from mailfleet.config import Settings
from mailfleet.kit.clock import utcnow
from mailfleet.kit.errors import Forbidden, NotFound, ValidationFailed
from mailfleet.kit.ids import new_id
from mailfleet.kit.pagination import Page
from mailfleet.kit.sql import insert_ignoring_conflict
from mailfleet.models import PaymentStatus, User, Workspace
from mailfleet.models.billing import (
    BillingAccount,
    IdempotentRequest,
    Payment,
    ProviderEvent,
    WalletEntry,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WalletSummary:
    account: BillingAccount
    balance: int


def payment_provider(settings: Settings) -> PaymentProvider:
    """The configured payment provider; one that cannot be set up (Stripe without
    its key, say) is a PaymentProviderFailed, as its calls' failures are."""
    try:
        return provider_for(settings)
    except PaymentProviderError as exc:
        raise PaymentProviderFailed(exc.message) from None


async def summary(session: AsyncSession, settings: Settings, workspace_id: str) -> WalletSummary:
    account = await ledger.read_account(session, workspace_id, settings.billing_currency)
    return WalletSummary(account, await ledger.balance(session, workspace_id))


async def list_entries(
    session: AsyncSession, workspace_id: str, page: Page
) -> tuple[list[WalletEntry], int]:
    repository = WalletEntryRepository(session)
    return await repository.newest_first(repository.owned_by(workspace_id), page)


async def get_payment(session: AsyncSession, workspace_id: str, payment_id: str) -> Payment:
    return await PaymentRepository(session).get(workspace_id, payment_id)


# Top-ups


async def _pending_topup(
    session: AsyncSession,
    settings: Settings,
    provider_name: str,
    workspace_id: str,
    data: TopUpIn,
    user: User,
) -> Payment:
    payment = Payment(
        workspace_id=workspace_id,
        provider=provider_name,
        purpose="topup",
        amount=data.amount,
        currency=settings.billing_currency,
        status=PaymentStatus.PENDING,
        note=data.note,
        recorded_by_user_id=user.id,
    )
    session.add(payment)
    await session.flush()
    return payment


async def start_topup(
    session: AsyncSession,
    settings: Settings,
    provider: PaymentProvider,
    workspace: Workspace,
    user: User,
    data: TopUpIn,
) -> Payment:
    """Stripe: a pending payment and its Checkout page; the webhook credits it.
    Manual: an administrator records money received, credited at once."""
    plans.require_billing(settings)
    workspace_id = workspace.id
    if not provider.hosted_checkout:
        if not user.is_superuser:
            raise Forbidden(
                "Payments are recorded by an administrator here (manual payments); "
                "ask one to record yours"
            )
        payment = await _pending_topup(session, settings, provider.name, workspace_id, data, user)
        await settle_payment(session, settings, payment)
        return payment
    success_url = data.success_url or settings.billing_return_url
    if not success_url:
        raise ValidationFailed.for_field(
            "successUrl", "Give successUrl (or set MAILFLEET_BILLING_RETURN_URL)"
        )
    account = await ledger.read_account(session, workspace_id, settings.billing_currency)
    details = await invoices.get_details(session, workspace_id)
    payment = await _pending_topup(session, settings, provider.name, workspace_id, data, user)
    try:
        started = await provider.start_checkout(
            CheckoutRequest(
                payment_id=payment.id,
                workspace_id=workspace_id,
                amount=data.amount,
                currency=settings.billing_currency,
                customer_id=account.provider_customer_id,
                customer_email=details.billing_email if details else user.email,
                customer_name=details.company_name if details else workspace.name,
                success_url=success_url,
                cancel_url=data.cancel_url or success_url,
            )
        )
    except PaymentProviderError as exc:
        raise PaymentProviderFailed(exc.message) from None
    payment.provider_ref = started.provider_ref
    payment.checkout_url = started.url
    if started.customer_id and account.provider_customer_id != started.customer_id:
        account = await ledger.lock_account(session, workspace_id, settings.billing_currency)
        account.provider_customer_id = started.customer_id
    await session.flush()
    return payment


async def settle_payment(
    session: AsyncSession, settings: Settings, payment: Payment, *, provider_ref: str | None = None
) -> WalletEntry | None:
    """The money arrived: mark the payment, invoice it, credit the wallet (once),
    and retry an unpaid renewal. A payment already settled changes nothing."""
    account = await ledger.lock_account(session, payment.workspace_id, settings.billing_currency)
    # Read again under the lock: a concurrent event for the same payment may have
    # settled it since this session loaded the row.
    status = await session.scalar(select(Payment.status).where(Payment.id == payment.id))
    if status == PaymentStatus.SUCCEEDED:
        payment.status = PaymentStatus.SUCCEEDED
        return None
    payment.status = PaymentStatus.SUCCEEDED
    payment.succeeded_at = utcnow()
    payment.failure_message = None
    if provider_ref:
        payment.provider_ref = provider_ref
    label = "Wallet top-up" if payment.purpose == "topup" else "Wallet auto-recharge"
    invoice = await invoices.issue_invoice(
        session,
        payment.workspace_id,
        kind="topup",
        currency=payment.currency,
        lines=[InvoiceLine(description=label, quantity=1, unit_amount=payment.amount)],
        payment_id=payment.id,
    )
    entry, created = await ledger.post_entry(
        session,
        account,
        amount=payment.amount,
        kind="topup",
        description=f"{label} ({payment.provider})",
        key=f"payment:{payment.id}",
        payment_id=payment.id,
        invoice_id=invoice.id,
        user_id=payment.recorded_by_user_id,
    )
    await session.flush()
    if created:
        await renewals.retry_past_due_after_credit(session, payment.workspace_id, entry.id)
    return entry


async def fail_payment(session: AsyncSession, payment: Payment, message: str) -> None:
    if payment.status == PaymentStatus.PENDING:
        payment.status = PaymentStatus.FAILED
        payment.failure_message = message[:500]
        await session.flush()


async def grant_credit(
    session: AsyncSession,
    settings: Settings,
    workspace_id: str,
    *,
    amount: int,
    reason: str,
    user_id: str,
    key: str,
) -> WalletEntry:
    """Credit given by an administrator (goodwill, a reseller's allowance): a ledger
    entry with the reason and who gave it; no invoice, since nothing was paid."""
    plans.require_billing(settings)
    account = await ledger.lock_account(session, workspace_id, settings.billing_currency)
    entry, created = await ledger.post_entry(
        session,
        account,
        amount=amount,
        kind="credit",
        description=reason,
        key=key,
        user_id=user_id,
    )
    if created:
        await renewals.retry_past_due_after_credit(session, workspace_id, entry.id)
    return entry


# Auto-recharge


async def configure_auto_recharge(
    session: AsyncSession, settings: Settings, workspace_id: str, data: AutoRechargeIn
) -> BillingAccount:
    plans.require_billing(settings)
    account = await ledger.lock_account(session, workspace_id, settings.billing_currency)
    if data.enabled:
        if settings.payment_provider == "manual":
            raise ValidationFailed.for_field(
                "enabled",
                "Auto-recharge needs a card payment provider (MAILFLEET_PAYMENT_PROVIDER)",
            )
        threshold = (
            data.threshold if data.threshold is not None else account.auto_recharge_threshold
        )
        amount = data.amount if data.amount is not None else account.auto_recharge_amount
        if amount <= 0:
            raise ValidationFailed.for_field("amount", "Give the amount one recharge adds")
        account.auto_recharge_threshold = threshold
        account.auto_recharge_amount = amount
    else:
        if data.threshold is not None:
            account.auto_recharge_threshold = data.threshold
        if data.amount is not None:
            account.auto_recharge_amount = data.amount
    account.auto_recharge_enabled = data.enabled
    account.updated_at = utcnow()
    await session.flush()
    return account


async def prepare_auto_recharge(
    session: AsyncSession, settings: Settings, workspace_id: str, reason: str, needed: int
) -> str | None:
    """A pending auto-recharge payment, or None when none is due: disabled, no saved
    card, already tried for this `reason` (one try per renewal, so a declined
    card is not hammered), or (`needed` 0) the balance is back above the threshold.

    Charges `amount`, or what a renewal lacks plus the threshold when larger.
    """
    if not plans.billing_enabled(settings):
        return None
    account = await ledger.lock_account(session, workspace_id, settings.billing_currency)
    if not (
        account.auto_recharge_enabled
        and account.provider_customer_id
        and account.provider_payment_method_id
    ):
        return None
    if await session.scalar(select(Payment.id).where(Payment.reason == reason)):
        return None
    threshold = account.auto_recharge_threshold
    if needed == 0 and await ledger.balance(session, workspace_id) >= threshold:
        return None
    amount = max(account.auto_recharge_amount, needed + threshold if needed else 0)
    payment = Payment(
        workspace_id=workspace_id,
        provider=settings.payment_provider,
        purpose="auto_recharge",
        amount=amount,
        currency=account.currency,
        status=PaymentStatus.PENDING,
        reason=reason,
    )
    session.add(payment)
    await session.flush()
    return payment.id


async def off_session_charge(session: AsyncSession, payment_id: str) -> OffSessionCharge | None:
    payment = await session.get(Payment, payment_id)
    if payment is None or payment.status != PaymentStatus.PENDING:
        return None
    account = await session.get(BillingAccount, payment.workspace_id)
    if (
        account is None
        or not account.provider_customer_id
        or not account.provider_payment_method_id
    ):
        return None
    return OffSessionCharge(
        payment_id=payment.id,
        workspace_id=payment.workspace_id,
        amount=payment.amount,
        currency=payment.currency,
        customer_id=account.provider_customer_id,
        payment_method_id=account.provider_payment_method_id,
        description="Mailfleet wallet auto-recharge",
    )


async def record_charge_outcome(
    session: AsyncSession, settings: Settings, payment_id: str, outcome: ChargeOutcome
) -> str:
    payment = await session.get(Payment, payment_id)
    if payment is None:
        return "missing"
    if payment.status != PaymentStatus.PENDING:
        return payment.status
    if outcome.status == "succeeded":
        await settle_payment(session, settings, payment, provider_ref=outcome.provider_ref)
        return "succeeded"
    if outcome.status == "pending":
        # The provider is still working; its webhook settles the payment.
        payment.provider_ref = outcome.provider_ref
        await session.flush()
        return "pending"
    payment.provider_ref = outcome.provider_ref or payment.provider_ref
    await fail_payment(session, payment, outcome.failure_message or "The charge failed")
    return "failed"


# Stripe's webhook


async def _find_payment(
    session: AsyncSession, payment_id: str | None, provider_ref: str | None
) -> Payment | None:
    if payment_id:
        payment = await session.get(Payment, payment_id)
        if payment is not None:
            return payment
    if provider_ref:
        found: Payment | None = await session.scalar(
            select(Payment).where(Payment.provider_ref == provider_ref)
        )
        return found
    return None


async def _save_card(
    session: AsyncSession, settings: Settings, workspace_id: str, obj: dict[str, Any]
) -> None:
    customer, method = obj.get("customer"), obj.get("payment_method")
    if not (isinstance(customer, str) and isinstance(method, str)):
        return
    if obj.get("setup_future_usage") not in ("off_session", "on_session"):
        return
    account = await ledger.lock_account(session, workspace_id, settings.billing_currency)
    account.provider_customer_id = customer
    account.provider_payment_method_id = method
    account.updated_at = utcnow()


def _paid_amount(payment: Payment, paid: Any, currency: Any) -> None:
    # Stripe is the truth about what was paid; a mismatch means the payment row
    # and the checkout diverged, and the customer must get what they paid.
    if isinstance(paid, int) and paid != payment.amount:
        log.error(
            "payment %s: stripe reports %s paid, %s expected; crediting what was paid",
            payment.id,
            paid,
            payment.amount,
        )
        payment.amount = paid
    if isinstance(currency, str) and currency.upper() != payment.currency:
        log.error("payment %s: paid in %s, expected %s", payment.id, currency, payment.currency)


async def handle_stripe_event(
    session: AsyncSession, settings: Settings, event: dict[str, Any]
) -> str:
    """Apply one verified Stripe event, once per event id. Returns what happened."""
    event_id, event_type = str(event.get("id", "")), str(event.get("type", ""))
    if not event_id:
        raise ValidationFailed.for_field("id", "The event has no id")
    recorded = await insert_ignoring_conflict(
        session,
        ProviderEvent,
        {"id": new_id(), "provider": "stripe", "event_id": event_id, "type": event_type[:100]},
        returning=ProviderEvent.id,
    )
    if recorded is None:
        return "duplicate"
    obj: dict[str, Any] = (event.get("data") or {}).get("object") or {}
    metadata: dict[str, Any] = obj.get("metadata") or {}
    if event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        if obj.get("mode") != "payment" or obj.get("payment_status") != "paid":
            return "awaiting_payment"
        payment = await _find_payment(
            session, metadata.get("payment_id") or obj.get("client_reference_id"), obj.get("id")
        )
        if payment is None:
            return _unknown_payment(event_id, metadata)
        customer = obj.get("customer")
        if isinstance(customer, str):
            account = await ledger.lock_account(
                session, payment.workspace_id, settings.billing_currency
            )
            account.provider_customer_id = account.provider_customer_id or customer
        _paid_amount(payment, obj.get("amount_total"), obj.get("currency"))
        entry = await settle_payment(session, settings, payment)
        return "credited" if entry else "already_credited"
    if event_type == "payment_intent.succeeded":
        payment = await _find_payment(session, metadata.get("payment_id"), obj.get("id"))
        owner = payment.workspace_id if payment else metadata.get("workspace_id")
        if isinstance(owner, str) and await session.get(Workspace, owner) is not None:
            await _save_card(session, settings, owner, obj)
        if payment is None:
            return _unknown_payment(event_id, metadata)
        _paid_amount(payment, obj.get("amount_received"), obj.get("currency"))
        entry = await settle_payment(session, settings, payment, provider_ref=obj.get("id"))
        return "credited" if entry else "already_credited"
    if event_type in (
        "payment_intent.payment_failed",
        "checkout.session.expired",
        "checkout.session.async_payment_failed",
    ):
        payment = await _find_payment(
            session, metadata.get("payment_id") or obj.get("client_reference_id"), obj.get("id")
        )
        if payment is None:
            return "unknown_payment"
        error = obj.get("last_payment_error") or {}
        message = error.get("message") if isinstance(error, dict) else None
        await fail_payment(session, payment, str(message or event_type))
        return "failed"
    return "ignored"


def _unknown_payment(event_id: str, metadata: dict[str, Any]) -> str:
    """An event for a payment not in the database: someone else's (another product
    on the same Stripe account) is ignored; one of ours not committed yet answers
    404, which rolls the event record back and makes Stripe deliver it again."""
    payment_id = metadata.get("payment_id")
    if not payment_id or not metadata.get("workspace_id"):
        return "ignored"
    log.warning("stripe event %s: payment %s not found (yet)", event_id, payment_id)
    raise NotFound(f"Payment {payment_id} not found; deliver the event again later")


# Idempotency-Key


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    body: dict[str, Any]


async def claim_idempotency_key(
    session: AsyncSession, workspace_id: str, key: str, fingerprint: str
) -> StoredResponse | None:
    """None: this request is the first with `key` and runs (its answer is then
    stored with `store_idempotent_response`). Otherwise the stored answer.

    The claim is a row inserted in the request's transaction: a concurrent
    request with the same key waits for it (PostgreSQL) or for the writer lock
    (SQLite), then replays its answer. A request that fails rolls back its claim,
    so retrying it runs it again.
    """
    claimed = await insert_ignoring_conflict(
        session,
        IdempotentRequest,
        {
            "id": new_id(),
            "workspace_id": workspace_id,
            "key": key,
            "fingerprint": fingerprint,
            "status_code": 0,
            "created_at": utcnow(),
        },
        returning=IdempotentRequest.id,
    )
    if claimed is not None:
        return None
    stored = await session.scalar(
        select(IdempotentRequest).where(
            IdempotentRequest.workspace_id == workspace_id, IdempotentRequest.key == key
        )
    )
    assert stored is not None
    if stored.fingerprint != fingerprint:
        raise ValidationFailed(
            "This Idempotency-Key was used with a different request",
            [
                {
                    "field": "Idempotency-Key",
                    "in": "header",
                    "message": "already used with a different request",
                }
            ],
        )
    return StoredResponse(stored.status_code, stored.response or {})


async def store_idempotent_response(
    session: AsyncSession, workspace_id: str, key: str, status_code: int, body: dict[str, Any]
) -> None:
    stored = await session.scalar(
        select(IdempotentRequest).where(
            IdempotentRequest.workspace_id == workspace_id, IdempotentRequest.key == key
        )
    )
    assert stored is not None
    stored.status_code = status_code
    stored.response = body
    await session.flush()
