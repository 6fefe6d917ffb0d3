"""Limit/skip pagination as API.md fixes it: limit default 100, max 1000."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

from mailfleet.kit.envelope import Pagination

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


def page_params(
    limit: LimitQuery = DEFAULT_LIMIT,
    skip: SkipQuery = 0,
) -> Page:
    return Page(limit=limit, skip=skip)


PageDep = Annotated[Page, Depends(page_params)]
