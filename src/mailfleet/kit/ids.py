"""Identifiers: time-ordered, URL-safe, with a prefix that says what they name."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """A 24-hex-character id, sortable by creation time (like a Mongo ObjectId).

    The seeds show 24-hex `_id` values; clients that validate that shape keep working.
    """
    return f"{int(time.time()):08x}{os.urandom(8).hex()}"


def short_job_id() -> str:
    return os.urandom(6).hex()
