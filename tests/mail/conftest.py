"""Probe-test fixtures. The servers themselves (smtp_plain, smtp_starttls, smtp_ssl,
dovecot, blackhole, closed_port, loopback_tls) come from tests/servers/fixtures.py,
shared by every test package, so a full run starts each server once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@pytest.fixture
def credentials() -> Credentials:
    """A fresh user per test (Dovecot limits connections per user), with a password
    that needs quoting in IMAP and would break a naive passwd-file line."""
    token = uuid.uuid4().hex[:12]
    return Credentials(f"user-{token}@mailfleet.test", f'S3cret "quoted" \\ back:{token}')
