"""Mailbox, tag and pool look-ups, and the one mailbox filter query.

The listing (`GET /mailboxes`, DeepLead's inboxes) and the export selection
(CSV files, pushes to a platform) filter mailboxes the same way, here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from typing import Any, ClassVar, Final, NamedTuple, cast

from sqlalchemy import (
    JSON,
    BindParameter,
    ColumnElement,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    exists,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy import table as sql_table
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

from mailfleet.kit.pagination import Keyset, Page
from mailfleet.kit.repository import Repository
from mailfleet.kit.sql import unindexed
from mailfleet.models import Mailbox, MailboxCount, MailboxTagCount, Pool, Tag, mailbox_tags
from mailfleet.models.common import UTCDateTime

# Core tables: a statement over them skips the ORM's compile state and row loading
# (what a list page reads are plain rows).
mailboxes = cast(Table, Mailbox.__table__)
tags = cast(Table, Tag.__table__)


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


class json_list(GenericFunction[list[Any]]):
    """The values of an aggregated column as one JSON array: PostgreSQL's json_agg,
    SQLite's json_group_array (None over no rows on PostgreSQL, [] on SQLite)."""

    type = JSON()
    name = "json_agg"
    inherit_cache = True


@compiles(json_list, "sqlite")
def _json_list_on_sqlite(element: json_list, compiler: SQLCompiler, **kw: Any) -> str:
    return f"json_group_array({compiler.process(element.clauses, **kw)})"


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


@dataclass(slots=True)
class MailboxListing:
    """A mailbox as a list page reads it: its columns as plain rows (DeepLead's
    inboxes, which show no tags; `GET /v1/mailboxes` has its rows written as JSON by
    the database, `newest_rendered`). A page of 100 mapped `Mailbox` objects and
    their `Tag`s cost about 14 ms of CPU in the ORM's identity map and instance
    state, four times the page's queries; a listing is only read, so it needs none
    of that. The field names are the column names (the `LISTED_COLUMNS` read). Not
    frozen: a frozen dataclass sets each of its 29 fields through
    object.__setattr__."""

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


LISTED_COLUMNS = [mailboxes.c[field.name] for field in fields(MailboxListing)]


@dataclass(frozen=True)
class BoundFilters:
    """`MailboxFilters` as SQL conditions whose values are bind parameters, each
    named after its filter. The names depend only on which filters are given (the
    `shape`), so a statement built for one request runs any later one of the same
    shape with that request's `values`: a list page's statements are built once,
    not per request (building them cost more CPU than SQLite spent answering)."""

    conditions: list[ColumnElement[bool]]
    values: dict[str, Any]

    @property
    def shape(self) -> tuple[str, ...]:
        return tuple(self.values)

    @classmethod
    def of(
        cls,
        workspace_id: str,
        filters: MailboxFilters,
        tagged: TagMatch | None = None,
        searched: SearchMatch | None = None,
    ) -> BoundFilters:
        """`tagged`: the tags `filters` name, already looked up (`match_tags`), so
        the mailboxes' links are read by tag id without joining the tags again.
        `searched`: how `search` is read (`match_search`), if looked up."""
        values: dict[str, Any] = {}

        def bound(name: str, value: Any, **kw: Any) -> BindParameter[Any]:
            values[name] = value
            return bindparam(name, value, **kw)

        c = mailboxes.c
        # Read through the trigram index, a search's few rowids drive the query.
        by_phrase = bool(filters.search) and searched is not None and searched.phrase is not None

        def column(name: str) -> Any:
            return unindexed(c[name], type_=c[name].type) if by_phrase else c[name]

        conditions = [column("workspace_id") == bound("workspace_id", workspace_id)]
        if filters.status:
            conditions.append(column("status") == bound("status", filters.status))
        if filters.pool_id:
            conditions.append(column("pool_id") == bound("pool_id", filters.pool_id))
        if filters.provider:
            conditions.append(column("provider") == bound("provider", filters.provider.lower()))
        if filters.domain:
            domain = filters.domain.lower().rstrip(".")
            conditions.append(column("domain") == bound("domain", domain))
        if (names := filters.tag_names) and tagged is None:
            links = _tagged(
                bound("workspace_id", workspace_id), bound("tags", names, expanding=True)
            )
            conditions.append(c.id.in_(links))
        elif names and tagged is not None and tagged.dense:
            # A tag on many of the workspace's mailboxes: the page's walk down the
            # newest-first index meets enough of them soon, so probe each mailbox's
            # links (its primary key) rather than first reading every link of the tag.
            ids = bound("dense_tag_ids", tagged.ids, expanding=True)
            link = mailbox_tags.c
            conditions.append(exists().where(link.mailbox_id == c.id, link.tag_id.in_(ids)))
        elif names and tagged is not None:
            ids = bound("tag_ids", tagged.ids, expanding=True)
            conditions.append(c.id.in_(_links_of(ids)))
        if filters.search:
            conditions.append(_searched(bound("search", _contains(filters.search))))
            if by_phrase and searched is not None:
                # The few mailboxes the trigram index finds, the LIKE above then
                # applied to each (the index folds more case than SQLite's LIKE).
                phrase = bound("search_phrase", searched.phrase)
                conditions.append(_ROWID.in_(_search_candidates(phrase)))
        return cls(conditions, values)


