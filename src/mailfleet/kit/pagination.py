"""Limit/skip pagination as API.md fixes it: limit default 100, max 1000."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, Query

from mailfleet.kit.envelope import Pagination
from mailfleet.kit.errors import ValidationFailed

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Bounded so skip + limit fits the 64-bit integers SQLite and PostgreSQL take for
# OFFSET: a larger skip was an OverflowError (500) on SQLite. No list comes near it.
MAX_SKIP = 2**31 - 1

SkipQuery = Annotated[
    int, Query(ge=0, le=MAX_SKIP, description="Items to pass over (0 to 2147483647)")
]
LimitQuery = Annotated[int, Query(ge=1, le=MAX_LIMIT)]


@dataclass(frozen=True)
class Page:
    limit: int
    skip: int

    def describe(self, total: int) -> Pagination:
        return Pagination(
            total=total, limit=self.limit, skip=self.skip, has_more=self.skip + self.limit < total
        )


async def page_params(
    limit: LimitQuery = DEFAULT_LIMIT,
    skip: SkipQuery = 0,
) -> Page:
    return Page(limit=limit, skip=skip)


PageDep = Annotated[Page, Depends(page_params)]


@dataclass(frozen=True)
class Keyset:
    """Where a page sorted newest first ends: the last row's `created_at` and id.

    On the wire it is opaque (base64url of JSON), so its layout can change without
    clients noticing; a page after it starts with the next row in that order, however
    deep, at the cost of one index seek instead of OFFSET's walk over every row before.
    It also carries the list's total as counted on the first page, with a digest of
    the filters it was counted under (`scope`), so later pages need not count again.
    """

    created_at: datetime
    id: str
    total: int | None = None
    scope: str = ""

    def encode(self) -> str:
        stamp = self.created_at.astimezone(UTC).isoformat()
        raw = json.dumps([stamp, self.id, self.total, self.scope], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, field: str = "cursor") -> Keyset:
        """The keyset in `text`, or VALIDATION_ERROR naming `field`."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            stamp, ident, total, scope = json.loads(raw)
            moment = datetime.fromisoformat(stamp)
            counted = total is None or (type(total) is int and total >= 0)
            if not (isinstance(ident, str) and ident and isinstance(scope, str) and counted):
                raise ValueError("not a cursor")
            if moment.tzinfo is None:
                raise ValueError("not a cursor")
        except (ValueError, TypeError) as exc:
            raise ValidationFailed.for_field(
                field, "Not a cursor this API gave out; pass nextCursor from a previous page"
            ) from exc
        return cls(moment.astimezone(UTC), ident, total, scope)
