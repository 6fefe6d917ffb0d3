"""Several workers on one PostgreSQL share a bulk job and survive each other's death.

An API-only `serve` (MAILFLEET_WORKER_QUEUES=default) accepts the job; its workflow
runs on one of two `mailfleet worker` processes, and its chunks on both (the chunk
queue decides). Logins to the one mail host never exceed MAILFLEET_BULK_PER_HOST at
the server, counting both workers. The worker running the job is SIGKILLed and never
comes back; the other, seeing its heartbeat stop, takes the job and the dead
worker's chunks over, and the job finishes with every mailbox connected once."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from mailfleet.bulk.service import job_workflow_id
from mailfleet.bulk.workflows import chunk_workflow_id
from tests.bulk.conftest import items_through, make_users
from tests.bulk.latency_proxy import latency_proxy_in_thread
from tests.bulk.test_bulk_crash import Server, _bootstrap, _job
from tests.conftest import BACKEND
from tests.servers.dovecot import DovecotServer
from tests.servers.postgres import PostgresServer
from tests.servers.smtp import SmtpServer
from tests.test_cli import MAILFLEET, _clean_env

COUNT = 150
DEAD_AFTER = 15
PER_HOST = 4

pytestmark = [
    pytest.mark.db,
    pytest.mark.skipif(
        BACKEND != "postgresql",
        reason="several processes share one database only on PostgreSQL "
        "(SQLite is the one-process embedded setup)",
    ),
]


class Worker:
    def __init__(self, directory: Path, env: dict[str, str], name: str) -> None:
        self.name = name
        self.log_path = directory / f"{name}.log"
        self.process = subprocess.Popen(
            [*MAILFLEET, "worker"],
            cwd=directory,
            env={**env, "MAILFLEET_WORKER_ID": name},
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _executors(sync_url: str, statuses: list[str], pattern: str) -> set[str]:
    """The executors of the workflows whose ids are LIKE `pattern` and whose status
    is one of `statuses`, per DBOS's own table."""
    engine = sa.create_engine(sync_url)
    try:
        with engine.connect() as connection:
            found = connection.execute(
                sa.text(
                    "SELECT DISTINCT executor_id FROM dbos.workflow_status "
                    "WHERE workflow_uuid LIKE :pattern AND status = ANY(:statuses)"
                ),
                {"pattern": pattern, "statuses": statuses},
            ).scalars()
            return {str(executor) for executor in found}
    finally:
        engine.dispose()


def _holder(sync_url: str, job_id: str) -> str | None:
    """The executor running the job's workflow."""
    found = _executors(sync_url, ["PENDING"], job_workflow_id(job_id))
    return found.pop() if found else None


def _chunk_executors(sync_url: str, job_id: str) -> set[str]:
    """The executors that have run (or are running) the job's chunk workflows."""
    chunks = chunk_workflow_id(job_id, 0).removesuffix("0") + "%"
    return _executors(sync_url, ["PENDING", "SUCCESS", "ERROR"], chunks)


