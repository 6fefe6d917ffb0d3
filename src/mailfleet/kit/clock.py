"""Time, always UTC, rendered as API.md fixes it: ISO 8601 with milliseconds and Z."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def isoformat(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # isoformat() is C, strftime() formats in Python (a list page renders 300 of these).
    if moment.tzinfo is UTC:  # what the database's UTCDateTime columns give
        return moment.isoformat(timespec="milliseconds")[:-6] + "Z"
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    # Naive: everything stored is UTC.
    return moment.isoformat(timespec="milliseconds") + "Z"