@dataclass(frozen=True)
class SearchMatch:
    """How a list page reads `search`: through SQLite's trigram index as the FTS5
    `phrase` (migration 0021), or by its LIKE alone (`phrase` None: on PostgreSQL,
    whose planner picks its pg_trgm indexes itself; for fewer than three
    characters, which hold no trigram; and for a substring in more than
    SEARCH_INDEX_CAP mailboxes, found sooner down the newest-first index than
    read from the index one by one)."""

    phrase: str | None


# How many mailboxes the trigram index may find for a search to be read through it.
SEARCH_INDEX_CAP: Final = 5000
_ROWID: Final = literal_column("mailboxes.rowid", Integer())


def _search_candidates(phrase: Any) -> Select[Any]:
    """The rowids of the mailboxes whose trigrams hold the FTS5 `phrase`."""
    return (
        select(literal_column("rowid", Integer()))
        .select_from(sql_table("mailbox_search"))
        .where(literal_column("mailbox_search", String()).op("MATCH")(phrase))
    )


# At most SEARCH_INDEX_CAP + 1 of the mailboxes whose trigrams hold the `phrase`.
_SEARCH_PROBE: Final = select(func.count()).select_from(
    _search_candidates(bindparam("phrase")).limit(SEARCH_INDEX_CAP + 1).subquery()
)


@dataclass(frozen=True)
class TagMatch:
    """The workspace's tags a filter names (ids or names): their `ids`, how many
    links they have together (`links`, from `mailbox_tag_counts`; a mailbox with two
    of them counts twice) and how many mailboxes the workspace has."""

    ids: list[str]
    links: int
    workspace_total: int

    @property
    def dense(self) -> bool:
        """Whether the tags are on 2% of the workspace's mailboxes or more: a
        newest-first walk then meets a page of 101 within about 5,000 mailboxes,
        cheaper than reading every link first (SQLite: 1 against 2.4 ms for a tag
        on 7,500 of 100,000; a tag on 10 of them would walk all 100,000)."""
        return self.links * 50 >= self.workspace_total


def _links_of(tag_ids: Any) -> Select[Any]:
    return select(mailbox_tags.c.mailbox_id).where(mailbox_tags.c.tag_id.in_(tag_ids))


def _tagged(workspace_id: Any, names: Any) -> Select[Any]:
    """The ids of the mailboxes carrying any of the tags `names` (ids or names)."""
    return (
        select(mailbox_tags.c.mailbox_id)
        .join(tags, tags.c.id == mailbox_tags.c.tag_id)
        .where(
            tags.c.workspace_id == workspace_id, or_(tags.c.id.in_(names), tags.c.name.in_(names))
        )
    )


def _contains(search: str) -> str:
    """The LIKE pattern of `search` as a substring, lowered, its own % and _ (and
    the escape character) taken literally."""
    escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _searched(pattern: Any) -> ColumnElement[bool]:
    """`search`'s condition: a substring of the email or the display name, in any
    case (`pattern` is the lowered search between %s). On PostgreSQL its two LIKEs
    are what the pg_trgm indexes of migration 0018 are built on, expression for
    expression."""
    return or_(
        mailboxes.c.email.like(pattern, escape="\\"),
        folded(mailboxes.c.display_name).like(pattern, escape="\\"),
    )


