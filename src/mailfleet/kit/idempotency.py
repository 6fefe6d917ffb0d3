"""The Idempotency-Key header: one validation for every route that honours it."""

from __future__ import annotations

from typing import Final

from mailfleet.kit.errors import ValidationFailed

MAX_IDEMPOTENCY_KEY: Final = 200


def check_idempotency_key(value: str | None) -> str | None:
    """The key stripped, or None when absent; 400 naming the header when unusable."""
    if value is None:
        return None
    key = value.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise ValidationFailed(
            f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters",
            [{"field": "Idempotency-Key", "in": "header", "message": "invalid"}],
        )
    return key
