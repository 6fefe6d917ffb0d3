"""What the benchmarks share: a real `mailfleet serve` to measure, and /proc readings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.servers.common import unused_tcp_port

MAILFLEET = [sys.executable, "-m", "mailfleet.cli"]


def cpu_seconds(pid: int) -> float:
    """User + system time of every thread of the process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the resident set's high-water mark, kept by the kernel."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def mailfleet_env(database_url: str | None, **settings: str) -> dict[str, str]:
    """This process's environment without its MAILFLEET_ settings, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLEET_")}
    env.update(settings)
    if database_url:
        env["MAILFLEET_DATABASE_URL"] = database_url
    return env


# How long a starting server may take to answer; a bench on a loaded machine raises it.
HEALTHY_WITHIN = 90.0


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN
    while True:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{url} did not answer; see {log}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    headers: dict[str, str]

    @property
    def pid(self) -> int:
        return self.process.pid


@contextmanager
def mailfleet_serve(workdir: Path, env: dict[str, str], email: str) -> Iterator[Server]:
    """`mailfleet admin bootstrap`, then `mailfleet serve` on a free port, answering."""
    boot = subprocess.run(
        [*MAILFLEET, "admin", "bootstrap", "--json", "--email", email, "--password", "bench-pw"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    headers = {"x-api-key": json.loads(boot.stdout)["apiKey"]}
    port = unused_tcp_port()
    log = workdir / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*MAILFLEET, "serve", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            wait_healthy(f"{base}/v1/health", process, log)
            yield Server(process, base, headers)
        finally:
            stop(process)
