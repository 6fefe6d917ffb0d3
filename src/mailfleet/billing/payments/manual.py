"""Manual payments: money arrives outside Mailfleet (bank transfer, invoice paid by
hand) and an administrator records it with POST /v1/wallet/balance."""

from __future__ import annotations

from mailfleet.billing.payments.base import (
    ChargeOutcome,
    CheckoutRequest,
    CheckoutStarted,
    OffSessionCharge,
    PaymentProviderError,
)


class ManualProvider:
    name = "manual"
    hosted_checkout = False

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutStarted:
        raise PaymentProviderError(
            "Payments are recorded by an administrator here (MAILFLEET_PAYMENT_PROVIDER=manual)"
        )

    async def charge_off_session(self, request: OffSessionCharge) -> ChargeOutcome:
        return ChargeOutcome(
            status="failed",
            failure_message="The manual payment provider cannot charge a saved payment method",
        )
