"""Time, always UTC, rendered as API.md fixes it: ISO 8601 with milliseconds and Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is not None:
        # SQLite hands datetimes back naive, and everything stored is UTC; an aware
        # one is brought to UTC first. isoformat() is C, strftime() formats in Python
        # (a list page renders 300 of these).
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="milliseconds") + "Z"
