"""Mailbox, tag and pool look-ups, and the one mailbox filter query.

The listing (`GET /mailboxes`, DeepLead's inboxes) and the export selection
(CSV files, pushes to a platform) filter mailboxes the same way, here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, String, func, literal, or_, select, tuple_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

from mailfleet.kit.pagination import Keyset, Page
from mailfleet.kit.repository import Repository
from mailfleet.models import Mailbox, MailboxCount, MailboxTagCount, Pool, Tag, mailbox_tags
from mailfleet.models.common import UTCDateTime

# The listing order; the ix_mailboxes_workspace_* indexes hold it under each equality
# filter, so a page is an index range, not a sort of the whole workspace.
NEWEST_FIRST = (Mailbox.created_at.desc(), Mailbox.id.desc())


class folded(GenericFunction[str]):
    """lower(x) for a case-blind LIKE: SQLite's LIKE already ignores ASCII case, and
    its lower() folds nothing more, so there it is the bare column and the scan of a
    search skips a function call per row (a third of its time over 100,000 rows)."""

    type = String()
    name = "lower"
    inherit_cache = True


@compiles(folded, "sqlite")
def _folded_on_sqlite(element: folded, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


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

    @property
    def tag_names(self) -> list[str]:
        return [*([self.tag] if self.tag else []), *(self.tags or ())]

    @property
    def only_tags(self) -> bool:
        """Whether tags are the only filter (their count comes from the tags' own
        tables: `count_tagged`)."""
        return bool(self.tag_names) and self == MailboxFilters(tag=self.tag, tags=self.tags)

    def fingerprint(self) -> str:
        """A short digest of the filters, so a cursor's carried total is only reused
        for the filters it was counted under."""
        values = [
            value if isinstance(value, str | None) else list(value) for value in astuple(self)
        ]
        return hashlib.sha256(repr(values).encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class MailboxListing:
    """A mailbox as a list page shows it: its columns read as plain rows, and its tags'
    names. A page of 100 mapped `Mailbox` objects and their `Tag`s cost about 14 ms of
    CPU in the ORM's identity map and instance state, four times the page's queries;
    a listing is only read, so it needs none of that. The field names are the column
    names (the `LISTED_COLUMNS` read), so `mailbox_out` takes either."""

    id: str
    email: str
    display_name: str
    provider: str
    status: str
    connection_type: str
    daily_send_limit: int
    sending_enabled: bool
    signature: str | None
    smtp_host: str
    smtp_port: int
    smtp_secure: bool
    smtp_username: str
    imap_host: str
    imap_port: int
    imap_secure: bool
    imap_username: str
    domain: str
    pool_id: str | None
    placement_seed: bool
    setup_status: dict[str, Any] | None
    last_verified_at: datetime | None
    created_at: datetime
    updated_at: datetime
    hosted_domain_id: str | None
    first_name: str | None
    last_name: str | None
    quota_bytes: int | None
    forward_to: str | None
    tag_names: list[str]


LISTED_COLUMNS = [
    Mailbox.__table__.c[field.name] for field in fields(MailboxListing) if field.name != "tag_names"
]


class MailboxRepository(Repository[Mailbox], model=Mailbox, noun="Mailbox"):
    @classmethod
    def _tagged(cls, workspace_id: str, names: Sequence[str]) -> Select[Any]:
        return (
            select(mailbox_tags.c.mailbox_id)
            .join(Tag, Tag.id == mailbox_tags.c.tag_id)
            .where(Tag.workspace_id == workspace_id, or_(Tag.id.in_(names), Tag.name.in_(names)))
        )

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
        if names := filters.tag_names:
            query = query.where(Mailbox.id.in_(cls._tagged(workspace_id, names)))
        if filters.search:
            query = query.where(cls.searched(filters.search))
        return query

    @staticmethod
    def searched(search: str) -> ColumnElement[bool]:
        """`search`'s condition: a substring of the email or the display name, in any
        case. On PostgreSQL its two LIKEs are what the pg_trgm indexes of migration
        0018 are built on, expression for expression."""
        pattern = f"%{search.lower()}%"
        return or_(Mailbox.email.like(pattern), folded(Mailbox.display_name).like(pattern))

    async def count(self, query: Select[Any]) -> int:
        """How many rows `query` (a `filtered` one) matches, counted without a subquery."""
        counted = query.with_only_columns(func.count(), maintain_column_froms=True)
        return await self.session.scalar(counted) or 0

    async def counts_by_status(self, workspace_id: str) -> dict[str, int]:
        """The workspace's mailboxes per status, from `mailbox_counts` (kept exact by
        triggers, migration 0017): a few rows read, however many mailboxes."""
        rows = await self.session.execute(
            select(MailboxCount.status, func.sum(MailboxCount.n))
            .where(MailboxCount.workspace_id == workspace_id)
            .group_by(MailboxCount.status)
        )
        return {status: int(n) for status, n in rows if n}

    async def count_matching(self, workspace_id: str, filters: MailboxFilters) -> int:
        """How many mailboxes match `filters`."""
        if filters == MailboxFilters() or filters == MailboxFilters(status=filters.status):
            counts = await self.counts_by_status(workspace_id)
            return counts.get(filters.status, 0) if filters.status else sum(counts.values())
        if filters.only_tags:
            return await self.count_tagged(workspace_id, filters.tag_names)
        return await self.count(self.filtered(workspace_id, filters))

    async def count_tagged(self, workspace_id: str, names: Sequence[str]) -> int:
        """How many of the workspace's mailboxes carry any of the tags `names` (ids
        or names). When they match one tag, its count is read from
        `mailbox_tag_counts` (kept exact by triggers, migration 0019): a few rows,
        however many mailboxes carry it."""
        matched, maintained = (
            await self.session.execute(
                select(func.count(Tag.id.distinct()), func.sum(MailboxTagCount.n))
                .select_from(Tag)
                .outerjoin(MailboxTagCount, MailboxTagCount.tag_id == Tag.id)
                .where(
                    Tag.workspace_id == workspace_id,
                    or_(Tag.id.in_(names), Tag.name.in_(names)),
                )
            )
        ).one()
        if matched <= 1:
            return int(maintained or 0)
        # A mailbox carrying two of the tags counts once: the per-tag counts cannot
        # be added up. The links are counted from ix_mailbox_tags_tag_mailbox alone,
        # instead of a probe of every mailbox of the workspace (a tag belongs to one
        # workspace, so its mailboxes are that workspace's).
        tagged = self._tagged(workspace_id, names)
        counted = tagged.with_only_columns(func.count(mailbox_tags.c.mailbox_id.distinct()))
        return await self.session.scalar(counted) or 0

    async def newest_page(
        self, query: Select[Any], page: Page, after: Keyset | None = None
    ) -> tuple[list[Mailbox], bool]:
        """One page of `query` newest first (after `after` when given), and whether
        more rows follow it: one row more than the page is read to know."""
        rows = list(await self.session.scalars(self._newest_cut(query, page, after)))
        return rows[: page.limit], len(rows) > page.limit

    async def newest_listings(
        self,
        query: Select[Any],
        page: Page,
        after: Keyset | None = None,
        *,
        with_tags: bool = True,
    ) -> tuple[list[MailboxListing], bool]:
        """`newest_page` read as listings: the same rows, in two queries (the page's
        columns, then its tags' names) and without mapped objects. `with_tags=False`
        skips the second, for a caller that shows no tags (`tag_names` stay empty)."""
        listed = query.with_only_columns(*LISTED_COLUMNS)
        rows = (await self.session.execute(self._newest_cut(listed, page, after))).all()
        has_more = len(rows) > page.limit
        rows = rows[: page.limit]
        names: dict[str, list[str]] = {row.id: [] for row in rows}
        if names and with_tags:
            tagged = await self.session.execute(
                select(mailbox_tags.c.mailbox_id, Tag.name)
                .join(Tag, Tag.id == mailbox_tags.c.tag_id)
                .where(mailbox_tags.c.mailbox_id.in_(names))
            )
            for mailbox_id, name in tagged:
                names[mailbox_id].append(name)
        # Positionally: the columns are the fields, in order (a keyword call through
        # the row's mapping cost more than the query).
        return [MailboxListing(*(*row, names[row.id])) for row in rows], has_more

    @staticmethod
    def _newest_cut(query: Select[Any], page: Page, after: Keyset | None) -> Select[Any]:
        """`query` newest first, from `page.skip` or after `after`, one row more than
        the page (to know whether more follow)."""
        if after is not None:
            # A row-value comparison, so both backends seek the ordering index to the
            # cursor instead of scanning the rows before it.
            query = query.where(
                tuple_(Mailbox.created_at, Mailbox.id)
                < tuple_(literal(after.created_at, UTCDateTime()), literal(after.id, String()))
            )
        return query.order_by(*NEWEST_FIRST).limit(page.limit + 1).offset(page.skip)


class TagRepository(Repository[Tag], model=Tag, noun="Tag"): ...


class PoolRepository(Repository[Pool], model=Pool, noun="Pool"): ...
