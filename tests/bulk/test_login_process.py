"""Bulk logins in a child process (mail.login_process): real SMTP and IMAP logins
made by the child, its death failing only the logins it had in hand, and a bulk
job finishing with every mailbox connected once when the child is killed mid-job."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.mail import login_process
from mailfleet.mail.login_process import LoginProcess, LoginProcessLost
from mailfleet.mail.probes import ImapSettings, ProbeOptions, SmtpSettings
from mailfleet.models import ConnectionTest, Mailbox
from tests.bulk.conftest import items_through, make_users, wait_for_job
from tests.bulk.latency_proxy import LatencyProxy
from tests.bulk.test_bulk_retries import tight_caps  # noqa: F401 - a fixture
from tests.conftest import Account
from tests.servers.blackhole import BlackholeServer
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer

OPTIONS = ProbeOptions(timeout=5.0, allow_private=True)


def logins(
    email: str, password: str, smtp_port: int, imap_port: int
) -> tuple[SmtpSettings, ImapSettings]:
    return (
        SmtpSettings("127.0.0.1", smtp_port, "none", email, password),
        ImapSettings("127.0.0.1", imap_port, "none", email, password),
    )


@pytest.fixture
async def child() -> AsyncIterator[LoginProcess]:
    process = LoginProcess(OPTIONS)
    yield process
    await process.close()


async def test_the_child_logs_in_and_answers_verdicts(
    child: LoginProcess, smtp_plain: SmtpServer, dovecot: DovecotServer
) -> None:
    [(email, password)] = make_users(smtp_plain, dovecot, 1)
    good, bad = await asyncio.gather(
        child.probe(*logins(email, password, smtp_plain.port, dovecot.port)),
        child.probe(*logins(email, "not-the-password", smtp_plain.port, dovecot.port)),
    )
    assert good["smtp"]["ok"]
    assert good["imap"]["ok"]
    assert "INBOX" in good["imap"]["folders"]
    assert (bad["smtp"]["code"], bad["imap"]["code"]) == ("AUTH_FAILED", "AUTH_FAILED")
    assert "not-the-password" not in repr(bad)
    pid = child.pid
    assert pid is not None
    assert pid != os.getpid()
    await child.close()
    assert child.pid is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


async def test_a_dead_child_fails_its_logins_and_is_replaced(
    child: LoginProcess,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
    blackhole: BlackholeServer,
) -> None:
    [(email, password)] = make_users(smtp_plain, dovecot, 1)
    # A server that never answers keeps the login in the child's hands.
    before = blackhole.connections
    hanging = asyncio.create_task(
        child.probe(*logins(email, password, blackhole.port, dovecot.port))
    )
    while blackhole.connections == before:  # noqa: ASYNC110 - a counter, not an event
        await asyncio.sleep(0.01)
    first = child.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    with pytest.raises(LoginProcessLost):
        await asyncio.wait_for(hanging, 5)
    outcome = await child.probe(*logins(email, password, smtp_plain.port, dovecot.port))
    assert outcome["smtp"]["ok"]
    assert outcome["imap"]["ok"]
    assert child.pid not in (None, first)


@pytest.mark.db
async def test_a_job_survives_its_login_process_being_killed(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
    tight_caps: Settings,  # noqa: F811 - the fixture imported above
) -> None:
    """The chunks whose logins died run again (their step is retried) and skip
    what they recorded: every mailbox ends connected, with one successful test."""
    assert tight_caps.bulk_login_process
    users = make_users(smtp_plain, dovecot, 20)
    async with (
        LatencyProxy(smtp_plain.port, rtt_ms=60) as smtp_proxy,
        LatencyProxy(dovecot.port, rtt_ms=60) as imap_proxy,
    ):
        items = items_through(users, smtp_plain, dovecot, smtp_proxy.port, imap_proxy.port)
        response = await client.post("/v1/mailboxes/bulk", json=items, headers=owner.headers)
        job_id = response.json()["data"]["id"]
        # Kill it once some mailboxes are done and others are in its hands.
        killed = None
        while killed is None:
            job = (await client.get(f"/v1/jobs/{job_id}", headers=owner.headers)).json()["data"]
            running = login_process.current()
            if job["counts"]["connected"] >= 3 and running is not None and running.pid:
                killed = running.pid
                os.kill(killed, signal.SIGKILL)
            assert job["status"] != "completed", "the job ended before the kill"
            await asyncio.sleep(0.02)
        job = await wait_for_job(client, owner, job_id, within=120)
    assert job["counts"]["connected"] == 20
    running = login_process.current()
    assert running is not None
    assert running.pid not in (None, killed)
    async with database.transaction() as session:
        successes = await session.scalar(
            select(func.count())
            .select_from(ConnectionTest)
            .join(Mailbox, Mailbox.id == ConnectionTest.mailbox_id)
            .where(Mailbox.workspace_id == owner.workspace_id, ConnectionTest.status == "success")
        )
    assert successes == 20
