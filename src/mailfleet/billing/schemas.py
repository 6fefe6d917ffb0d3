"""Request and response shapes of plans, subscriptions, the wallet and invoices.

Every amount is an integer count of the currency's minor unit (cents for USD):
JSON numbers with a fraction, strings and booleans are refused (strict ints).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field

from mailfleet.kit.envelope import ApiModel, ApiOut, Timestamp, example
from mailfleet.kit.validation import EmailAddress

MAX_AMOUNT = 10**12

Period = Literal["month", "year"]
MinorUnits = Annotated[
    int, Field(strict=True, ge=0, le=MAX_AMOUNT, description="Minor units (cents)")
]
PositiveMinorUnits = Annotated[
    int, Field(strict=True, ge=1, le=MAX_AMOUNT, description="Minor units (cents), 1 or more")
]
Quantity = Annotated[int, Field(strict=True, ge=1, le=1_000_000, description="Mailbox seats")]


def _http_url(value: str) -> str:
    value = value.strip()
    if not value.startswith(("https://", "http://")):
        raise ValueError("an http:// or https:// URL")
    return value


HttpUrl = Annotated[str, Field(max_length=2000), AfterValidator(_http_url)]


# Plans


class PlanCreate(ApiModel):
    model_config = example(
        {
            "name": "Starter",
            "description": "Up to 50 mailboxes",
            "pricePerMailbox": 300,
            "currency": "USD",
            "period": "month",
            "maxMailboxes": 50,
        }
    )

    name: str = Field(min_length=1, max_length=100)
    description: str = Field(default="", max_length=1000)
    price_per_mailbox: MinorUnits
    currency: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z]{3}$",
        description="ISO 4217; the wallet currency (MAILFLEET_BILLING_CURRENCY) when omitted",
    )
    period: Period = "month"
    max_mailboxes: int | None = Field(
        default=None, strict=True, ge=1, description="Most seats one subscription may hold"
    )
    max_domains: int | None = Field(default=None, strict=True, ge=0)
    active: bool = True


class PlanUpdate(ApiModel):
    """Fields left out keep their value; `null` limits mean no limit. A new price
    applies to new subscriptions and to existing ones from their next renewal."""

    model_config = example({"pricePerMailbox": 250})

    name: str | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=1000)
    price_per_mailbox: MinorUnits | None = None
    period: Period | None = None
    max_mailboxes: int | None = Field(default=None, strict=True, ge=1)
    max_domains: int | None = Field(default=None, strict=True, ge=0)
    active: bool | None = None


class PlanOut(ApiOut):
    id: str
    name: str
    description: str
    price_per_mailbox: int
    currency: str
    period: str
    max_mailboxes: int | None
    max_domains: int | None
    active: bool
    builtin: bool = False
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None


# Subscriptions


class SubscriptionCreate(ApiModel):
    model_config = example({"planId": "66f0c2a1e4b0a1b2c3d4e5f6", "quantity": 10})

    plan_id: str = Field(min_length=1, max_length=24)
    quantity: Quantity = 1


class SubscriptionUpdate(ApiModel):
    """Change the plan and/or the seats (prorated), or take back a cancellation
    with `cancelAtPeriodEnd: false`."""

    model_config = example({"quantity": 20})

    plan_id: str | None = Field(default=None, min_length=1, max_length=24)
    quantity: Quantity | None = None
    cancel_at_period_end: bool | None = None


class SubscriptionOut(ApiOut):
    id: str
    plan_id: str
    plan_name: str
    status: str
    quantity: int | None
    unit_amount: int = Field(description="Price per mailbox paid for the current period")
    amount: int = Field(description="unitAmount x quantity")
    next_renewal_amount: int = Field(description="The plan's price now x quantity")
    currency: str
    period: str
    current_period_start: Timestamp | None
    current_period_end: Timestamp | None
    cancel_at_period_end: bool
    canceled_at: Timestamp | None
    ended_at: Timestamp | None
    past_due_since: Timestamp | None
    suspended_at: Timestamp | None
    scheduled_removals: int = 0
    created_at: Timestamp | None
    updated_at: Timestamp | None


class ProrationOut(ApiOut):
    amount: int = Field(description="Charged (positive) or credited (negative), minor units")
    remaining_seconds: int
    period_seconds: int
    invoice_id: str | None


class SubscriptionChangeOut(ApiOut):
    subscription: SubscriptionOut
    proration: ProrationOut


# Wallet


class AutoRechargeIn(ApiModel):
    model_config = example({"enabled": True, "threshold": 2000, "amount": 10000})

    enabled: bool
    threshold: MinorUnits | None = Field(
        default=None, description="Recharge when the balance falls under this"
    )
    amount: PositiveMinorUnits | None = Field(default=None, description="What one recharge adds")


class AutoRechargeOut(ApiOut):
    enabled: bool
    threshold: int
    amount: int


class WalletOut(ApiOut):
    balance: int
    currency: str
    formatted_balance: str
    billing: str
    payment_provider: str
    has_payment_method: bool
    auto_recharge: AutoRechargeOut


class TopUpIn(ApiModel):
    model_config = example(
        {
            "amount": 5000,
            "successUrl": "https://app.example.com/billing?paid=1",
            "cancelUrl": "https://app.example.com/billing",
        }
    )

    amount: PositiveMinorUnits
    success_url: HttpUrl | None = Field(
        default=None, description="Where checkout returns after paying (Stripe)"
    )
    cancel_url: HttpUrl | None = Field(default=None, description="Where an abandoned checkout goes")
    note: str | None = Field(
        default=None, max_length=500, description="Manual payments: the transfer's reference"
    )


class PaymentOut(ApiOut):
    id: str
    provider: str
    purpose: str
    amount: int
    currency: str
    status: str
    checkout_url: str | None
    failure_message: str | None
    note: str | None
    created_at: Timestamp
    succeeded_at: Timestamp | None


class TopUpOut(ApiOut):
    payment: PaymentOut
    balance: int


class CreditIn(ApiModel):
    model_config = example({"amount": 1000, "reason": "Goodwill credit for the outage of 3 May"})

    amount: PositiveMinorUnits
    reason: str = Field(min_length=1, max_length=500)


class LedgerEntryOut(ApiOut):
    id: str
    amount: int
    balance_after: int
    currency: str
    kind: str
    description: str
    payment_id: str | None
    invoice_id: str | None
    subscription_id: str | None
    created_at: Timestamp


class CreditOut(ApiOut):
    entry: LedgerEntryOut
    balance: int


# Invoices and billing details


class InvoiceLineOut(ApiOut):
    description: str
    quantity: int
    unit_amount: int
    amount: int


class InvoiceOut(ApiOut):
    id: str
    number: str
    kind: str
    status: str
    currency: str
    lines: list[InvoiceLineOut]
    subtotal: int
    total: int
    bill_to: dict[str, Any] | None
    subscription_id: str | None
    payment_id: str | None
    period_start: Timestamp | None
    period_end: Timestamp | None
    issued_at: Timestamp
    paid_at: Timestamp | None
    html_url: str


class BillingDetailsIn(ApiModel):
    model_config = example(
        {
            "companyName": "Acme GmbH",
            "addressLine1": "Hauptstr. 1",
            "city": "Berlin",
            "postalCode": "10115",
            "country": "DE",
            "taxId": "DE123456789",
            "billingEmail": "billing@acme.example",
        }
    )

    company_name: str = Field(min_length=1, max_length=200)
    address_line1: str = Field(min_length=1, max_length=200)
    address_line2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=100)
    state: str | None = Field(default=None, max_length=100)
    postal_code: str | None = Field(default=None, max_length=20)
    country: str = Field(min_length=2, max_length=2, description="ISO 3166-1 alpha-2")
    tax_id: str | None = Field(
        default=None, max_length=40, description="VAT or tax number, checked for the country"
    )
    billing_email: EmailAddress


class BillingDetailsOut(ApiOut):
    company_name: str
    address_line1: str
    address_line2: str | None
    city: str
    state: str | None
    postal_code: str | None
    country: str
    tax_id: str | None
    billing_email: str
    updated_at: Timestamp


class StripeWebhookOut(ApiOut):
    """Stripe only needs a 2xx; the outcome helps when reading Stripe's delivery log."""

    received: bool = True
    outcome: str = Field(examples=["credited", "duplicate", "ignored"])
