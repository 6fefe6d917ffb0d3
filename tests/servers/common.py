"""Helpers every test server shares: a free loopback port, and skip-or-fail."""

from __future__ import annotations

import os
import socket
from typing import NoReturn

import pytest


def unused_tcp_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now: for servers to bind, or to be refused by.

    The OS may hand the port to someone else before it is used; on a test machine
    that is rare enough not to matter.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def server_unavailable(reason: str) -> NoReturn:
    """Skip the test on a developer machine, fail it in CI, where servers must exist."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)
