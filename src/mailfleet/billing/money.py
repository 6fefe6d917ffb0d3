"""Money and billing periods, in integers only.

Amounts are counts of a currency's minor unit (cents for USD, yen for JPY).
Nothing here touches the database.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime

# ISO 4217 currencies whose minor unit is not the hundredth (Stripe's lists).
_ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()  # noqa: SIM905
)
_THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())  # noqa: SIM905


def minor_unit_digits(currency: str) -> int:
    code = currency.upper()
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def format_amount(amount: int, currency: str) -> str:
    """`1234, "usd"` -> `"USD 12.34"`; `-5, "usd"` -> `"USD -0.05"`. Exact: no floats."""
    digits = minor_unit_digits(currency)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**digits)
    text = f"{whole:,}" + (f".{fraction:0{digits}d}" if digits else "")
    return f"{currency.upper()} {sign}{text}"


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time `months` later, clamped to the month's last day."""
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def period_bounds(anchor: datetime, period: str, index: int) -> tuple[datetime, datetime]:
    """Start and end of the `index`-th period (0 is the first) counted from `anchor`.

    Counting from the anchor keeps month ends in place: a subscription started on
    January 31 renews on February 28, then March 31, not March 28.
    """
    months = 12 if period == "year" else 1
    return add_months(anchor, months * index), add_months(anchor, months * (index + 1))


@dataclass(frozen=True)
class Proration:
    """What a mid-period change costs: positive is charged, negative credited."""

    amount: int
    remaining_seconds: int
    period_seconds: int


def prorate(
    old_amount: int, new_amount: int, period_start: datetime, period_end: datetime, now: datetime
) -> Proration:
    """The share of `new_amount - old_amount` (per-period prices) left in the period.

    Rounding rule: (new - old) x remaining whole seconds / period seconds, rounded
    toward zero to the minor unit. An upgrade never charges, and a downgrade never
    credits, more than the exact share, so changing back and forth gains nothing.
    """
    period_seconds = int((period_end - period_start).total_seconds())
    if period_seconds <= 0:
        return Proration(0, 0, 0)
    remaining = int((period_end - now).total_seconds())
    remaining = max(0, min(period_seconds, remaining))
    delta = new_amount - old_amount
    share = abs(delta) * remaining // period_seconds
    return Proration(share if delta >= 0 else -share, remaining, period_seconds)
