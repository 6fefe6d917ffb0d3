"""A placement test SIGKILLed while sending resumes without sending anything twice.

`mailfleet serve` runs a test of 2 senders x 5 seeds, one message at a time, with a
slow link to the submission server so sending takes a while; it is killed while the
test is still sending (some messages sent, others not), then restarted under the
same worker id. The test must then complete with every message found in its seed's
INBOX, and the submission server must have accepted each (sender, seed) message
exactly once.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.bulk.latency_proxy import latency_proxy_in_thread
from tests.bulk.test_bulk_crash import Server, _bootstrap
from tests.conftest import BACKEND
from tests.servers.dnsserver import LocalDnsServer
from tests.servers.mailnet import SieveDovecot, SubmissionServer
from tests.servers.postgres import PostgresServer
from tests.test_cli import _clean_env

SENDERS = 2
SEEDS = 5


class SlowStartServer(Server):
    # A cold start on PostgreSQL on a loaded machine can take over a minute.
    startup_timeout = 240.0


@pytest.fixture
def crash_env(
    tmp_path: Path, request: pytest.FixtureRequest, dns_names: LocalDnsServer
) -> tuple[dict[str, str], str]:
    env = _clean_env(
        MAILFLEET_ALLOW_PRIVATE_NETWORKS="true",
        MAILFLEET_WORKER_ID="placement-crash-test",
        # Names (MX look-ups for the seeds' providers) go to the test DNS server only.
        MAILFLEET_DNS_NAMESERVERS=dns_names.nameserver,
        MAILFLEET_WARMUP_INTERVAL="0",
        MAILFLEET_PLACEMENT_POLL_INTERVAL="0.5",
        MAILFLEET_PLACEMENT_TIMEOUT_SECONDS="300",
    )
    if BACKEND == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        name = f"placement_crash_{uuid.uuid4().hex[:8]}"
        env["MAILFLEET_DATABASE_URL"] = server.create_database(name)
        return env, f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{name}"
    return env, f"sqlite:///{tmp_path / 'mailfleet-data' / 'mailfleet.db'}"


def _statuses(engine: sa.Engine) -> tuple[str | None, Counter[str]]:
    with engine.connect() as connection:
        test = connection.execute(sa.text("SELECT status FROM placement_tests")).scalar()
        rows = connection.execute(sa.text("SELECT status FROM placement_results")).scalars()
        return test, Counter(rows)


def _wait_active(base: str, headers: dict[str, str], mailbox_id: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        got = httpx.get(f"{base}/v1/mailboxes/{mailbox_id}", headers=headers, timeout=30)
        assert got.status_code == 200, got.text
        if got.json()["data"]["status"] == "active":
            return
        assert time.monotonic() < deadline, got.text
        time.sleep(0.2)


@pytest.mark.db
# Two cold starts of `mailfleet serve` and the sends through a slow link.
@pytest.mark.timeout(900)
async def test_a_test_killed_while_sending_resumes_without_a_second_send(
    tmp_path: Path,
    crash_env: tuple[dict[str, str], str],
    placement_dovecot: SieveDovecot,
    placement_submission: SubmissionServer,
) -> None:
    # In a thread: the session's event loop keeps running meanwhile, as the job engine
    # the session launched in it expects (a minute's sweep falls inside this test).
    await asyncio.to_thread(
        _kill_and_resume, tmp_path, crash_env, placement_dovecot, placement_submission
    )


def _kill_and_resume(
    tmp_path: Path,
    crash_env: tuple[dict[str, str], str],
    placement_dovecot: SieveDovecot,
    placement_submission: SubmissionServer,
) -> None:
    env, app_url = crash_env
    credentials = _bootstrap(tmp_path, env)
    headers = {"x-api-key": credentials["apiKey"]}
    tag = uuid.uuid4().hex[:6]
    senders = [f"s{i}-{tag}@alpha.test" for i in range(SENDERS)]
    seeds = [f"d{i}-{tag}@oseed.test" for i in range(SEEDS)]
    passwords = {email: f"pw-{email}" for email in senders + seeds}
    placement_dovecot.add_users(passwords)
    server = SlowStartServer(tmp_path, env)
    ids: dict[str, str] = {}
    with latency_proxy_in_thread(placement_submission.port, rtt_ms=300) as smtp_proxy:
        try:
            server.start()
            for email in senders + seeds:
                created = httpx.post(
                    f"{server.base}/v1/mailboxes",
                    json={
                        "email": email,
                        "smtp": {
                            "host": "127.0.0.1",
                            "port": smtp_proxy.port,
                            "secure": False,
                            "password": passwords[email],
                        },
                        "imap": {
                            "host": "127.0.0.1",
                            "port": placement_dovecot.port,
                            "secure": False,
                            "password": passwords[email],
                        },
                    },
                    headers=headers,
                    timeout=30,
                )
                assert created.status_code == 201, created.text
                ids[email] = created.json()["data"]["id"]
            for mailbox_id in ids.values():
                _wait_active(server.base, headers, mailbox_id)
            started = httpx.post(
                f"{server.base}/v1/placement-tests",
                json={
                    "name": "crash",
                    "fromMailboxIds": [ids[e] for e in senders],
                    "seedMailboxIds": [ids[e] for e in seeds],
                    "subject": "Hello",
                    "deliveryMode": "one-by-one",
                },
                headers=headers,
                timeout=30,
            )
            assert started.status_code == 202, started.text
            test_id = started.json()["data"]["id"]

            app_db = sa.create_engine(app_url)
            deadline = time.monotonic() + 120
            while True:
                status, counts = _statuses(app_db)
                if counts["sent"] >= 2 and status == "sending":
                    break
                assert status == "sending", (status, counts)
                assert time.monotonic() < deadline, counts
                time.sleep(0.05)
            server.kill()
            status, at_kill = _statuses(app_db)
            # Shown with -rP: whether the kill caught a message under way ("sending").
            print(f"results at the kill: {dict(at_kill)}")
            assert status == "sending"
            assert at_kill["sent"] < SENDERS * SEEDS, "the kill came too late to test anything"

            server.start()
            deadline = time.monotonic() + 240
            while True:
                status, counts = _statuses(app_db)
                if status == "completed":
                    break
                assert time.monotonic() < deadline, (status, counts, server.log()[-3000:])
                time.sleep(0.5)
            final = httpx.get(
                f"{server.base}/v1/placement-tests/{test_id}", headers=headers, timeout=30
            )
            assert final.status_code == 200, final.text
            test = final.json()["data"]
        finally:
            server.stop()

    assert [r["folder"] for r in test["results"]] == ["inbox"] * (SENDERS * SEEDS)
    assert test["summary"]["overall"]["inbox"] == SENDERS * SEEDS
    accepted = Counter(
        (d.mail_from, rcpt)
        for d in placement_submission.deliveries
        if d.login in senders
        for rcpt in d.rcpt_tos
    )
    assert accepted == Counter({(s, d): 1 for s in senders for d in seeds}), (
        "the submission server accepted each message exactly once"
    )
