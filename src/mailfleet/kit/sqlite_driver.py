"""SQLAlchemy's aiosqlite adaptation, with one thread hop per statement.

aiosqlite runs each sqlite3 call on its connection's own thread; every call is a
hand-over to that thread and a wake-up of the event loop when it is done.
SQLAlchemy's adapted cursor makes four of them per statement (create the cursor,
execute, fetch the rows, close the cursor), and a request of three queries spent
more CPU on those hand-overs, and the GIL passing between the two threads, than in
SQLite. `OneHopCursor` does the same four things in one function on that thread.
Server-side cursors (streamed results: `stream_scalars`) keep SQLAlchemy's own.

Everything else is SQLAlchemy's dialect unchanged: `create_engine_for` passes
`OneHopDBAPI` as the dialect's DBAPI module (the `module` engine argument).
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from typing import Any

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_connection
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import EMPTY_DICT

# What a statement leaves behind: its description, rowcount, lastrowid and rows.
_Outcome = tuple[Any, int, int | None, list[Any]]


def _execute(
    connection: sqlite3.Connection, operation: str, parameters: Any, *, many: bool
) -> _Outcome:
    """On aiosqlite's thread: a cursor, the statement (`executemany` when `many`), its
    rows, the cursor closed."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        rows = cursor.fetchall() if cursor.description else []
        return cursor.description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


class OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement is one call on aiosqlite's thread. It holds
    no sqlite3 cursor between calls: what SQLAlchemy reads afterwards (description,
    rowcount, lastrowid, the rows) is kept from that call."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_dbapi_connection) -> None:
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]  # never a sqlite3 cursor
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]  # None before an insert

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._run(operation, parameters, many=False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._run(operation, seq_of_parameters, many=True)

    async def _run(self, operation: Any, parameters: Any, *, many: bool) -> None:
        connection: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        async with self._adapt_connection._execute_mutex:
            outcome: _Outcome = await connection._execute(  # type: ignore[no-untyped-call]
                _execute, connection._conn, operation, parameters, many=many
            )
        self._description, self._rowcount, self._lastrowid, rows = outcome
        self._rows = collections.deque(rows)

    async def _async_soft_close(self) -> None:
        return None  # nothing is open between calls

    def close(self) -> None:
        self._rows.clear()


# How long a connection SQLAlchemy terminates (an invalidated one) may take to close
# before it is stopped without waiting.
GRACEFUL_CLOSE_SECONDS = 5.0


class OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneHopCursor

    async def _terminate_graceful_close(self) -> None:
        """SQLAlchemy's graceful close, bounded: a close that aiosqlite's thread never
        answers kept a shielded task waiting for ever (it hung a test session's
        event loop at its close for 300 s, once in CI). On the timeout SQLAlchemy
        stops the connection's thread instead (asyncio.TimeoutError is one of the
        errors it handles that way)."""
        await asyncio.wait_for(self._connection.close(), GRACEFUL_CLOSE_SECONDS)


class OneHopDBAPI(AsyncAdapt_aiosqlite_dbapi):
    """The aiosqlite DBAPI adaptation, handing out `OneHopConnection`s."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> OneHopConnection:
        adapted = super().connect(*arg, **kw)
        return OneHopConnection(self, adapted._connection)
