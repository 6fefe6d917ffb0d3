"""Money and period arithmetic: integers only, and the documented rounding rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailfleet.billing.money import add_months, format_amount, period_bounds, prorate
from mailfleet.billing.taxids import TaxIdError, normalize_country, normalize_tax_id

START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)  # 31 days: 2,678,400 seconds


def test_upgrade_half_way_charges_half_the_difference() -> None:
    middle = START + (END - START) / 2
    result = prorate(3 * 300, 5 * 300, START, END, middle)
    assert result.amount == 300  # (1500 - 900) x 1/2
    assert (result.remaining_seconds, result.period_seconds) == (1_339_200, 2_678_400)


def test_downgrade_credits_and_rounds_toward_zero() -> None:
    # 10 days of 31 left: exact shares are 1000 * 10/31 = 322.58... cents.
    now = END - timedelta(days=10)
    assert prorate(0, 1000, START, END, now).amount == 322
    assert prorate(1000, 0, START, END, now).amount == -322


def test_up_then_down_never_gains() -> None:
    now = START + timedelta(days=7, hours=5, seconds=13)
    up = prorate(700, 1301, START, END, now).amount
    down = prorate(1301, 700, START, END, now).amount
    assert up == -down
    assert up + down == 0


def test_whole_seconds_only() -> None:
    # 0.9 s left counts as 0 whole seconds: nothing to charge.
    assert prorate(0, 10**9, START, END, END - timedelta(microseconds=900_000)).amount == 0


def test_outside_the_period_is_clamped() -> None:
    assert prorate(0, 1000, START, END, END + timedelta(days=1)).amount == 0
    assert prorate(0, 1000, START, END, START - timedelta(days=1)).amount == 1000


def test_amounts_stay_exact_for_huge_values() -> None:
    big = 10**15 + 7
    now = START + timedelta(seconds=1)
    expected = big * (2_678_400 - 1) // 2_678_400
    assert prorate(0, big, START, END, now).amount == expected


def test_periods_keep_month_ends() -> None:
    anchor = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert add_months(anchor, 1) == datetime(2026, 2, 28, 12, 0, tzinfo=UTC)
    ends = [period_bounds(anchor, "month", index)[1].date().isoformat() for index in range(3)]
    assert ends == ["2026-02-28", "2026-03-31", "2026-04-30"]
    assert period_bounds(datetime(2024, 2, 29, tzinfo=UTC), "year", 0)[1] == datetime(
        2025, 2, 28, tzinfo=UTC
    )


def test_format_amount_uses_the_currency_minor_unit() -> None:
    assert format_amount(123456, "usd") == "USD 1,234.56"
    assert format_amount(-5, "EUR") == "EUR -0.05"
    assert format_amount(1500, "JPY") == "JPY 1,500"
    assert format_amount(1234, "KWD") == "KWD 1.234"


def test_tax_ids_are_checked_for_the_country() -> None:
    assert normalize_tax_id("DE", "DE 136,695 976") == "DE136695976"
    assert normalize_tax_id("DE", "136695976") == "DE136695976"
    assert normalize_tax_id("GR", "094259216") == "EL094259216"
    assert normalize_tax_id("GB", "GB 980 7806 84") == "980780684"
    with pytest.raises(TaxIdError, match="invalid length"):
        normalize_tax_id("DE", "DE123")
    with pytest.raises(TaxIdError):
        normalize_tax_id("FR", "FR00000000000")
    # A country python-stdnum has no format for: kept as given.
    assert normalize_tax_id("AQ", "  ANT  42 ") == "ANT 42"
    assert normalize_country("de") == "DE"
    with pytest.raises(TaxIdError):
        normalize_country("XX")