def _a_dead_worker_s_bulk_job_finishes_on_another(
    tmp_path: Path,
    server_db: PostgresServer,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
) -> None:
    name = f"worker_death_{uuid.uuid4().hex[:8]}"
    env = _clean_env(
        MAILFLEET_DATABASE_URL=server_db.create_database(name),
        MAILFLEET_ALLOW_PRIVATE_NETWORKS="true",
        MAILFLEET_BULK_CONCURRENCY="10",
        # Each worker alone may log in to PER_HOST mailboxes at once: without a cap
        # held across workers, the two together would reach twice that.
        MAILFLEET_BULK_PER_HOST=str(PER_HOST),
        MAILFLEET_BULK_CHUNK_SIZE="5",
        MAILFLEET_WORKER_DEAD_AFTER=str(DEAD_AFTER),
    )
    sync_url = f"postgresql+psycopg://postgres@127.0.0.1:{server_db.port}/{name}"
    credentials = _bootstrap(tmp_path, env)
    headers = {"x-api-key": credentials["apiKey"]}
    users = make_users(smtp_plain, dovecot, COUNT)
    api_env = {**env, "MAILFLEET_WORKER_ID": "api", "MAILFLEET_WORKER_QUEUES": "default"}
    api = Server(tmp_path, api_env)
    workers: list[Worker] = []
    with (
        latency_proxy_in_thread(smtp_plain.port, rtt_ms=200) as smtp_proxy,
        latency_proxy_in_thread(dovecot.port, rtt_ms=200) as imap_proxy,
    ):
        items = items_through(users, smtp_plain, dovecot, smtp_proxy.port, imap_proxy.port)
        try:
            api.start()
            workers = [Worker(tmp_path, env, f"worker-{n}") for n in (1, 2)]
            accepted = httpx.post(
                f"{api.base}/v1/mailboxes/bulk", json=items, headers=headers, timeout=60
            )
            assert accepted.status_code == 202, accepted.text
            job_id = accepted.json()["data"]["id"]
            deadline = time.monotonic() + 90
            while (job := _job(api.base, headers, job_id))["counts"]["connected"] < COUNT // 5:
                assert time.monotonic() < deadline, job
                time.sleep(0.1)
            holder = _holder(sync_url, job_id)
            assert holder in ("worker-1", "worker-2"), holder
            # Both workers run chunks of the one job.
            while (spread := _chunk_executors(sync_url, job_id)) != {"worker-1", "worker-2"}:
                assert time.monotonic() < deadline, spread
                time.sleep(0.1)
            [victim] = [w for w in workers if w.name == holder]
            [survivor] = [w for w in workers if w.name != holder]
            victim.process.kill()
            victim.process.wait(timeout=10)
            killed_at = time.monotonic()
            job = _job(api.base, headers, job_id)
            assert job["status"] == "running"
            assert job["counts"]["connected"] < COUNT, "the kill came too late to test anything"

            # The victim never comes back: the survivor must notice on its own.
            deadline = killed_at + DEAD_AFTER + 120
            while (job := _job(api.base, headers, job_id))["status"] not in (
                "completed",
                "failed",
            ):
                assert time.monotonic() < deadline, job
                time.sleep(0.5)
            taken_over_after = time.monotonic() - killed_at
            listed = httpx.get(
                f"{api.base}/v1/mailboxes?limit=1000", headers=headers, timeout=10
            ).json()
        finally:
            for worker in workers:
                worker.stop()
            api.stop()

    assert job["status"] == "completed", job
    assert job["counts"]["connected"] == COUNT, job
    assert {mailbox["status"] for mailbox in listed["data"]} == {"active"}
    assert len(listed["data"]) == COUNT
    # At the servers, never more logins at once than the cap, both workers together
    # (one host name, 127.0.0.1, for SMTP and IMAP: one cap for both).
    assert 1 < smtp_proxy.peak_clients <= PER_HOST, smtp_proxy.peak_clients
    assert 1 < imap_proxy.peak_clients <= PER_HOST, imap_proxy.peak_clients
    engine = sa.create_engine(sync_url)
    try:
        with engine.connect() as connection:
            tests = connection.execute(
                sa.text("SELECT mailbox_id, status FROM connection_tests WHERE job_id = :job"),
                {"job": job_id},
            ).all()
            finished_by = connection.execute(
                sa.text("SELECT executor_id FROM dbos.workflow_status WHERE workflow_uuid = :id"),
                {"id": job_workflow_id(job_id)},
            ).scalar()
    finally:
        engine.dispose()
    # One connection test per mailbox, each finished once, all passed.
    assert len(tests) == COUNT
    assert len({mailbox_id for mailbox_id, _ in tests}) == COUNT
    assert {status for _, status in tests} == {"success"}
    assert finished_by == survivor.name
    # Any living process may notice first (the API-only serve beats too); the job
    # runs on the survivor, the only one serving its queue.
    noticed = f"worker {victim.name} sent no heartbeat"
    assert noticed in survivor.log() + api.log(), survivor.log()[-3000:]
    assert "api" not in {holder, finished_by}
    # Bounded: the threshold, a heartbeat, a queue poll, and the rest of the job.
    assert taken_over_after < DEAD_AFTER + 120


async def test_a_dead_worker_s_bulk_job_finishes_on_another(
    tmp_path: Path,
    postgres: PostgresServer,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
) -> None:
    # In a thread, so the session's event loop (where the job engine was launched)
    # keeps running while the servers are started and killed: a sweep firing
    # during a long synchronous test broke the next test on PostgreSQL.
    await asyncio.to_thread(
        _a_dead_worker_s_bulk_job_finishes_on_another, tmp_path, postgres, smtp_plain, dovecot
    )
