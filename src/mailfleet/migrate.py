"""Alembic, driven from code: `mailfleet migrate` and the app's startup both use this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from mailfleet.db import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")


async def upgrade_database(database: Database) -> None:
    """Bring the schema to the newest revision (a no-op when it is there)."""
    async with database.engine.begin() as connection:
        await connection.run_sync(_upgrade)
