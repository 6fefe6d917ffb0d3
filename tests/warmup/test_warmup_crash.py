"""A warmup round SIGKILLed mid-way neither loses nor doubles a planned send.

`mailfleet serve` runs real rounds every 2 s against the mail network, with a
slow link to the submission server so sends take a while; it is killed while a
round workflow is running and messages are under way, then restarted. Every
planned message must then sit in its receiver's folders exactly once, and the
submission server must have accepted each exactly once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.bulk.latency_proxy import latency_proxy_in_thread
from tests.bulk.test_bulk_crash import Server, _bootstrap
from tests.conftest import BACKEND
from tests.servers.mailnet import SieveDovecot, SubmissionServer
from tests.servers.postgres import PostgresServer
from tests.test_cli import _clean_env
from tests.warmup.conftest import NetMailbox, read_folders

PER_DAY = 6
NAMES = (("ann", "alpha.test"), ("bob", "alpha.test"), ("cid", "beta.test"), ("dee", "beta.test"))


def send_window() -> dict[str, str]:
    """A window that ends within a minute or so, in a zone where it is midday now,
    so the whole day's sends fall due during the test whatever the UTC hour."""
    now = datetime.now(UTC)
    shift = 12 - now.hour
    zone = "UTC" if shift == 0 else f"Etc/GMT{-shift:+d}"
    local = now + timedelta(hours=shift)
    return {
        "start": "00:00",
        "end": (local + timedelta(seconds=75)).strftime("%H:%M"),
        "timezone": zone,
    }


class SlowStartServer(Server):
    # On a machine shared with other work, a cold start on PostgreSQL (imports,
    # migrations, the job engine) can take longer than a minute.
    startup_timeout = 240.0


@pytest.fixture
def crash_env(tmp_path: Path, request: pytest.FixtureRequest) -> tuple[dict[str, str], str, str]:
    env = _clean_env(
        MAILFLEET_ALLOW_PRIVATE_NETWORKS="true",
        MAILFLEET_WORKER_ID="warmup-crash-test",
        MAILFLEET_WARMUP_INTERVAL="2",
    )
    if BACKEND == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        name = f"warmup_crash_{uuid.uuid4().hex[:8]}"
        env["MAILFLEET_DATABASE_URL"] = server.create_database(name)
        url = f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{name}"
        return env, url, url
    data = tmp_path / "mailfleet-data"
    return env, f"sqlite:///{data / 'mailfleet.db'}", f"sqlite:///{data / 'mailfleet-jobs.db'}"


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT status, count(*) FROM warmup_messages GROUP BY status")
        ).all()
    return {status: count for status, count in rows}


def _rounds_running(engine: sa.Engine, schema: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                sa.text(
                    f"SELECT count(*) FROM {schema}workflow_status "  # noqa: S608 - fixed name
                    "WHERE status = 'PENDING' AND workflow_uuid LIKE 'warmup-round-%'"
                )
            ).scalar_one()
        )


