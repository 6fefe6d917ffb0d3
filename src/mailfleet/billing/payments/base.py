"""The interface every payment provider implements, and the values it trades in."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


class PaymentProviderError(Exception):
    """The provider refused or failed a request. The message is safe to show a
    customer: it never holds a key, a card number or a raw provider response."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class CheckoutRequest:
    payment_id: str
    workspace_id: str
    amount: int
    currency: str
    # The provider's customer when one was made before; None to make one.
    customer_id: str | None
    customer_email: str
    customer_name: str
    success_url: str
    cancel_url: str


@dataclass(frozen=True)
class CheckoutStarted:
    provider_ref: str
    url: str
    customer_id: str | None


@dataclass(frozen=True)
class OffSessionCharge:
    payment_id: str
    workspace_id: str
    amount: int
    currency: str
    customer_id: str
    payment_method_id: str
    description: str


@dataclass(frozen=True)
class ChargeOutcome:
    # "pending": the provider is still processing; its webhook settles the payment.
    status: Literal["succeeded", "pending", "failed"]
    provider_ref: str | None = None
    failure_message: str | None = None


class PaymentProvider(Protocol):
    name: str
    # False: no hosted checkout; administrators record payments received by hand.
    hosted_checkout: bool

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutStarted:
        """A hosted payment page for a top-up; the provider's webhook settles it."""
        ...

    async def charge_off_session(self, request: OffSessionCharge) -> ChargeOutcome:
        """Charge the saved payment method with the customer away (auto-recharge).

        Safe to call again with the same `payment_id`: it charges once."""
        ...