def _newest_cut(
    query: Select[Any],
    *,
    after: bool,
    by: tuple[ColumnElement[Any], ColumnElement[Any]] = (mailboxes.c.created_at, mailboxes.c.id),
) -> Select[Any]:
    """`query` newest first, from the bound `offset` (or after the bound keyset
    `after_created_at`, `after_id`), `limit` rows. `by`: the creation time and id
    it orders by (the mailbox's own, or a tag link's copies of them)."""
    created_at, mailbox_id = by
    if after:
        # A row-value comparison, so both backends seek the ordering index to the
        # cursor instead of scanning the rows before it.
        query = query.where(
            tuple_(created_at, mailbox_id)
            < tuple_(
                bindparam("after_created_at", type_=UTCDateTime()),
                bindparam("after_id", type_=String()),
            )
        )
    # Newest first: the ix_mailboxes_workspace_* indexes hold this order under each
    # equality filter, so a page is an index range, not a sort of the workspace.
    return (
        query.order_by(created_at.desc(), mailbox_id.desc())
        .limit(bindparam("limit", type_=Integer()))
        .offset(bindparam("offset", type_=Integer()))
    )


# From this offset on, a page reads its rows' keys first (`_keys_first`).
DEEP_SKIP: Final = 1000


def _keys_first(bound: BoundFilters, *, after: bool, counted: bool = False) -> Select[Any]:
    """A deep offset's page (a `_newest_cut` of LISTED_COLUMNS, in its order): the
    cut taken over the rows' keys alone, then the page's columns read for the rows
    it kept. The keys are in the ordering indexes, so walking past the offset reads
    no table rows: PostgreSQL fetched every skipped row from the table (a
    `skip=99900` page: 55 to 76 ms against 21 to 30 ms read this way), and a
    search read through the trigram index sorts only its matches' keys. A shallow
    page stays one select (the join costs SQLite about 0.3 ms there). `counted`: each
    row also carries how many rows match in all (a window count, before the cut),
    after the page's columns, so the matches are read once for the page and its total."""
    keyed: list[ColumnElement[Any]] = [mailboxes.c.id, mailboxes.c.created_at]
    if counted:
        keyed.append(func.count().over().label("matched"))
    keys = _newest_cut(select(*keyed).where(*bound.conditions), after=after).subquery("page_keys")
    return (
        select(*LISTED_COLUMNS, *([keys.c.matched] if counted else []))
        .select_from(keys.join(mailboxes, mailboxes.c.id == keys.c.id))
        .order_by(keys.c.created_at.desc(), keys.c.id.desc())
    )


def _one_tag_cut(*, after: bool) -> Select[Any]:
    """A page of the mailboxes carrying the bound tag `tag_id` (a `_newest_cut` of
    LISTED_COLUMNS, in its order): the tag's links in ix_mailbox_tags_tag_created
    are already newest first (they carry their mailbox's creation time, migration
    0020), so the page is the first 101 of them and their mailboxes read by key, not
    a walk down the workspace's newest mailboxes probing each one's links. A tag
    belongs to one workspace: its mailboxes need no workspace condition."""
    link = mailbox_tags.c
    query = (
        select(*LISTED_COLUMNS)
        .select_from(mailbox_tags.join(mailboxes, mailboxes.c.id == link.mailbox_id))
        .where(link.tag_id == bindparam("tag_id", type_=String()))
    )
    return _newest_cut(query, after=after, by=(link.mailbox_created_at, link.mailbox_id))


def _cut_values(page: Page, after: Keyset | None) -> dict[str, Any]:
    # One row more than the page, to know whether more follow.
    values: dict[str, Any] = {"limit": page.limit + 1, "offset": page.skip}
    if after is not None:
        values |= {"after_created_at": after.created_at, "after_id": after.id}
    return values


def _tag_names_of(mailbox_id: ColumnElement[str]) -> ColumnElement[Any]:
    """The names of the tags of the mailbox `mailbox_id`, as one JSON list."""
    return (
        select(json_list(tags.c.name))
        .select_from(mailbox_tags.join(tags, tags.c.id == mailbox_tags.c.tag_id))
        .where(mailbox_tags.c.mailbox_id == mailbox_id)
        .scalar_subquery()
    )


