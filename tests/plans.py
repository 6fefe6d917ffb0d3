"""The plan a database chooses for a query, for tests that pin an index down."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Select


def sent_sql(query: Select[Any], *, is_sqlite: bool) -> str:
    """`query` as it is sent, its values still bound parameters."""
    return str(query.compile(dialect=sqlite.dialect() if is_sqlite else postgresql.dialect()))


async def query_plan(session: AsyncSession, query: Select[Any], *, is_sqlite: bool) -> str:
    """The plan of `query`, its values written in. On PostgreSQL, sequential scans are
    off for the rest of the transaction: a test's few rows are cheaper to scan, so the
    plan then says whether an index can serve the query at all."""
    dialect = sqlite.dialect() if is_sqlite else postgresql.dialect()
    compiled = query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    if is_sqlite:
        rows = await session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
        return " ".join(str(row[-1]) for row in rows)
    await session.execute(text("SET LOCAL enable_seqscan = off"))
    return "\n".join(await session.scalars(text(f"EXPLAIN {compiled}")))
