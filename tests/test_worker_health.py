"""`mailfleet worker --health-port`: readiness and metrics of a process with no API."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from tests.servers.common import unused_tcp_port
from tests.test_cli import MAILFLEET, _clean_env


def test_worker_serves_health_readiness_and_metrics(tmp_path: Path) -> None:
    port = unused_tcp_port()
    process = subprocess.Popen(
        [*MAILFLEET, "worker", "--health-port", str(port)],
        cwd=tmp_path,
        env=_clean_env(MAILFLEET_METRICS_TOKEN="worker-metrics-token"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if "mailfleet worker running" in line:
                break
        ready = httpx.get(f"{base}/health/ready", timeout=30)
        assert ready.status_code == 200, ready.text
        assert ready.json()["data"]["database"] == "ok"
        assert ready.json()["data"]["jobEngine"] == "ok"
        assert httpx.get(f"{base}/health", timeout=30).status_code == 200
        assert httpx.get(f"{base}/metrics", timeout=30).status_code == 401
        scraped = httpx.get(
            f"{base}/metrics",
            headers={"Authorization": "Bearer worker-metrics-token"},
            timeout=30,
        )
        assert scraped.status_code == 200
        assert 'mailfleet_queue_workflows{queue="bulk_connect",state="enqueued"} 0.0' in (
            scraped.text
        )
        assert httpx.get(f"{base}/nothing", timeout=30).status_code == 404
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    assert process.returncode == 0
    # Stopped, it no longer answers.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base}/health", timeout=1)
        except httpx.TransportError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the health port outlived the worker")