# Builds a page row's JSON from its columns (by name) and its tags' names (a JSON
# list): `kit.sqljson.model_json` over the response model, which the API layer owns.
RowJson = Callable[[Mapping[str, ColumnElement[Any]], ColumnElement[Any]], ColumnElement[str]]


def _rendered(page: Select[Any], render: RowJson, *, counted: bool) -> Select[Any]:
    """`page` (a `_newest_cut` of LISTED_COLUMNS) as each row's key and its JSON
    (`render`, with the row's tags' names), then the window count when `counted`.
    The JSON and the names are read above the page's LIMIT and OFFSET: PostgreSQL
    computes a select list for every row an OFFSET skips, so a subquery beside the
    columns ran for 99,900 skipped rows of a deep `skip` page."""
    rows = page.subquery("page")
    columns = {column.key: column for column in rows.c}
    return select(
        rows.c.id,
        rows.c.created_at,
        render(columns, _tag_names_of(rows.c.id)),
        *([rows.c.matched] if counted else []),
    ).order_by(rows.c.created_at.desc(), rows.c.id.desc())


_tag_counts = cast(Table, MailboxTagCount.__table__)
_counts = cast(Table, MailboxCount.__table__)
# The workspace's tags `tags` (ids or names) match, with their maintained counts, and
# how many mailboxes the workspace has (in the same round trip).
_TAGS_MATCHED: Final = (
    select(
        tags.c.id,
        func.sum(_tag_counts.c.n),
        select(func.sum(_counts.c.n))
        .where(_counts.c.workspace_id == bindparam("workspace_id"))
        .scalar_subquery(),
    )
    .select_from(tags)
    .outerjoin(_tag_counts, _tag_counts.c.tag_id == tags.c.id)
    .where(
        tags.c.workspace_id == bindparam("workspace_id"),
        or_(
            tags.c.id.in_(bindparam("tags", expanding=True)),
            tags.c.name.in_(bindparam("tags", expanding=True)),
        ),
    )
    .group_by(tags.c.id)
)
# How many mailboxes carry any of the tags `tag_ids` (a mailbox with two, once): from
# ix_mailbox_tags_tag_mailbox alone (a tag belongs to one workspace, so its mailboxes
# are that workspace's).
_LINKED_MAILBOXES: Final = select(func.count(mailbox_tags.c.mailbox_id.distinct())).where(
    mailbox_tags.c.tag_id.in_(bindparam("tag_ids", expanding=True))
)
_COUNTS_BY_STATUS: Final = (
    select(_counts.c.status, func.sum(_counts.c.n))
    .where(_counts.c.workspace_id == bindparam("workspace_id"))
    .group_by(_counts.c.status)
)


