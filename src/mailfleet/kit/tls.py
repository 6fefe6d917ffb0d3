"""The one TLS client context every outbound connection uses.

`MAILFLEET_TLS_CA_FILE` adds CAs to the system trust store; it never replaces it.
An operator who trusts one private CA must still reach Gmail and Microsoft 365:
a default context built with only that file as its CA source trusts nothing else,
and every public mailbox would then fail its first test with TLS_ERROR (and be
deleted).
"""

from __future__ import annotations

import functools
import ssl
from pathlib import Path

__all__ = ["client_context"]


def client_context(ca_file: str | Path | None = None) -> ssl.SSLContext:
    """A verifying client context: the system store plus `ca_file` when given.

    Shared and cached per CA file: loading a trust store costs ~20 ms of CPU, more
    than the rest of a mail login, and a context is safe to share between
    connections and threads once built.
    """
    return _cached(str(ca_file) if ca_file else None)


@functools.lru_cache(maxsize=8)
def _cached(ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context
