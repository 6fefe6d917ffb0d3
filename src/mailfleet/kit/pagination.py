"""Limit/skip pagination as API.md fixes it: limit default 100, max 1000."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

from mailfleet.kit.envelope import Pagination

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page:
    limit: int
    skip: int

    def describe(self, total: int) -> Pagination:
        return Pagination(
            total=total, limit=self.limit, skip=self.skip, has_more=self.skip + self.limit < total
        )


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT,
    skip: Annotated[int, Query(ge=0)] = 0,
) -> Page:
    return Page(limit=limit, skip=skip)


PageDep = Annotated[Page, Depends(page_params)]