class MailboxRepository(Repository[Mailbox], model=Mailbox, noun="Mailbox"):
    # Statements by (purpose, shape of the filters), each built on first use.
    _prepared: ClassVar[dict[tuple[str, tuple[str, ...]], Select[Any]]] = {}

    @classmethod
    def _statement(
        cls, purpose: str, bound: BoundFilters, build: Callable[[], Select[Any]]
    ) -> Select[Any]:
        key = (purpose, bound.shape)
        statement = cls._prepared.get(key)
        if statement is None:
            statement = cls._prepared[key] = build()
        return statement

    @classmethod
    def filtered(cls, workspace_id: str, filters: MailboxFilters) -> Select[Any]:
        """The workspace's mailboxes matching `filters`, as mapped objects (their
        values bound in the statement), for a caller to narrow further."""
        return select(Mailbox).where(*BoundFilters.of(workspace_id, filters).conditions)

    @staticmethod
    def searched(search: str) -> ColumnElement[bool]:
        """`search`'s condition, its pattern bound in it."""
        return _searched(literal(_contains(search), String()))

    async def count(self, query: Select[Any]) -> int:
        """How many rows `query` (a `filtered` one) matches, counted without a subquery."""
        counted = query.with_only_columns(func.count(), maintain_column_froms=True)
        return await self.session.scalar(counted) or 0

    async def counts_by_status(self, workspace_id: str) -> dict[str, int]:
        """The workspace's mailboxes per status, from `mailbox_counts` (kept exact by
        triggers, migration 0017): a few rows read, however many mailboxes."""
        rows = await self.session.execute(_COUNTS_BY_STATUS, {"workspace_id": workspace_id})
        return {status: int(n) for status, n in rows if n}

    async def count_matching(
        self,
        workspace_id: str,
        filters: MailboxFilters,
        tagged: TagMatch | None = None,
        searched: SearchMatch | None = None,
    ) -> int:
        """How many mailboxes match `filters` (`tagged`, `searched`: their tags and
        how to read their search, if looked up)."""
        if filters == MailboxFilters() or filters == MailboxFilters(status=filters.status):
            counts = await self.counts_by_status(workspace_id)
            return counts.get(filters.status, 0) if filters.status else sum(counts.values())
        if filters.tag_names and tagged is None:
            tagged = await self.match_tags(workspace_id, filters.tag_names)
        if tagged is not None and not tagged.ids:
            return 0
        if filters.only_tags and tagged is not None:
            return await self._count_linked(tagged)
        if filters.search and searched is None:
            searched = await self.match_search(filters.search)
        bound = BoundFilters.of(workspace_id, filters, tagged, searched)
        counted = self._statement(
            "count",
            bound,
            lambda: select(func.count()).select_from(mailboxes).where(*bound.conditions),
        )
        return await self.session.scalar(counted, bound.values) or 0

    async def match_tags(self, workspace_id: str, names: Sequence[str]) -> TagMatch:
        """The workspace's tags `names` (ids or names) match, and their counts."""
        rows = (
            await self.session.execute(
                _TAGS_MATCHED, {"workspace_id": workspace_id, "tags": list(names)}
            )
        ).all()
        total = int(rows[0][2] or 0) if rows else 0
        return TagMatch(
            [tag_id for tag_id, _, _ in rows], sum(int(n or 0) for _, n, _ in rows), total
        )

    async def match_search(self, search: str) -> SearchMatch:
        """How `search` is read (see SearchMatch): on SQLite, through the trigram
        index when it holds the search in SEARCH_INDEX_CAP mailboxes or fewer, as
        counted there (up to one more)."""
        if self.session.get_bind().dialect.name != "sqlite" or len(search) < 3:
            return SearchMatch(None)
        # One FTS5 phrase: the search's trigrams in a row, whatever its characters.
        phrase = '"' + search.lower().replace('"', '""') + '"'
        found = await self.session.scalar(_SEARCH_PROBE, {"phrase": phrase}) or 0
        return SearchMatch(phrase if found <= SEARCH_INDEX_CAP else None)

    async def count_tagged(self, workspace_id: str, names: Sequence[str]) -> int:
        """How many of the workspace's mailboxes carry any of the tags `names` (ids
        or names)."""
        return await self._count_linked(await self.match_tags(workspace_id, names))

    async def _count_linked(self, tagged: TagMatch) -> int:
        """How many mailboxes carry any of the tags: for one tag, its count read from
        `mailbox_tag_counts` (kept exact by triggers, migration 0019), a few rows
        however many mailboxes carry it; for several, their links counted (a mailbox
        carrying two of them counts once, so the per-tag counts cannot be added)."""
        if len(tagged.ids) <= 1:
            return tagged.links
        return await self.session.scalar(_LINKED_MAILBOXES, {"tag_ids": tagged.ids}) or 0

    async def newest_page(self, query: Select[Any], page: Page) -> tuple[list[Mailbox], bool]:
        """One page of `query` (a `filtered` one) newest first, as mapped objects, and
        whether more rows follow it."""
        cut = _newest_cut(query, after=False).params(_cut_values(page, None))
        rows = list(await self.session.scalars(cut))
        return rows[: page.limit], len(rows) > page.limit

    async def newest_listings(
        self,
        workspace_id: str,
        filters: MailboxFilters,
        page: Page,
        after: Keyset | None = None,
        *,
        tagged: TagMatch | None = None,
        searched: SearchMatch | None = None,
    ) -> ListedPage:
        """One page of the matching mailboxes newest first (after `after` when
        given), as listings (their columns, no tags), and whether more rows follow
        it, in one prepared statement and without mapped objects. `tagged`,
        `searched`: the filter's tags and how to read its search, if looked up. A
        first page read through the trigram index also counts its matches (`total`;
        None otherwise)."""
        rows, has_more, counted = await self._newest(
            workspace_id, filters, page, after, tagged, searched, lambda cut, _: cut, "listings"
        )
        # Positionally: the columns are the fields, in order, then the count when
        # counted (a keyword call through the row's mapping cost more than the query).
        width = len(LISTED_COLUMNS)
        listings = [MailboxListing(*row[:width]) for row in rows[: page.limit]]
        total = int(rows[0][width]) if counted and rows else None
        return ListedPage(listings, has_more, total)

    async def newest_rendered(
        self,
        workspace_id: str,
        filters: MailboxFilters,
        page: Page,
        after: Keyset | None,
        render: RowJson,
        *,
        tagged: TagMatch | None = None,
        searched: SearchMatch | None = None,
    ) -> RenderedPage:
        """The page `newest_listings` reads, each row as the JSON `render` builds in
        the database (with its tags' names), beside its key."""

        def finish(cut: Select[Any], counted: bool) -> Select[Any]:
            return _rendered(cut, render, counted=counted)

        rows, has_more, counted = await self._newest(
            workspace_id, filters, page, after, tagged, searched, finish, "rendered"
        )
        listings = [RenderedListing(*row[:3]) for row in rows[: page.limit]]
        total = int(rows[0][3]) if counted and rows else None
        return RenderedPage(listings, has_more, total)

    async def _newest(
        self,
        workspace_id: str,
        filters: MailboxFilters,
        page: Page,
        after: Keyset | None,
        tagged: TagMatch | None,
        searched: SearchMatch | None,
        finish: Callable[[Select[Any], bool], Select[Any]],
        reading: str,
    ) -> tuple[Sequence[Any], bool, bool]:
        """A page's rows (one more than the page when more follow), whether more
        follow, and whether its rows carry the count of every match: the cut of the
        matching rows in their order, as `finish` reads it (`reading` names what
        it reads, for the statement cache)."""
        if filters.tag_names and tagged is None:
            tagged = await self.match_tags(workspace_id, filters.tag_names)
        if tagged is not None and not tagged.ids:
            return [], False, False
        if filters.search and searched is None:
            searched = await self.match_search(filters.search)
        bound = BoundFilters.of(workspace_id, filters, tagged, searched)
        keyset = after is not None
        # A search read through the trigram index sorts its few matches: their keys
        # first, as a deep page's, then the 101 rows kept.
        by_phrase = searched is not None and searched.phrase is not None
        deep = page.skip >= DEEP_SKIP or by_phrase
        # Its matches are few and read anyway: count them in the same pass.
        counted = by_phrase and not keyset
        # Filtered by one tag alone, the page walks that tag's links.
        one_tag = tagged is not None and len(tagged.ids) == 1 and filters.only_tags and not deep

        def build() -> Select[Any]:
            if one_tag:
                cut = _one_tag_cut(after=keyset)
            elif deep:
                cut = _keys_first(bound, after=keyset, counted=counted)
            else:
                cut = _newest_cut(select(*LISTED_COLUMNS).where(*bound.conditions), after=keyset)
            return finish(cut, counted)

        purpose = " ".join(
            filter(
                None,
                [
                    "one tag" if one_tag else "",
                    "keyset page" if keyset else "deep page" if deep else "page",
                    "counted" if counted else "",
                    reading,
                ],
            )
        )
        listed = self._statement(purpose, bound, build)
        values = {"tag_id": tagged.ids[0]} if one_tag and tagged else bound.values
        rows = (await self.session.execute(listed, values | _cut_values(page, after))).all()
        return rows, len(rows) > page.limit, counted


class ListedPage(NamedTuple):
    """A page of listings, whether more follow, and how many match in all when the
    page's own statement counted them (else None: `count_matching` does)."""

    listings: list[MailboxListing]
    has_more: bool
    total: int | None


class RenderedListing(NamedTuple):
    """A page's row as the database rendered it (`newest_rendered`): its key, and
    its JSON text."""

    id: str
    created_at: datetime
    json: str


class RenderedPage(NamedTuple):
    """A page of rendered rows, whether more follow, and how many match in all when
    the page's own statement counted them (else None)."""

    listings: list[RenderedListing]
    has_more: bool
    total: int | None


class TagRepository(Repository[Tag], model=Tag, noun="Tag"): ...


class PoolRepository(Repository[Pool], model=Pool, noun="Pool"): ...
