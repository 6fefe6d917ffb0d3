"""The Idempotency-Key header: one validation for every route that honours it."""

from __future__ import annotations

from typing import Final

from mailfleet.kit.errors import ValidationFailed

MAX_IDEMPOTENCY_KEY: Final = 200


def check_idempotency_key(
    value: str | None, *, max_length: int = MAX_IDEMPOTENCY_KEY
) -> str | None:
    """The key stripped, or None when absent; 400 naming the header when unusable.

    `max_length` is the column the area stores keys in (billing's are longer).
    """
    if value is None:
        return None
    key = value.strip()
    if not key or len(key) > max_length or not key.isprintable():
        raise ValidationFailed(
            f"Idempotency-Key must be 1 to {max_length} printable characters",
            [{"field": "Idempotency-Key", "in": "header", "message": "invalid"}],
        )
    return key
