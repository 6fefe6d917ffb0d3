"""A large fleet written straight into the tables, for bench/fleet.py and the tests
that need many mailboxes: bulk INSERTs through SQLAlchemy Core, not the API (which
would verify each mailbox's logins), so 100,000 mailboxes load in under a minute.

What it holds, deterministically for a given `n`: `n` mailboxes over `n // 100`
domains (a `domains` row each, 100 mailboxes a domain), 50 pools, 20 tags (each
mailbox carries one or two), statuses 70 % active, 15 % inactive, 10 % paused, 5 %
error, creation times spread over a year with some shared to the microsecond, and a
connection test for each (a pending one for each inactive mailbox). The domains are
at rest: each had its DNS checked at some time within the last six hours.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from mailfleet.kit.crypto import Keyring
from mailfleet.models import ConnectionTest, Domain, Mailbox, Pool, Tag, mailbox_tags

START = datetime(2026, 1, 1, tzinfo=UTC)
FIRST_NAMES = ("ana", "ben", "carla", "dev", "eva", "farid", "gus", "hana", "ivo", "jun")
STATUSES = ("active",) * 14 + ("inactive",) * 3 + ("paused",) * 2 + ("error",)
BATCH = 5000
CHECKED_WITHIN = 6 * 3600


@dataclass
class Fleet:
    """What was loaded: the names a benchmark or test filters by."""

    workspace_id: str
    n: int
    tag_ids: list[str] = field(default_factory=list)
    tag_names: list[str] = field(default_factory=list)
    pool_ids: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)


def _id(prefix: int, i: int) -> str:
    # 24 hex characters like new_id(), unique per table and index.
    return f"{prefix:04x}{i:020x}"


def mailbox_email(i: int) -> str:
    return f"{FIRST_NAMES[i % len(FIRST_NAMES)]}.{i}@d{(i // 100):05d}.fleet.test"


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def load_fleet(
    connection: Connection, workspace_id: str, n: int, keyring: Keyring, *, seed: int = 17
) -> Fleet:
    """Write the fleet into `workspace_id` over `connection` (the caller commits)."""
    rng = random.Random(seed)
    fleet = Fleet(workspace_id, n)
    now = datetime.now(UTC)
    fleet.tag_names = [f"tag-{t:02d}" for t in range(20)]
    fleet.tag_ids = [_id(0x7A9, t) for t in range(20)]
    tags = [
        {"id": tag_id, "workspace_id": workspace_id, "name": name, "created_at": now}
        for tag_id, name in zip(fleet.tag_ids, fleet.tag_names, strict=True)
    ]
    connection.execute(insert(Tag), tags)
    fleet.pool_ids = [_id(0x9001, p) for p in range(50)]
    pools = [
        {"id": pool_id, "workspace_id": workspace_id, "name": f"Pool {p}", "created_at": now}
        for p, pool_id in enumerate(fleet.pool_ids)
    ]
    connection.execute(insert(Pool), pools)
    fleet.domains = [f"d{d:05d}.fleet.test" for d in range(max(1, (n + 99) // 100))]
    domains = [
        {
            "id": _id(0xD0, d),
            "workspace_id": workspace_id,
            "name": name,
            "unicode_name": name,
            "dns_provider": "manual",
            "mail_provider": "google",
            "status": "active",
            "created_at": now,
            # At rest: each checked within the last recheck interval (6 hours by
            # default), spread over it, so a sweep finds a few due, not all of them.
            "dns_checked_at": now - timedelta(seconds=(d * 21_599) % CHECKED_WITHIN),
        }
        for d, name in enumerate(fleet.domains)
    ]
    for batch in _batches(iter(domains)):
        connection.execute(insert(Domain), batch)

    # Encrypting 2n passwords would dominate the load; every mailbox shares these.
    smtp_password = keyring.encrypt("fleet-smtp-password")
    imap_password = keyring.encrypt("fleet-imap-password")
    statuses = [rng.choice(STATUSES) for _ in range(n)]
    seconds = sorted(rng.randrange(365 * 86400) for _ in range(n))

    def mailboxes() -> Iterator[dict[str, Any]]:
        for i in range(n):
            email = mailbox_email(i)
            # One in 50 shares its predecessor's creation time: the id breaks the tie.
            j = i - 1 if i % 50 == 1 else i
            created = START + timedelta(seconds=seconds[j], microseconds=j % 7)
            yield {
                "id": _id(0xB0, i),
                "workspace_id": workspace_id,
                "email": email,
                "domain": email.split("@")[1],
                "pool_id": fleet.pool_ids[i % len(fleet.pool_ids)],
                "display_name": f"{email.split('.')[0].title()} Fleet {i}",
                "provider": "google",
                "status": statuses[i],
                "daily_send_limit": 15,
                "sending_enabled": statuses[i] == "active",
                "smtp_host": "smtp.fleet.test",
                "smtp_port": 465,
                "smtp_secure": True,
                "smtp_username": email,
                "smtp_password_enc": smtp_password,
                "imap_host": "imap.fleet.test",
                "imap_port": 993,
                "imap_secure": True,
                "imap_username": email,
                "imap_password_enc": imap_password,
                "created_at": created,
                "updated_at": created,
            }

    for batch in _batches(mailboxes()):
        # RETURNING makes SQLAlchemy send multi-row statements, as the bulk import
        # does: a plain executemany is a statement per row to the driver, and on
        # PostgreSQL each runs mailbox_counts' trigger (100,000 in this one
        # transaction took minutes).
        connection.execute(insert(Mailbox).returning(Mailbox.id), batch)

    def taggings() -> Iterator[dict[str, Any]]:
        for i in range(n):
            mailbox_id = _id(0xB0, i)
            first = i % 20
            yield {"mailbox_id": mailbox_id, "tag_id": fleet.tag_ids[first]}
            if i % 3 == 0:
                yield {"mailbox_id": mailbox_id, "tag_id": fleet.tag_ids[(first + 7) % 20]}

    for batch in _batches(taggings()):
        # Multi-row statements, as for the mailboxes: each statement runs
        # mailbox_tag_counts' trigger on PostgreSQL.
        connection.execute(insert(mailbox_tags).returning(mailbox_tags.c.mailbox_id), batch)

    def tests() -> Iterator[dict[str, Any]]:
        for i in range(n):
            pending = statuses[i] == "inactive"
            yield {
                "id": _id(0xC7, i),
                "workspace_id": workspace_id,
                "mailbox_id": _id(0xB0, i),
                "email": mailbox_email(i),
                "kind": "initial",
                "job_id": "fleet-loader",
                "status": "pending" if pending else "success",
                "mailbox_deleted": False,
                "created_at": now,
                "finished_at": None if pending else now,
            }

    for batch in _batches(tests()):
        connection.execute(insert(ConnectionTest), batch)
    return fleet
