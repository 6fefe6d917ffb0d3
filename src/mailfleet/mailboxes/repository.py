"""Mailbox, tag and pool look-ups, and the one mailbox filter query.

The listing (`GET /mailboxes`, DeepLead's inboxes) and the export selection
(CSV files, pushes to a platform) filter mailboxes the same way, here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, String, func, literal, or_, select, tuple_

from mailfleet.kit.pagination import Keyset, Page
from mailfleet.kit.repository import Repository
from mailfleet.models import Mailbox, Pool, Tag, mailbox_tags
from mailfleet.models.common import UTCDateTime

# The listing order; ix_mailboxes_workspace_created (and _status_created for a status
# filter) hold it, so a page is an index range, not a sort of the whole workspace.
NEWEST_FIRST = (Mailbox.created_at.desc(), Mailbox.id.desc())


@dataclass(frozen=True)
class MailboxFilters:
    """Every filter given must match; `tag` and `tags` are tag ids or names, any matches."""

    status: str | None = None
    provider: str | None = None
    tag: str | None = None
    tags: Sequence[str] | None = None
    domain: str | None = None
    search: str | None = None
    pool_id: str | None = None


class MailboxRepository(Repository[Mailbox], model=Mailbox, noun="Mailbox"):
    @classmethod
    def filtered(cls, workspace_id: str, filters: MailboxFilters) -> Select[Any]:
        query = cls.owned_by(workspace_id)
        if filters.status:
            query = query.where(Mailbox.status == filters.status)
        if filters.pool_id:
            query = query.where(Mailbox.pool_id == filters.pool_id)
        if filters.provider:
            query = query.where(Mailbox.provider == filters.provider.lower())
        if filters.domain:
            query = query.where(Mailbox.domain == filters.domain.lower().rstrip("."))
        names = [*([filters.tag] if filters.tag else []), *(filters.tags or ())]
        if names:
            tagged = (
                select(mailbox_tags.c.mailbox_id)
                .join(Tag, Tag.id == mailbox_tags.c.tag_id)
                .where(
                    Tag.workspace_id == workspace_id, or_(Tag.id.in_(names), Tag.name.in_(names))
                )
            )
            query = query.where(Mailbox.id.in_(tagged))
        if filters.search:
            pattern = f"%{filters.search.lower()}%"
            query = query.where(
                or_(Mailbox.email.like(pattern), func.lower(Mailbox.display_name).like(pattern))
            )
        return query

    async def count(self, query: Select[Any]) -> int:
        """How many rows `query` (a `filtered` one) matches, counted without a subquery."""
        counted = query.with_only_columns(func.count(), maintain_column_froms=True)
        return await self.session.scalar(counted) or 0

    async def newest_page(
        self, query: Select[Any], page: Page, after: Keyset | None = None
    ) -> tuple[list[Mailbox], bool]:
        """One page of `query` newest first (after `after` when given), and whether
        more rows follow it: one row more than the page is read to know."""
        if after is not None:
            # A row-value comparison, so both backends seek the ordering index to the
            # cursor instead of scanning the rows before it.
            query = query.where(
                tuple_(Mailbox.created_at, Mailbox.id)
                < tuple_(literal(after.created_at, UTCDateTime()), literal(after.id, String()))
            )
        cut = query.order_by(*NEWEST_FIRST).limit(page.limit + 1).offset(page.skip)
        rows = list(await self.session.scalars(cut))
        return rows[: page.limit], len(rows) > page.limit


class TagRepository(Repository[Tag], model=Tag, noun="Tag"): ...


class PoolRepository(Repository[Pool], model=Pool, noun="Pool"): ...
