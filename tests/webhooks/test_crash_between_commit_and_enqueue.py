"""The outbox promise: an event committed by a process that dies before it could
enqueue the delivery is still delivered, once, after a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import BACKEND, make_test_settings
from tests.servers.http_receiver import HttpReceiver
from tests.servers.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "tests.webhooks.outbox_worker"]


def _env(tmp_path: Path, database_url: str | None) -> dict[str, str]:
    settings = make_test_settings(tmp_path / "data", database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLEET_")}
    env.update(
        {
            "OUTBOX_TEST_DIR": str(tmp_path),
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
            "MAILFLEET_DATA_DIR": str(settings.data_dir),
            "MAILFLEET_SECRET_KEYS": settings.secret_keys or "",
            "MAILFLEET_JWT_SECRET": settings.jwt_secret or "",
            "MAILFLEET_WORKER_ID": "outbox-test-worker",
            "MAILFLEET_ENV": "test",
            "MAILFLEET_ALLOW_PRIVATE_NETWORKS": "true",
            "MAILFLEET_WEBHOOK_RETRY_DELAYS": "0.1,0.1",
        }
    )
    if database_url:
        env["MAILFLEET_DATABASE_URL"] = database_url
    return env


def _deliveries(sync_url: str) -> list[tuple[str, int]]:
    engine = sa.create_engine(sync_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.text("SELECT status, attempt_count FROM webhook_deliveries")
            )
            return [(row[0], row[1]) for row in rows]
    finally:
        engine.dispose()


@pytest.mark.db
def test_event_committed_before_a_crash_is_delivered_after_restart(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if BACKEND == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        name = f"outbox_{uuid.uuid4().hex[:8]}"
        database_url: str | None = server.create_database(name)
        sync_url = f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{name}"
    else:
        database_url = None
        sync_url = f"sqlite:///{tmp_path / 'data' / 'mailfleet.db'}"
    env = _env(tmp_path, database_url)

    with HttpReceiver() as receiver:
        first = subprocess.run(
            [*COMMAND, "emit", receiver.url()],
            env=env,
            cwd=ROOT,
            capture_output=True,
            timeout=120,
        )
        assert first.returncode == -signal.SIGKILL, first.stderr.decode()[-3000:]
        assert (tmp_path / "committed").exists()
        # Committed, never enqueued, never sent.
        assert _deliveries(sync_url) == [("pending", 0)]
        assert receiver.received() == []

        receiver.secret = (tmp_path / "secret").read_text()
        second = subprocess.run(
            [*COMMAND, "deliver"], env=env, cwd=ROOT, capture_output=True, timeout=120
        )
        assert second.returncode == 0, second.stderr.decode()[-3000:]
        outcome = json.loads(second.stdout.decode().strip().splitlines()[-1])
        assert outcome["status"] == "succeeded"

        [delivered] = receiver.received()
        assert delivered.verified is True, delivered.verification_error
        assert delivered.payload["type"] == "mailbox.created"
        assert delivered.payload["data"]["mailboxId"] == "m1"
        assert _deliveries(sync_url) == [("succeeded", 1)]
