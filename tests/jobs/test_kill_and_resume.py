"""The durable-jobs promise: a workflow whose process is SIGKILLed mid-way
finishes after a restart, with every step done exactly once in effect."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import BACKEND, make_test_settings
from tests.servers.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, database_url: str | None) -> dict[str, str]:
    settings = make_test_settings(tmp_path / "data", database_url)
    env = {
        **os.environ,
        "RESUME_TEST_DIR": str(tmp_path),
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    env.update(
        {
            "MAILFLEET_DATA_DIR": str(settings.data_dir),
            "MAILFLEET_SECRET_KEYS": settings.secret_keys or "",
            "MAILFLEET_JWT_SECRET": settings.jwt_secret or "",
            "MAILFLEET_WORKER_ID": "resume-test-worker",
            "MAILFLEET_ENV": "test",
        }
    )
    if database_url:
        env["MAILFLEET_DATABASE_URL"] = database_url
    else:
        env.pop("MAILFLEET_DATABASE_URL", None)
    return env


def _wait_for(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"worker exited early: {process.stderr.read()!r}")  # type: ignore[union-attr]
        if time.monotonic() > deadline:
            raise AssertionError("worker never reached the blocking step")
        time.sleep(0.05)


def _effects(database_url: str) -> list[tuple[str, int]]:
    engine = sa.create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(sa.text("SELECT run_id, step FROM resume_effects ORDER BY step"))
        result = [(row[0], row[1]) for row in rows]
    engine.dispose()
    return result


@pytest.mark.db
def test_workflow_killed_mid_way_finishes_after_restart(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if BACKEND == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        name = f"resume_{uuid.uuid4().hex[:8]}"
        database_url: str | None = server.create_database(name)
        sync_url = f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{name}"
    else:
        database_url = None
        sync_url = f"sqlite:///{tmp_path / 'data' / 'mailfleet.db'}"
    env = _env(tmp_path, database_url)
    run_id = uuid.uuid4().hex[:12]
    command = [sys.executable, "-m", "tests.jobs.resumable_worker"]

    first = subprocess.Popen([*command, "start", run_id], env=env, cwd=ROOT, stderr=subprocess.PIPE)
    try:
        _wait_for(tmp_path / "reached-blocking-step", first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert (tmp_path / "steps.log").read_text().split() == ["0", "1", "2"]

    second = subprocess.run(
        [*command, "resume", run_id], env=env, cwd=ROOT, capture_output=True, timeout=120
    )
    assert second.returncode == 0, second.stderr.decode()[-3000:]
    assert f"done {run_id}" in second.stdout.decode()

    # Steps 0 and 1 had finished: they were not run again. Step 2 was cut off,
    # so it ran once more; its effect is keyed, so it happened once.
    assert (tmp_path / "steps.log").read_text().split() == ["0", "1", "2", "2", "3", "4"]
    assert _effects(sync_url) == [(run_id, step) for step in range(5)]
