"""When each API key was last used: noted in memory by the request, written later.

Stamping `last_used_at` in the request's own transaction made any authenticated
request, a GET included, a writer: on SQLite it then queued behind whoever held
the write lock (a bulk job recording a chunk), so a status poll could take a
second. A request now only notes the time here; `flush` writes what was noted,
one statement for all keys, from a poller of every process (jobs.POLLERS) and
when the process stops. What a listing shows includes what is still noted
(`last_used_at`), so the process that served a request shows its use at once;
another process sees it after the next flush.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import Table, bindparam, or_, update

from mailfleet.db import Database
from mailfleet.models import ApiKey
from mailfleet.runtime import runtime

log = logging.getLogger(__name__)

# A minute's precision is what people read last_used_at for; noting a key at most
# once a minute keeps the flush small however busy the key is.
LAST_USED_PRECISION: Final = timedelta(minutes=1)

_noted: dict[str, datetime] = {}


def last_used_at(key: ApiKey) -> datetime | None:
    """When the key was last used, as far as this process knows."""
    noted = _noted.get(key.id)
    stored = key.last_used_at
    if noted is None or (stored is not None and stored >= noted):
        return stored
    return noted


def note_use(key: ApiKey, now: datetime) -> None:
    """Remember that `key` was used at `now`; never touches the database."""
    last = last_used_at(key)
    if last is None or now - last > LAST_USED_PRECISION:
        _noted[key.id] = now


async def flush(database: Database | None = None) -> int:
    """Write the noted uses (never moving a stamp backwards: another process may
    have written a later one); answers how many keys were written."""
    if not _noted:
        return 0
    batch = dict(_noted)
    table = ApiKey.__table__
    assert isinstance(table, Table)
    statement = (
        update(table)
        .where(
            table.c.id == bindparam("key_id"),
            or_(table.c.last_used_at.is_(None), table.c.last_used_at < bindparam("used_at")),
        )
        .values(last_used_at=bindparam("used_at"))
    )
    async with (database or runtime().database).transaction() as session:
        await session.execute(
            statement, [{"key_id": key_id, "used_at": used} for key_id, used in batch.items()]
        )
    for key_id, used in batch.items():
        # A use noted while this flush ran stays for the next one.
        if _noted.get(key_id) == used:
            del _noted[key_id]
    return len(batch)


async def flush_at_stop(database: Database) -> None:
    try:
        await flush(database)
    except Exception:
        # Losing a minute of last-used stamps must not stop the process from stopping.
        log.exception("could not write the API keys' last-used times")
