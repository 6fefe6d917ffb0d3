"""The migrations build the schema the models describe: a database upgraded to
head and the models compare equal, on each backend. Catches a model changed
without its migration (or an index added in one and not the other), which
`make migration` would otherwise discover for the next person."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from mailfleet.db import Base, Database
from mailfleet.migrate import schema_filter


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "include_object": schema_filter(connection.dialect.name),
        },
    )
    return list(compare_metadata(context, Base.metadata))


async def test_migrated_schema_matches_the_models(database: Database) -> None:
    async with database.engine.connect() as connection:
        differences = await connection.run_sync(_differences)
    assert differences == []
