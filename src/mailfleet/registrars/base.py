"""The interface every domain registrar implements, and the values it trades in.

Prices are integers in the registrar's currency's minor unit (cents), for the
whole term asked for. Errors carry a message safe to show a customer: never a
key, a raw answer or a URL holding credentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Protocol


class RegistrarError(Exception):
    """The registrar refused or failed a request.

    `retryable`: a timeout, a dropped connection or a 5xx, where the request may
    or may not have been carried out; False for a definite refusal.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class RegistrarRateLimited(RegistrarError):
    """The registrar's rate limit is used up; `retry_after` seconds until it resets."""

    def __init__(
        self, message: str, retry_after: float, checked: Sequence[Availability] = ()
    ) -> None:
        super().__init__(message, retryable=True)
        self.retry_after = retry_after
        # What a batch of checks answered before the limit stopped it.
        self.checked = list(checked)


class UnsupportedTld(RegistrarError):
    """The registrar does not sell names under this TLD (through its API)."""


@dataclass(frozen=True)
class Availability:
    name: str
    available: bool
    premium: bool
    # The registrar's price for the term asked for; None when it gave none.
    cost: int | None
    currency: str
    # Why a name is not available, when the registrar said.
    reason: str | None = None


@dataclass(frozen=True)
class Registration:
    name: str
    # The registrar's order (or transaction) id, and what it charged, when it said.
    order_ref: str | None
    charged: int | None


@dataclass(frozen=True)
class Contact:
    """The registrant (also used as admin, tech and billing contact)."""

    first_name: str
    last_name: str
    address1: str
    city: str
    state_province: str
    postal_code: str
    country: str
    phone: str
    email: str
    organization: str | None = None
    address2: str | None = None


class Registrar(Protocol):
    name: str
    currency: str
    # Registration terms (years) this registrar's API can buy.
    max_years: int

    async def supported_tlds(self) -> set[str]:
        """TLDs (lowercase, no dot) the registrar sells through its API."""
        ...

    async def check(self, names: Sequence[str], years: int) -> list[Availability]:
        """Availability and price of each name, in the order given."""
        ...

    async def register(
        self,
        name: str,
        years: int,
        cost: int,
        *,
        premium: bool,
        contact: Contact | None,
        idempotency_key: str,
    ) -> Registration:
        """Buy `name` for `cost` (what `check` quoted); the registrar refuses a
        price that changed."""
        ...

    async def owns(self, name: str) -> bool:
        """Whether `name` is registered in this registrar account already."""
        ...

    async def set_nameservers(self, name: str, nameservers: Sequence[str]) -> None: ...

    async def aclose(self) -> None: ...


def to_cents(text: str | None) -> int | None:
    """ "9.68" -> 968; None for a missing or unreadable amount."""
    if text is None or str(text).strip() == "":
        return None
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    return int((value * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
