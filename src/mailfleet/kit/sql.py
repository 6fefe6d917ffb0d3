"""SQL that differs between the two backends, written once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction


class unindexed(GenericFunction[Any]):
    """A column the query planner may not look up by index: SQLite's unary `+`
    (elsewhere the bare column). Without stats SQLite would rather walk a workspace's
    index, guessing it short, than drive a query from a few keys found elsewhere (an
    indexed search's rowids, the mailboxes with warmup on)."""

    name = "unindexed"
    inherit_cache = True


@compiles(unindexed)
def _unindexed(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(element.clauses, **kw)


@compiles(unindexed, "sqlite")
def _unindexed_on_sqlite(element: unindexed, compiler: SQLCompiler, **kw: Any) -> str:
    return f"+{compiler.process(element.clauses, **kw)}"


async def insert_ignoring_conflict(
    session: AsyncSession,
    target: Table | type[Any],
    values: dict[str, Any],
    *,
    returning: Any = None,
    index_elements: Sequence[Any] | None = None,
) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING on either backend.

    Answers the `returning` column's value (None when the row already existed), or
    without `returning` whether a row was inserted. Rather than catching the
    IntegrityError: a failed flush spoils the caller's transaction, and on
    PostgreSQL a concurrent insert of the same key waits for the other transaction,
    then does nothing if it committed. `index_elements` names the unique index to
    yield to (any conflict when omitted). `target` is a Table or a mapped class.
    """
    table: Table = target if isinstance(target, Table) else target.__table__
    dialect = session.get_bind().dialect.name
    builder = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        builder(table).values(**values).on_conflict_do_nothing(index_elements=index_elements)
    )
    if returning is None:
        result = await session.execute(statement)
        return bool(getattr(result, "rowcount", 0))
    result = await session.execute(statement.returning(returning))
    return result.scalar_one_or_none()


async def claim(
    session: AsyncSession,
    model: type[Any],
    row_id: str,
    *,
    status: Any,
    expected: Any,
    **values: Any,
) -> bool:
    """Move one row from status `expected` to `status` (setting `values` too) and
    answer whether this call did it. Of two runs at once (a recovered workflow and
    a new one) only one finds the row still `expected`: the claim before an action
    that must happen once, such as sending a message."""
    result = await session.execute(
        update(model)
        .where(model.id == row_id, model.status == expected)
        .values(status=status, **values)
        .execution_options(synchronize_session=False)
    )
    return getattr(result, "rowcount", 0) == 1
