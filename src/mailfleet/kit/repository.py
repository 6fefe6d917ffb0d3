"""One way to look a row up and to page a query, for every area.

An area's repository names its model and the noun its 404 uses, and adds the
queries only it needs (filters); services call `get` / `paginate` instead of
writing "select, where id and owner, 404 if none" and "count, order, limit,
offset" again. Like polar's `RepositoryBase`: a thin class over one session,
no unit of work, no caching, and it never commits.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from mailfleet.kit.errors import NotFound
from mailfleet.kit.pagination import Page

M = TypeVar("M")
# A select of any columns (SQLAlchemy 2.1 types a select by its column tuple).
AnySelect = Select[*tuple[Any, ...]]


async def count(session: AsyncSession, query: AnySelect) -> int:
    """How many rows `query` yields, whatever it selects."""
    return await session.scalar(select(func.count()).select_from(query.subquery())) or 0


def page_of(query: AnySelect, page: Page, *order_by: Any) -> AnySelect:
    """`query` ordered (the last key must be unique, so pages never overlap) and cut."""
    return query.order_by(*order_by).limit(page.limit).offset(page.skip)


async def paginate(
    session: AsyncSession, query: Select[Any], page: Page, *order_by: Any
) -> tuple[list[Any], int]:
    """One page of the first column of `query` and the total over all pages."""
    total = await count(session, query)
    rows = await session.scalars(page_of(query, page, *order_by))
    return list(rows), total


async def paginate_rows(
    session: AsyncSession, query: AnySelect, page: Page, *order_by: Any
) -> tuple[list[Any], int]:
    """As `paginate`, for a query that selects several columns: rows as tuples."""
    total = await count(session, query)
    rows = await session.execute(page_of(query, page, *order_by))
    return [tuple(row) for row in rows], total


class Repository(Generic[M]):
    """Look-ups of one model over one session.

    `owner` is the column that scopes a row (its workspace, domain, endpoint...):
    a row outside the scope is "not found", never "forbidden", so ids can't be
    probed across workspaces.
    """

    model: ClassVar[type[Any]]
    noun: ClassVar[str]
    owner: ClassVar[str] = "workspace_id"

    def __init_subclass__(
        cls, *, model: type[Any], noun: str, owner: str = "workspace_id", **kwargs: Any
    ) -> None:
        # An area declares a repository in one line:
        # class DomainRepository(Repository[Domain], model=Domain, noun="Domain"): ...
        super().__init_subclass__(**kwargs)
        cls.model, cls.noun, cls.owner = model, noun, owner

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # Queries are built without a session, so a caller can narrow one further first.
    @classmethod
    def select(cls) -> Select[Any]:
        return select(cls.model)

    @classmethod
    def owned_by(cls, owner_id: str) -> Select[Any]:
        return cls.select().where(cls._column(cls.owner) == owner_id)

    @classmethod
    def _column(cls, name: str) -> InstrumentedAttribute[Any]:
        column: InstrumentedAttribute[Any] = getattr(cls.model, name)
        return column

    async def one_or_none(self, query: Select[Any]) -> M | None:
        row: M | None = await self.session.scalar(query)
        return row

    async def one(self, query: Select[Any], ident: str) -> M:
        """The row `query` finds, or NOT_FOUND naming `ident`."""
        row = await self.one_or_none(query)
        if row is None:
            raise NotFound(f"{self.noun} {ident} not found")
        return row

    async def get(self, owner_id: str, ident: str, *where: ColumnElement[bool]) -> M:
        """The row with id `ident` in the owner's scope, or NOT_FOUND."""
        query = self.owned_by(owner_id).where(self._column("id") == ident, *where)
        return await self.one(query, ident)

    async def paginate(self, query: Select[Any], page: Page, *order_by: Any) -> tuple[list[M], int]:
        return await paginate(self.session, query, page, *order_by)

    async def newest_first(self, query: Select[Any], page: Page) -> tuple[list[M], int]:
        """The usual listing order: newest first, id breaking ties."""
        return await self.paginate(
            query, page, self._column("created_at").desc(), self._column("id").desc()
        )
