"""Transient failures are retried with backoff; a rejected password is not. Logins
stay within the caps, per mail host and in total."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.models import BulkJobItem
from tests.bulk.conftest import item, items_through, make_users, report_rows, wait_for_job
from tests.bulk.latency_proxy import LatencyProxy
from tests.conftest import Account
from tests.servers.blackhole import BlackholeServer
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer


async def attempts_by_email(database: Database, job_id: str) -> dict[str, int]:
    async with database.transaction() as session:
        rows = await session.execute(
            select(BulkJobItem.email, BulkJobItem.attempts).where(BulkJobItem.job_id == job_id)
        )
        return {email: attempts for email, attempts in rows}


async def test_transient_failures_are_retried_and_auth_failures_are_not(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
    closed_port: int,
    fast_retries: Settings,
) -> None:
    (flaky, flaky_pw), (refused, refused_pw), (wrong, _) = make_users(smtp_plain, dovecot, 3)
    async with LatencyProxy(smtp_plain.port, rtt_ms=0, drop_first=1) as flaky_smtp:
        items = [
            # The first SMTP connection is hung up on: a retry gets through.
            {**item(flaky, flaky_pw, smtp_plain, dovecot)},
            item(refused, refused_pw, smtp_plain, dovecot),
            item(wrong, "not-the-password", smtp_plain, dovecot),
        ]
        items[0]["smtp"]["port"] = flaky_smtp.port
        items[1]["smtp"]["port"] = closed_port
        response = await client.post("/v1/mailboxes/bulk", json=items, headers=owner.headers)
        assert response.status_code == 202, response.text
        job = await wait_for_job(client, owner, response.json()["data"]["id"])
        assert flaky_smtp.connections == 2
    rows = {row["email"]: row for row in await report_rows(client, owner, job["id"])}
    assert rows[flaky]["outcome"] == "connected"
    assert rows[refused]["outcome"] == "failed"
    assert rows[refused]["error_code"] == "CONNECTION_REFUSED"
    assert rows[wrong]["outcome"] == "failed"
    assert rows[wrong]["error_code"] == "AUTH_FAILED"
    attempts = await attempts_by_email(database, job["id"])
    assert attempts == {flaky: 2, refused: fast_retries.bulk_max_attempts, wrong: 1}
    with smtp_plain.lock:
        assert [user for _, user in smtp_plain.auth_attempts].count(wrong) == 1


async def test_timeouts_are_retried(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    blackhole: BlackholeServer,
    dovecot: DovecotServer,
    smtp_plain: SmtpServer,
    short_mail_timeout: None,
    fast_retries: Settings,
) -> None:
    ((email, password),) = make_users(smtp_plain, dovecot, 1)
    body = item(email, password, smtp_plain, dovecot)
    body["smtp"]["port"] = blackhole.port
    before = blackhole.connections
    response = await client.post("/v1/mailboxes/bulk", json=[body], headers=owner.headers)
    job = await wait_for_job(client, owner, response.json()["data"]["id"])
    assert job["counts"]["failed"] == 1
    (row,) = await report_rows(client, owner, job["id"])
    assert row["error_code"] == "TIMEOUT"
    assert blackhole.connections - before == fast_retries.bulk_max_attempts
    assert await attempts_by_email(database, job["id"]) == {email: fast_retries.bulk_max_attempts}


@pytest.fixture
def tight_caps(settings: Settings) -> Iterator[Settings]:
    previous = (settings.bulk_per_host, settings.bulk_chunk_size)
    settings.bulk_per_host = 3
    settings.bulk_chunk_size = 4
    yield settings
    settings.bulk_per_host, settings.bulk_chunk_size = previous


async def test_logins_per_host_are_capped(
    client: httpx.AsyncClient,
    owner: Account,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
    tight_caps: Settings,
) -> None:
    """Twenty mailboxes on one host, three at a time, across five chunks of four."""
    users = make_users(smtp_plain, dovecot, 20)
    async with (
        LatencyProxy(smtp_plain.port, rtt_ms=40) as smtp_proxy,
        LatencyProxy(dovecot.port, rtt_ms=40) as imap_proxy,
    ):
        items = items_through(users, smtp_plain, dovecot, smtp_proxy.port, imap_proxy.port)
        response = await client.post("/v1/mailboxes/bulk", json=items, headers=owner.headers)
        job = await wait_for_job(client, owner, response.json()["data"]["id"])
    assert job["counts"]["connected"] == 20
    assert smtp_proxy.connections == imap_proxy.connections == 20
    # One host name (127.0.0.1) for SMTP and IMAP: one cap for both.
    assert 1 < smtp_proxy.peak <= 3
    assert imap_proxy.peak <= 3
