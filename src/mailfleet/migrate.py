"""Alembic, driven from code: `mailfleet migrate` and the app's startup both use this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection

from mailfleet.db import Database

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


# Constraints the models declare that migrations deliberately leave out on SQLite:
# adding a foreign key there means copying the table, and copying `mailboxes`
# would cascade into the tables that reference it (migration 0009).
_NOT_ON_SQLITE = frozenset({"fk_mailboxes_hosted_domain_id_domains"})
# Indexes only migrations make, on PostgreSQL alone, that the models leave out:
# pg_trgm's GIN indexes for `search` (migration 0018), which need the extension.
_MIGRATION_ONLY_INDEXES = frozenset({"ix_mailboxes_email_trgm", "ix_mailboxes_display_name_trgm"})
# Tables only migrations make, on SQLite alone: the FTS5 trigram index for `search`
# (migration 0021) and the shadow tables FTS5 keeps it in.
_MIGRATION_ONLY_TABLES = frozenset(
    {"mailbox_search"} | {f"mailbox_search_{part}" for part in ("data", "idx", "docsize", "config")}
)


def schema_filter(dialect: str) -> Callable[..., bool]:
    """Alembic's include_object hook for a comparison on `dialect`: what
    autogenerate considers. Shared by env.py (`make migration`) and the test that
    compares the migrated schema with the models."""

    def include_object(
        item: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
    ) -> bool:
        if type_ == "index" and reflected and name in _MIGRATION_ONLY_INDEXES:
            return False
        if type_ == "table" and reflected and name in _MIGRATION_ONLY_TABLES:
            return False
        return not (
            dialect == "sqlite" and type_ == "foreign_key_constraint" and name in _NOT_ON_SQLITE
        )

    return include_object


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@dataclass(frozen=True)
class Upgrade:
    """The schema revision before and after an upgrade (None: no schema yet)."""

    before: str | None
    after: str | None

    def describe(self) -> str:
        if self.before is None:
            return f"created the database schema (revision {self.after})"
        if self.before != self.after:
            return f"upgraded the database schema from revision {self.before} to {self.after}"
        return f"the database schema is up to date (revision {self.after})"


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection) -> Upgrade:
    before = _revision(connection)
    command.upgrade(alembic_config(connection), "head")
    return Upgrade(before, _revision(connection))


async def upgrade_database(database: Database) -> Upgrade:
    """Bring the schema to the newest revision (a no-op when it is there)."""
    async with database.engine.begin() as connection:
        return await connection.run_sync(_upgrade)
