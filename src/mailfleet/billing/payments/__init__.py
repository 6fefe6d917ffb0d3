"""Payment providers behind one interface; `provider_for` picks the configured one."""

from __future__ import annotations

from mailfleet.billing.payments.base import (
    ChargeOutcome,
    CheckoutRequest,
    CheckoutStarted,
    OffSessionCharge,
    PaymentProvider,
    PaymentProviderError,
)
from mailfleet.config import Settings

__all__ = [
    "ChargeOutcome",
    "CheckoutRequest",
    "CheckoutStarted",
    "OffSessionCharge",
    "PaymentProvider",
    "PaymentProviderError",
    "provider_for",
]


def provider_for(settings: Settings) -> PaymentProvider:
    if settings.payment_provider == "stripe":
        from mailfleet.billing.payments.stripe import StripeProvider

        return StripeProvider.for_settings(settings)
    from mailfleet.billing.payments.manual import ManualProvider

    return ManualProvider()
