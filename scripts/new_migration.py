"""Autogenerate an Alembic revision: `make migration m="what changed"`.

Builds a throwaway SQLite database at the current head, then lets Alembic
compare it with the models.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy.engine import Connection

from mailfleet.db import Database
from mailfleet.migrate import alembic_config, upgrade_database


async def main(message: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'autogen.db'}")
        await upgrade_database(database)

        def revise(connection: Connection) -> None:
            command.revision(alembic_config(connection), message=message, autogenerate=True)

        async with database.engine.begin() as connection:
            await connection.run_sync(revise)
        await database.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit('usage: new_migration.py "message"')
    asyncio.run(main(sys.argv[1]))