@pytest.mark.db
def _a_round_killed_mid_way_neither_loses_nor_doubles_a_send(
    tmp_path: Path,
    crash_env: tuple[dict[str, str], str, str],
    mailnet_dovecot: SieveDovecot,
    submission: SubmissionServer,
) -> None:
    env, app_url, jobs_url = crash_env
    schema = "dbos." if BACKEND == "postgresql" else ""
    credentials = _bootstrap(tmp_path, env)
    headers = {"x-api-key": credentials["apiKey"]}
    tag = uuid.uuid4().hex[:6]
    network = [
        NetMailbox("", f"{name}-{tag}@{domain}", f"pw-{tag}-{name}") for name, domain in NAMES
    ]
    mailnet_dovecot.add_users({m.email: m.password for m in network})
    server = SlowStartServer(tmp_path, env)
    with latency_proxy_in_thread(submission.port, rtt_ms=300) as smtp_proxy:
        try:
            server.start()
            for mailbox in network:
                created = httpx.post(
                    f"{server.base}/v1/mailboxes",
                    json={
                        "email": mailbox.email,
                        "smtp": {
                            "host": "127.0.0.1",
                            "port": smtp_proxy.port,
                            "secure": False,
                            "password": mailbox.password,
                        },
                        "imap": {
                            "host": "127.0.0.1",
                            "port": mailnet_dovecot.port,
                            "secure": False,
                            "password": mailbox.password,
                        },
                    },
                    headers=headers,
                    timeout=30,
                )
                assert created.status_code == 201, created.text
                mailbox.id = created.json()["data"]["id"]
            window = send_window()
            for mailbox in network:
                deadline = time.monotonic() + 120
                while True:
                    enabled = httpx.put(
                        f"{server.base}/v1/mailboxes/{mailbox.id}/warmup",
                        json={
                            "enabled": True,
                            "startPerDay": PER_DAY,
                            "dailyTarget": PER_DAY,
                            "replyRate": 0,
                            "sendWindow": window,
                        },
                        headers=headers,
                        timeout=30,
                    )
                    if enabled.status_code == 200:
                        break
                    # 409 until its connection test made it active.
                    assert enabled.status_code == 409, enabled.text
                    assert time.monotonic() < deadline, enabled.text
                    time.sleep(0.2)

            app_db, jobs_db = sa.create_engine(app_url), sa.create_engine(jobs_url)
            total = PER_DAY * len(network)
            deadline = time.monotonic() + 120
            while True:
                counts = _counts(app_db)
                if counts.get("sent", 0) >= total // 4 and _rounds_running(jobs_db, schema):
                    break
                assert time.monotonic() < deadline, counts
                time.sleep(0.05)
            server.kill()
            at_kill = _counts(app_db)
            # Shown with -rP: how many sends the kill caught under way ("sending").
            print(f"statuses at the kill: {at_kill}")
            assert _rounds_running(jobs_db, schema) >= 1, "the kill must land inside a round"
            assert at_kill.get("sent", 0) < total, "the kill came too late to test anything"

            server.start()
            deadline = time.monotonic() + 180
            while True:
                with app_db.connect() as connection:
                    done = connection.execute(
                        sa.text(
                            "SELECT count(*) FROM warmup_messages "
                            "WHERE status = 'sent' AND seen_at IS NOT NULL"
                        )
                    ).scalar_one()
                if done == total:
                    break
                assert time.monotonic() < deadline, (_counts(app_db), server.log()[-3000:])
                time.sleep(0.5)
            with app_db.connect() as connection:
                rows = connection.execute(
                    sa.text("SELECT tracking_code, receiver_id, status FROM warmup_messages")
                ).all()
        finally:
            server.stop()

    assert len(rows) == total, "planned once: nothing planned twice after the restart"
    planned = Counter(code for code, _, _ in rows)
    held = Counter(f.code for m in network for f in read_folders(mailnet_dovecot, m))
    assert held == planned, "each planned message sits in its receiver's folders exactly once"
    receiver_of = {code: receiver for code, receiver, _ in rows}
    for mailbox in network:
        assert all(
            receiver_of[f.code] == mailbox.id for f in read_folders(mailnet_dovecot, mailbox)
        )
    ours = {m.email for m in network}
    accepted = [d for d in submission.deliveries if d.login in ours]
    assert len(accepted) == total, "the submission server accepted each message exactly once"


# Two cold starts of `mailfleet serve`, a minute of send window and the restart's
# catch-up: more than the suite's default 300 s on a loaded machine.
@pytest.mark.timeout(900)
async def test_a_round_killed_mid_way_neither_loses_nor_doubles_a_send(
    tmp_path: Path,
    crash_env: tuple[dict[str, str], str, str],
    mailnet_dovecot: SieveDovecot,
    submission: SubmissionServer,
) -> None:
    # In a thread, so the session's event loop (where the job engine was launched)
    # keeps running while the servers are started and killed: a sweep firing
    # during a long synchronous test broke the next test on PostgreSQL.
    await asyncio.to_thread(
        _a_round_killed_mid_way_neither_loses_nor_doubles_a_send,
        tmp_path,
        crash_env,
        mailnet_dovecot,
        submission,
    )
