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


def _stat(pid: int) -> list[str]:
    """/proc/PID/stat's fields after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _process_tree() -> dict[int, list[int]]:
    """Each living process's children, from one pass over /proc (a pass per process
    would cost seconds once Dovecot has a hundred imap processes)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int(_stat(int(entry.name))[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            tree.setdefault(parent, []).append(int(entry.name))
    return tree


def children(pid: int) -> list[int]:
    """The living child processes of `pid`."""
    return _process_tree().get(pid, [])


def descendants(pid: int) -> list[int]:
    """`pid` and every living process below it."""
    tree = _process_tree()
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        queue.extend(tree.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system time of every thread of the process and of its descendants (a
    server's bulk login process): living ones' own, ended ones' as the kernel adds
    them to their waiting parent. In seconds."""
    ticks = 0
    for process in descendants(pid):
        try:
            ticks += sum(int(value) for value in _stat(process)[11:15])  # utime stime cutime cstime
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue  # ended since the tree was read: its parent counts it now
    return ticks / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """VmHWM, the resident set's high-water mark kept by the kernel, of the process
    plus each living descendant's: an upper bound of what they held at once."""
    total = 0.0
    for process in descendants(pid):
        try:
            status = Path(f"/proc/{process}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


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


@dataclass(frozen=True)
class Target:
    """A figure a benchmark measured and the bound an issue set for it."""

    what: str
    measured: float
    bound: float
    unit: str
    floor: bool = False
    """The bound is a least value (a rate), not a most value (a time)."""

    @property
    def met(self) -> bool:
        return self.measured >= self.bound if self.floor else self.measured < self.bound


def print_targets(title: str, targets: list[Target]) -> bool:
    """One line a target, saying whether this run met it; True when all were."""
    width = max(len(target.what) for target in targets)
    print(f"\n{title}")
    for target in targets:
        relation = "at least" if target.floor else "under"
        print(
            f"  {target.what:<{width}}  {target.measured:9.2f} {target.unit:<6}"
            f" ({relation} {target.bound:g})  {'met' if target.met else 'NOT MET'}"
        )
    missed = [target.what for target in targets if not target.met]
    print(
        f"  {len(targets) - len(missed)} of {len(targets)} met"
        + (f"; not met: {', '.join(missed)}" if missed else "")
    )
    return not missed
