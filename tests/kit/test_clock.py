from datetime import UTC, datetime, timedelta, timezone

from mailfleet.kit.clock import isoformat


def test_isoformat_renders_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert isoformat(moment) == "2026-01-02T03:04:05.678Z"


def test_isoformat_reads_naive_as_utc_and_converts_other_zones() -> None:
    assert isoformat(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02T03:04:05.000Z"
    plus_two = timezone(timedelta(hours=2))
    assert isoformat(datetime(2026, 1, 2, 1, 0, 0, 999, tzinfo=plus_two)) == (
        "2026-01-01T23:00:00.000Z"
    )
    assert isoformat(None) is None
