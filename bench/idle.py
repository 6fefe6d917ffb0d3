"""Idle cost: the CPU an idle `mailfleet serve` uses, against a bare uvicorn app in
the same run, and how long work enqueued on a quiet queue waits before it runs.

    .venv/bin/python bench/idle.py --seconds 60

  (a) Mailfleet: a real `mailfleet serve` on a fresh SQLite data dir (or
      --database-url), left alone for --seconds once it has settled;
  (b) baseline: uvicorn serving a one-route FastAPI app, the same --seconds.

Both are sampled from /proc/<pid>/stat (user + system time of every thread) and
printed as a percentage of one core. Then, on the still-running Mailfleet:
enqueue-to-finish latency of a single mailbox's connection test (its SMTP and IMAP
ports refuse at once, so the test's own work is a few milliseconds) and
enqueue-to-start latency of a one-row bulk job, each measured --samples times
from the server's own timestamps.

Everything stays on loopback.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import (  # noqa: E402
    Target,
    cpu_seconds,
    mailfleet_env,
    mailfleet_serve,
    print_targets,
    stop,
    wait_healthy,
)
from tests.servers.common import unused_tcp_port  # noqa: E402

BARE_APP = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}
"""


def _idle_share(pid: int, seconds: float) -> float:
    """Share of one core the process used over `seconds` (1.0 = a whole core)."""
    before, started = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / (time.monotonic() - started)


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def measure_bare(workdir: Path, seconds: float) -> float:
    (workdir / "bare_app.py").write_text(BARE_APP)
    port = unused_tcp_port()
    log = workdir / "bare.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port)],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}/health", process, log)
            time.sleep(2)
            return _idle_share(process.pid, seconds)
        finally:
            stop(process)


def _latencies(client: httpx.Client, samples: int) -> tuple[list[float], list[float]]:
    """Seconds from enqueue to finish: a connection test, then a one-row bulk job."""
    closed = unused_tcp_port()  # nothing listens: logins are refused at once
    servers = {"host": "127.0.0.1", "port": closed, "secure": False, "password": "pw"}
    single: list[float] = []
    bulk: list[float] = []
    for i in range(samples):
        # Off the queues' polling phase: each sample lands at another point of it.
        time.sleep(random.uniform(0.5, 3.0))
        created = client.post(
            "/v1/mailboxes",
            json={"email": f"idle{i}@bench.test", "smtp": servers, "imap": servers},
        )
        created.raise_for_status()
        mailbox_id = created.json()["data"]["id"]
        while True:
            test = client.get(f"/v1/mailboxes/{mailbox_id}/connection-test").json()["data"]
            if test["status"] != "pending":
                break
            time.sleep(0.02)
        single.append((_parse(test["finishedAt"]) - _parse(test["createdAt"])).total_seconds())

        time.sleep(random.uniform(0.5, 3.0))
        accepted = client.post(
            "/v1/mailboxes/bulk",
            json=[{"email": f"idle-bulk{i}@bench.test", "smtp": servers, "imap": servers}],
        )
        accepted.raise_for_status()
        job_id = accepted.json()["data"]["id"]
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()["data"]
            if job["startedAt"]:
                break
            time.sleep(0.02)
        # Started, not finished: a refused login is retried (MAILFLEET_BULK_RETRY_DELAY).
        bulk.append((_parse(job["startedAt"]) - _parse(job["createdAt"])).total_seconds())
    return single, bulk


def measure_mailfleet(
    workdir: Path, seconds: float, settle: float, samples: int, database_url: str | None
) -> tuple[float, list[float], list[float]]:
    env = mailfleet_env(
        database_url, MAILFLEET_ALLOW_PRIVATE_NETWORKS="true", MAILFLEET_WORKER_ID="bench-idle"
    )
    with mailfleet_serve(workdir, env, "idle@example.test") as server:
        # Start-up work (migrations checked, one sweep of each sweeper, and DBOS
        # listing its schedules every second for its first minute) is not idling.
        time.sleep(settle)
        share = _idle_share(server.pid, seconds)
        with httpx.Client(base_url=server.base, headers=server.headers, timeout=60) as client:
            single, bulk = _latencies(client, samples)
    return share, single, bulk


def _describe(values: list[float]) -> str:
    return (
        f"median {statistics.median(values) * 1000:.0f} ms, "
        f"max {max(values) * 1000:.0f} ms ({len(values)} samples)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        help="idle window sampled (a whole minute holds one tick of the sweepers)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=60.0,
        help="wait after start-up (DBOS polls its schedules every second for a minute)",
    )
    parser.add_argument("--samples", type=int, default=5, help="latency samples of each kind")
    parser.add_argument("--database-url", help="PostgreSQL for Mailfleet (default: fresh SQLite)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="mailfleet-idle-"))
    print(
        f"idle bench: {args.seconds:g} s sampled, cores={os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.2f}, database="
        f"{'postgresql' if args.database_url else 'sqlite'}",
        flush=True,
    )
    try:
        print("(b) bare uvicorn app ...", flush=True)
        bare = measure_bare(workdir, args.seconds)
        print("(a) mailfleet serve ...", flush=True)
        share, single, bulk = measure_mailfleet(
            workdir, args.seconds, args.settle, args.samples, args.database_url
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = [
        ("(a) mailfleet serve, idle", f"{share * 100:6.2f} % of a core"),
        ("(b) bare uvicorn app, idle", f"{bare * 100:6.2f} % of a core"),
        ("a - b", f"{(share - bare) * 100:6.2f} % of a core"),
        ("enqueue to finish: connection test", _describe(single)),
        ("enqueue to start: 1-row bulk job", _describe(bulk)),
        ("load average after", f"{os.getloadavg()[0]:.2f}"),
    ]
    width = max(len(label) for label, _ in rows)
    print()
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print_targets(
        "issue 17's target (item 4):",
        [Target("mailfleet serve, idle", share * 100, 1.0, "% core")],
    )


if __name__ == "__main__":
    main()
