"""The per-mail-host login cap across every process sharing one PostgreSQL.

Slot k (0 <= k < MAILFLEET_BULK_PER_HOST) of mail host H is the session advisory
lock (hashtext('mailfleet-login:' || H), k), held on one connection this process
keeps open. A login to H needs one of this process's slots of H; a process
gets slots with pg_try_advisory_lock, so all processes together never hold more
than the cap, and PostgreSQL drops a dead process's locks with its connection:
nothing to expire, no operator.

Slots are fetched and given back in batches by one task per process (a few
queries per tick, whatever the number of logins), and a finished login hands its
slot straight to the next waiter of the same host without a round trip, as long
as this process holds no more than its share. The share is the cap divided by
the processes wanting that host (each holds a shared "want" lock on it while it
has waiters), so two workers with work for one host end up with half each.

If the connection drops, PostgreSQL frees every slot of this process while its
logins in flight go on: for one login's duration a host may see up to twice the
cap. Slots are fetched again on a new connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

# How often a process with logins waiting for a host looks for freed slots.
POLL_INTERVAL: Final = 0.1
# Slot k of host h: (hashtext('mailfleet-login:' || h), k). A process with logins
# waiting for h holds (hashtext('mailfleet-login-want:' || h), 0) shared.
_UNLOCK: Final = (
    "SELECT pg_advisory_unlock(hashtext('mailfleet-login:' || h), k)"
    " FROM unnest($1::text[], $2::int[]) AS c(h, k)"
)
_TRY_LOCK: Final = (
    "SELECT h, k FROM unnest($1::text[], $2::int[]) AS c(h, k)"
    " WHERE pg_try_advisory_lock(hashtext('mailfleet-login:' || h), k)"
)
_WANT: Final = (
    "SELECT pg_advisory_lock_shared(hashtext('mailfleet-login-want:' || h), 0)"
    " FROM unnest($1::text[]) AS h"
)
_UNWANT: Final = (
    "SELECT pg_advisory_unlock_shared(hashtext('mailfleet-login-want:' || h), 0)"
    " FROM unnest($1::text[]) AS h"
)
# Processes wanting each host; a two-key advisory lock shows its first key in
# classid (as an unsigned oid), its second in objid, and objsubid 2.
_WANTERS: Final = (
    "SELECT h, count(l.pid) AS n FROM unnest($1::text[]) AS h"
    " LEFT JOIN pg_locks AS l ON l.locktype = 'advisory' AND l.granted"
    " AND l.mode = 'ShareLock' AND l.objsubid = 2 AND l.objid = 0"
    " AND l.classid = (hashtext('mailfleet-login-want:' || h))::oid"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " GROUP BY h"
)


@dataclass
class _Host:
    held: set[int] = field(default_factory=set)
    free: list[int] = field(default_factory=list)
    waiters: deque[asyncio.Future[int]] = field(default_factory=deque)
    share: int = 0
    wanting: bool = False

    def waiting(self) -> int:
        return sum(1 for waiter in self.waiters if not waiter.done())


class SharedHostSlots:
    def __init__(self, url: str, per_host: int) -> None:
        self.url = url
        self.per_host = per_host
        self._hosts: dict[str, _Host] = {}
        self._to_unlock: list[tuple[str, int]] = []
        self._kick = asyncio.Event()
        self._generation = 0
        self._task: asyncio.Task[None] | None = None
        self._locks: Any = None  # the asyncpg connection holding the slots
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._closing = False
            self._loop = loop
            self._kick = asyncio.Event()
            self._forget()
            self._task = loop.create_task(self._run(), name="host-login-slots")

    def close(self) -> None:
        """Stop: the connection closes at once, and with it every slot it held."""
        self._closing = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._locks is not None and not self._locks.is_closed():
            self._locks.terminate()

    @contextlib.asynccontextmanager
    async def slot(self, host: str) -> AsyncIterator[None]:
        generation, number = await self._acquire(host)
        try:
            yield
        finally:
            self._release(host, generation, number)

    async def _acquire(self, host: str) -> tuple[int, int]:
        self._ensure_running()
        state = self._hosts.setdefault(host, _Host(share=self.per_host))
        if state.free and not state.waiters:
            return self._generation, state.free.pop()
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        state.waiters.append(waiter)
        self._kick.set()
        try:
            number = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release(host, self._generation, waiter.result())
            raise
        return self._generation, number

    def _release(self, host: str, generation: int, number: int) -> None:
        state = self._hosts.get(host)
        if generation != self._generation or state is None or number not in state.held:
            return  # the connection it was locked on is gone, and the lock with it
        if len(state.held) <= state.share:
            while state.waiters:
                waiter = state.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(number)
                    return
        # Nobody here waits for it, or this process holds more than its share:
        # back to the database, where another process may take it.
        state.held.discard(number)
        self._to_unlock.append((host, number))
        self._kick.set()

    def _forget(self) -> None:
        """The connection is gone, and every lock of it: start afresh."""
        self._generation += 1
        self._to_unlock.clear()
        for state in self._hosts.values():
            state.held.clear()
            state.free.clear()
            state.wanting = False

    async def _run(self) -> None:
        engine = create_async_engine(self.url, poolclass=NullPool)
        try:
            while True:
                try:
                    await self._serve(engine)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    if self._closing:
                        return
                    log.warning("login slots: PostgreSQL connection lost; reopening")
                self._forget()
                await asyncio.sleep(1)
        finally:
            self._forget()
            await engine.dispose()

    async def _serve(self, engine: AsyncEngine) -> None:
        async with engine.connect() as connection:
            raw = await connection.get_raw_connection()
            locks: Any = raw.driver_connection  # asyncpg's connection
            self._locks = locks
            while not locks.is_closed():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), POLL_INTERVAL)
                self._kick.clear()
                await self._tick(locks)

    async def _tick(self, locks: Any) -> None:
        if self._to_unlock:
            batch, self._to_unlock = self._to_unlock, []
            await locks.fetch(
                _UNLOCK,
                [host for host, _ in batch],
                [number for _, number in batch],
            )
        wanted = [host for host, state in self._hosts.items() if state.waiting()]
        idle = [
            host
            for host, state in self._hosts.items()
            if not state.waiting() and (state.wanting or not state.held)
        ]
        # Hosts nobody here waits for any more: stop wanting them, forget them.
        stop_wanting = [host for host in idle if self._hosts[host].wanting]
        if stop_wanting:
            await locks.fetch(
                _UNWANT,
                stop_wanting,
            )
        for host in idle:
            state = self._hosts[host]
            state.wanting = False
            if not state.held:
                del self._hosts[host]
        if not wanted:
            return
        start_wanting = [host for host in wanted if not self._hosts[host].wanting]
        if start_wanting:
            await locks.fetch(
                _WANT,
                start_wanting,
            )
            for host in start_wanting:
                self._hosts[host].wanting = True
        # Each slot this process does not hold, tried once (no LIMIT: a lock taken
        # by a row the query then drops would stay held, unknown to us).
        candidates = [
            (host, number)
            for host in wanted
            for number in range(self.per_host)
            if number not in self._hosts[host].held
            and len(self._hosts[host].held) < self._hosts[host].share
        ]
        rows = await locks.fetch(
            _TRY_LOCK,
            [host for host, _ in candidates],
            [number for _, number in candidates],
        )
        wanters = await locks.fetch(
            _WANTERS,
            wanted,
        )
        for row in wanters:
            state = self._hosts[row["h"]]
            state.share = max(1, math.ceil(self.per_host / max(1, row["n"])))
        for row in rows:
            state = self._hosts[row["h"]]
            if len(state.held) < state.share:
                state.held.add(row["k"])
                state.free.append(row["k"])
            else:
                self._to_unlock.append((row["h"], row["k"]))
        for host in wanted:
            state = self._hosts[host]
            while state.free and state.waiters:
                waiter = state.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(state.free.pop())
            # Slots fetched for waiters that gave up meanwhile: back at the next tick.
            while state.free:
                number = state.free.pop()
                state.held.discard(number)
                self._to_unlock.append((host, number))
        if self._to_unlock:
            self._kick.set()
