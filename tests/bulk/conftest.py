"""Helpers for bulk connect tests: many mail users at once, and waiting for a job."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mailfleet.config import Settings
from tests.conftest import Account
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer


def make_users(
    smtp: SmtpServer, dovecot: DovecotServer, count: int, domain: str = "bulk.test"
) -> list[tuple[str, str]]:
    """`count` new mail users on both servers (one write for all of them)."""
    tag = uuid.uuid4().hex[:8]
    users = [(f"b{tag}-{i}@{domain}", f"pw-{tag}-{i}-{uuid.uuid4().hex[:6]}") for i in range(count)]
    with smtp.lock:
        smtp.users.update(users)
    dovecot.add_users(dict(users))
    return users


def item(
    email: str, password: str, smtp: SmtpServer, dovecot: DovecotServer, **overrides: Any
) -> dict[str, Any]:
    """One mailbox in the shape of POST /v1/mailboxes, on the plain loopback servers."""
    body: dict[str, Any] = {
        "email": email,
        "smtp": {"host": "127.0.0.1", "port": smtp.port, "secure": False, "password": password},
        "imap": {"host": "127.0.0.1", "port": dovecot.port, "secure": False, "password": password},
    }
    body.update(overrides)
    return body


def items_through(
    users: list[tuple[str, str]],
    smtp: SmtpServer,
    dovecot: DovecotServer,
    smtp_port: int,
    imap_port: int,
) -> list[dict[str, Any]]:
    """`item` for each user, reaching the servers through other ports (a latency proxy)."""
    items = []
    for email, password in users:
        body = item(email, password, smtp, dovecot)
        body["smtp"]["port"] = smtp_port
        body["imap"]["port"] = imap_port
        items.append(body)
    return items


async def wait_for_job(
    client: httpx.AsyncClient, account: Account, job_id: str, within: float = 60
) -> dict[str, Any]:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await client.get(f"/v1/jobs/{job_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()["data"]
        if job["status"] in ("completed", "failed"):
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job still running: {job}")
        await asyncio.sleep(0.1)


async def report_rows(
    client: httpx.AsyncClient, account: Account, job_id: str
) -> list[dict[str, str]]:
    response = await client.get(f"/v1/jobs/{job_id}/report.csv", headers=account.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


@pytest.fixture
def fast_retries(settings: Settings) -> Iterator[Settings]:
    """Retries after 50 ms instead of seconds, so retry tests stay quick."""
    previous = settings.bulk_retry_delay
    settings.bulk_retry_delay = 0.05
    yield settings
    settings.bulk_retry_delay = previous
