"""Re-encrypt stored secrets under the newest key (`mailfleet keys rotate`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.models import ENCRYPTED_COLUMNS

BATCH = 500


async def reencrypt_all(database: Database, keyring: Keyring) -> dict[str, int]:
    """Counts re-encrypted per `table.column`. Safe to run again after a crash:
    rows already under the newest key are skipped, and each batch commits."""
    counts: dict[str, int] = {}
    for model, attribute in ENCRYPTED_COLUMNS:
        column: Any = getattr(model, attribute)
        label = f"{model.__tablename__}.{attribute}"  # type: ignore[attr-defined]
        counts[label] = 0
        last_id = ""
        while True:
            async with database.transaction() as session:
                rows: list[Any] = list(
                    await session.scalars(
                        select(model)
                        .where(column.is_not(None), model.id > last_id)  # type: ignore[attr-defined]
                        .order_by(model.id)  # type: ignore[attr-defined]
                        .limit(BATCH)
                    )
                )
                for row in rows:
                    token = getattr(row, attribute)
                    if keyring.needs_rotation(token):
                        setattr(row, attribute, keyring.reencrypt(token))
                        counts[label] += 1
            if len(rows) < BATCH:
                break
            last_id = rows[-1].id
    return counts
