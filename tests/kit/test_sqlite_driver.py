"""The SQLite driver's cursor: each statement is one call on aiosqlite's thread, and
what SQLAlchemy reads back (rows, rowcount, lastrowid, errors) is as with its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from mailfleet.db import SQLITE_BUSY_TIMEOUT_MS, SQLITE_CACHE_KIB, create_engine_for
from mailfleet.kit import sqlite_driver

metadata = MetaData()
things = Table(
    "things",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(20), unique=True),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine_for(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions handed to aiosqlite's thread."""
    calls: list[str] = []
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return calls


async def test_a_statement_is_one_call_on_the_thread(engine: AsyncEngine, hops: list[str]) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))  # the connection's own set-up
        hops.clear()
        rows = (await connection.execute(select(things.c.id))).all()
        assert rows == []
        assert hops == ["_execute"]


async def test_rows_rowcount_lastrowid_and_executemany(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        created = await connection.execute(insert(things).values(name="a"))
        assert created.inserted_primary_key == (1,)  # read from lastrowid
        await connection.execute(insert(things), [{"name": "b"}, {"name": "c"}])
        changed = await connection.execute(update(things).where(things.c.id > 1).values(name=None))
        assert changed.rowcount == 2
        result = await connection.execute(select(things.c.id, things.c.name).order_by(things.c.id))
        assert result.keys() == ["id", "name"]
        assert result.all() == [(1, "a"), (2, None), (3, None)]


async def test_errors_are_sqlalchemys_and_the_transaction_rolls_back(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(insert(things).values(name="a"))
    async with engine.connect() as connection:
        await connection.execute(insert(things).values(name="b"))
        with pytest.raises(IntegrityError):
            await connection.execute(insert(things).values(name="a"))
        await connection.rollback()
    async with engine.connect() as connection:
        assert (await connection.execute(select(things.c.name))).scalars().all() == ["a"]


async def test_each_connection_is_set_up_as_the_app_needs(engine: AsyncEngine) -> None:
    # Every pooled connection, not only the first: WAL, a writer waiting for the lock,
    # foreign keys enforced, and the larger page cache a trigram search reads through.
    async with engine.connect() as first, engine.connect() as second:
        for connection in (first, second):
            read = {
                pragma: (await connection.execute(text(f"PRAGMA {pragma}"))).scalar()
                for pragma in ("journal_mode", "busy_timeout", "foreign_keys", "cache_size")
            }
            assert read == {
                "journal_mode": "wal",
                "busy_timeout": SQLITE_BUSY_TIMEOUT_MS,
                "foreign_keys": 1,
                "cache_size": -SQLITE_CACHE_KIB,
            }


async def test_terminating_a_connection_whose_close_never_answers_does_not_hang(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLAlchemy terminates an invalidated connection by closing it gracefully in a
    # shielded task; a close that never comes back kept that task alive for ever.
    monkeypatch.setattr(sqlite_driver, "GRACEFUL_CLOSE_SECONDS", 0.1)

    async def never(self: aiosqlite.Connection) -> None:
        await asyncio.Event().wait()

    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
        monkeypatch.setattr(aiosqlite.Connection, "close", never)
        await asyncio.wait_for(connection.invalidate(), timeout=10)
    monkeypatch.undo()
    async with engine.connect() as connection:  # the pool hands out a new one
        assert (await connection.execute(text("SELECT 1"))).scalar() == 1
