"""Request and response shapes of buying domains: availability, orders, payment links."""

from __future__ import annotations

from pydantic import Field

from mailfleet.domains.schemas import DnsProviderName, MailProviderName
from mailfleet.kit.envelope import ApiModel, ApiOut, Timestamp, example

MAX_NAMES_PER_PURCHASE = 50


class PriceOut(ApiOut):
    amount: int = Field(description="Minor units (cents) for the whole term, markup included")
    currency: str
    years: int


class AvailabilityOut(ApiOut):
    domain: str
    unicode_name: str
    # None when the registrar could not be asked (its rate limit): see `reason`.
    available: bool | None
    premium: bool
    price: PriceOut | None
    reason: str | None = None
    retry_after: float | None = None


class AvailabilitySearchOut(ApiOut):
    query: str | None
    results: list[AvailabilityOut]
    suggestions: list[AvailabilityOut]


class ContactIn(ApiModel):
    """The registrant; registrars that take one per order (Namecheap) need it."""

    first_name: str = Field(min_length=1, max_length=60)
    last_name: str = Field(min_length=1, max_length=60)
    organization: str | None = Field(default=None, max_length=100)
    address1: str = Field(min_length=1, max_length=200)
    address2: str | None = Field(default=None, max_length=200)
    city: str = Field(min_length=1, max_length=60)
    state_province: str = Field(min_length=1, max_length=60)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(pattern=r"^[A-Za-z]{2}$", description="ISO 3166-1 alpha-2")
    phone: str = Field(pattern=r"^\+[0-9]{1,3}\.[0-9]{4,14}$", description="+NNN.NNNNNNNNNN")
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")


class PurchaseIn(ApiModel):
    model_config = example(
        {
            "domains": ["getbrand.com", "brandhq.com"],
            "years": 1,
            "dnsProvider": "mailfleet",
            "mailProvider": "self-hosted",
            "autoRenew": False,
        }
    )

    domains: list[str] = Field(min_length=1, max_length=MAX_NAMES_PER_PURCHASE)
    years: int = Field(default=1, ge=1, le=10)
    dns_provider: DnsProviderName = "mailfleet"
    mail_provider: MailProviderName = "self-hosted"
    auto_renew: bool = False
    allow_premium: bool = Field(default=False, description="Buy premium names at their price")
    contact: ContactIn | None = None


class OrderItemOut(ApiOut):
    id: str
    domain: str
    unicode_name: str
    status: str = Field(description="pending_payment, registering, registered, connected, failed")
    premium: bool
    price: PriceOut
    reason: str | None
    new_price: PriceOut | None = Field(description="The registrar's new price, when it changed")
    refunded: bool
    domain_id: str | None
    registered_at: Timestamp | None
    connected_at: Timestamp | None


class OrderOut(ApiOut):
    id: str
    status: str = Field(description="pending_payment, processing or completed")
    registrar: str
    years: int
    dns_provider: str
    mail_provider: str
    auto_renew: bool
    total: int
    currency: str
    charged: bool
    payment_id: str | None
    items: list[OrderItemOut]
    created_at: Timestamp
    completed_at: Timestamp | None


class PaymentLinkOut(ApiOut):
    order_id: str
    payment_id: str
    amount: int
    currency: str
    status: str
    checkout_url: str | None
