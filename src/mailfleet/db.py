"""Engines, sessions and the declarative base.

The request (or job step) that opens a session owns its transaction: services
flush, and only `Database.transaction` or the request dependency commits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from mailfleet.config import Settings
from mailfleet.kit.sqlite_driver import OneHopDBAPI

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Each connection's page cache, in KiB (SQLite's default is 2 MiB). A search read
# through the trigram index visits a page per match: 1,111 matches of 100,000
# mailboxes overflowed 2 MiB on every request, and its page statement took 6.4 ms
# against 4.9 ms with 8 MiB (16 and 32 MiB: no better). The cache holds only pages
# read, so a small database costs no more.
SQLITE_CACHE_KIB = 8192


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers run beside the one writer; the busy timeout makes a writer
    # wait for the lock instead of failing at once; SQLite enforces foreign keys
    # only when asked, per connection; see SQLITE_CACHE_KIB for the cache.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def create_engine_for(url: str, **kwargs: Any) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url,
            module=OneHopDBAPI(),
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **kwargs,
        )
        event.listen(engine.sync_engine, "connect", _configure_sqlite)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20, **kwargs)


class Database:
    """The application database: one engine and its session factory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine_for(url)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        if settings.is_sqlite:
            settings.resolved_data_dir.mkdir(parents=True, exist_ok=True)
        return cls(settings.app_database_url)

    @property
    def is_sqlite(self) -> bool:
        return self.url.startswith("sqlite")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session committed when the block ends, rolled back if it raises.

        Callbacks registered with `after_commit` run once the commit succeeded.
        """
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            for callback in session.info.pop(_AFTER_COMMIT, []):
                await callback()

    async def dispose(self) -> None:
        await self.engine.dispose()


_AFTER_COMMIT = "mailfleet.after_commit"


def after_commit(session: AsyncSession, callback: Callable[[], Awaitable[None]]) -> None:
    """Run `callback` after this session's transaction commits (never if it rolls back).

    Used to enqueue jobs for rows the transaction creates: a crash between the
    commit and the callback is covered by a sweeper that re-enqueues under the
    same deterministic workflow id.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)
