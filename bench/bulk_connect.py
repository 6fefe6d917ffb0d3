"""Bulk connect throughput: Mailfleet's bulk job against a sequential client and a
bare asyncio client, all measured in one run against the same local servers.

    .venv/bin/python bench/bulk_connect.py --n 10000 --rtt-ms 100

It starts aiosmtpd (SMTP AUTH) and Dovecot (IMAP) with distinct users for each
measurement, and a latency-injecting TCP proxy in front of each (half the round
trip added in each direction, bytes kept in order). Then:

  (a) Mailfleet: a real `mailfleet serve` on a fresh SQLite data dir (or
      --database-url), one POST /v1/mailboxes/bulk of N mailboxes, polled with
      GET /v1/jobs/{id} until it completes. With --workers W (PostgreSQL only),
      once per worker count 1..W: an API-only serve and that many `mailfleet
      worker` processes, each run on a fresh database made beside --database-url's
      (the role must be allowed to CREATE DATABASE);
  (b) sequential: smtplib + imaplib logging in to --sample mailboxes one after
      the other, scaled to mailboxes/s;
  (c) ceiling: a bare asyncio client (Mailfleet's probe functions, nothing
      around them) doing the same logins for N other mailboxes at the same
      concurrency as (a).

Everything stays on loopback. Needs root (Dovecot switches users) and Debian's
dovecot-imapd.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import imaplib
import logging
import multiprocessing
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.common import (  # noqa: E402
    MAILFLEET,
    Target,
    children,
    cpu_seconds,
    descendants,
    mailfleet_env,
    mailfleet_serve,
    peak_rss_mb,
    print_targets,
    stop,
    wait_healthy,
)
from mailfleet.kit import loops  # noqa: E402
from tests.bulk.latency_proxy import LatencyProxy  # noqa: E402
from tests.servers.common import unused_tcp_port  # noqa: E402
from tests.servers.dovecot import DovecotServer  # noqa: E402
from tests.servers.smtp import SmtpServer  # noqa: E402

# The rig (SMTP server, Dovecot, proxy) stands in for mail servers and a network on
# other machines: it runs at this niceness, so it yields the two cores to the
# processes being measured, as servers elsewhere would not take them. The bulk login
# process runs at the same niceness (mailfleet.mail.login_process).
RIG_NICENESS = 10

# The proxies and the SMTP server (aiosmtpd, in a thread) run in processes of their
# own: in this one they would share the interpreter lock with the status polls being
# timed, and with each other. The proxies run on uvloop, to keep what the rig itself
# spends of the cores small.


def _run_proxies(targets: list[int], rtt_ms: float, pipe: Connection) -> None:
    async def main() -> None:
        proxies = [LatencyProxy(port, rtt_ms=rtt_ms) for port in targets]
        for proxy in proxies:
            await proxy.start()
        pipe.send([proxy.port for proxy in proxies])
        await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        for proxy in proxies:
            await proxy.stop()

    loops.run(main())


def _run_smtp(users: dict[str, str], pipe: Connection) -> None:
    # aiosmtpd logs a deprecation of its own login_data at every login.
    logging.disable(logging.WARNING)
    with SmtpServer(users) as smtp:
        pipe.send([smtp.port])
        pipe.recv()


def _rig_main(target: Callable[..., None], *args: object) -> None:
    os.nice(RIG_NICENESS)
    target(*args)


class RigProcess:
    """`target(*args, pipe)` in a process of its own at RIG_NICENESS: it sends the
    ports it listens on through `pipe`, then serves until told to stop."""

    def __init__(self, target: Callable[..., None], *args: object) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_rig_main, args=(target, *args, child), daemon=True)
        self._process.start()
        self.ports: list[int] = self._pipe.recv()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def __enter__(self) -> RigProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self._pipe.send("stop")
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()


# (c) The ceiling: Mailfleet's own probe functions and nothing else, in a process
# of its own on the event loop of Mailfleet's login process, like the logins in (a).


def _run_ceiling(
    users: list[tuple[str, str]], smtp_port: int, imap_port: int, concurrency: int, pipe: Connection
) -> None:
    from mailfleet.mail.probes import ImapSettings, SmtpSettings, probe_imap, probe_smtp

    async def main() -> tuple[float, int, float, dict[str, int]]:
        slots = asyncio.Semaphore(concurrency)
        ok = 0
        failures: dict[str, int] = {}

        async def one(email: str, password: str) -> None:
            nonlocal ok
            async with slots:
                smtp, imap = await asyncio.gather(
                    probe_smtp(
                        SmtpSettings("127.0.0.1", smtp_port, "none", email, password),
                        allow_private=True,
                    ),
                    probe_imap(
                        ImapSettings("127.0.0.1", imap_port, "none", email, password),
                        allow_private=True,
                    ),
                )
                ok += smtp.ok and imap.ok
                for result in (smtp, imap):
                    if not result.ok:
                        name = f"{result.protocol} {result.code}"
                        failures[name] = failures.get(name, 0) + 1

        started = time.perf_counter()
        cpu = time.process_time()
        await asyncio.gather(*(one(email, password) for email, password in users))
        return time.perf_counter() - started, ok, time.process_time() - cpu, failures

    pipe.send(loops.run(main()))


def measure_ceiling(
    users: list[tuple[str, str]], smtp_port: int, imap_port: int, concurrency: int
) -> tuple[float, int, float, dict[str, int]]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=_run_ceiling, args=(users, smtp_port, imap_port, concurrency, child)
    )
    process.start()
    elapsed, ok, cpu, failures = parent.recv()
    process.join()
    return elapsed, ok, cpu, failures


# (b) The sequential baseline: the standard library, one mailbox after another.


def measure_sequential(
    users: list[tuple[str, str]], smtp_port: int, imap_port: int
) -> tuple[float, int]:
    ok = 0
    started = time.perf_counter()
    for email, password in users:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
            smtp.ehlo()
            smtp.login(email, password)
        imap = imaplib.IMAP4("127.0.0.1", imap_port, timeout=30)
        try:
            imap.login(email, password)
            status, _ = imap.list()
            ok += status == "OK"
        finally:
            imap.logout()
    return time.perf_counter() - started, ok


# (a) Mailfleet: a real server, one bulk job.


@dataclass
class MailfleetRun:
    accept_seconds: float = 0.0
    wall_seconds: float = 0.0
    connected: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    accept_cpu: float = 0.0
    verify_cpu: float = 0.0
    login_process_cpu: float = 0.0
    """Of accept_cpu + verify_cpu: what the servers' login processes spent."""
    rig_cpu: dict[str, float] = field(default_factory=dict)
    """CPU the test servers, the proxy and this process (polls) spent during the run, by part."""
    poll_ms: list[float] = field(default_factory=list)
    status: str = ""
    chunks_by_worker: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def mailfleet_workers(workdir: Path, env: dict[str, str], count: int) -> Iterator[list[int]]:
    """`count` `mailfleet worker` processes, each answering /health/ready; their pids."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for number in range(1, count + 1):
            port = unused_tcp_port()
            log = workdir / f"worker-{number}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [*MAILFLEET, "worker", "--health-port", str(port)],
                    cwd=workdir,
                    env={**env, "MAILFLEET_WORKER_ID": f"bench-worker-{number}"},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            processes.append(process)
            wait_healthy(f"http://127.0.0.1:{port}/health/ready", process, log)
        yield [process.pid for process in processes]
    finally:
        for process in processes:
            stop(process)


def fresh_database(server_url: str, name: str) -> str:
    """A new, empty database on --database-url's server; its URL."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(server_url)
    admin = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return url.set(database=name).render_as_string(hide_password=False)


def _chunks_by_worker(database_url: str, job_id: str) -> dict[str, int]:
    """How many of the job's chunk workflows each worker ran, per DBOS's table."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as connection:
        rows = connection.execute(
            "SELECT executor_id, count(*) FROM dbos.workflow_status "
            "WHERE workflow_uuid LIKE %s GROUP BY executor_id ORDER BY executor_id",
            (f"bulk-job-{job_id}-chunk-%",),
        ).fetchall()
    return {str(executor): int(count) for executor, count in rows}


def measure_mailfleet(
    users: list[tuple[str, str]],
    smtp_port: int,
    imap_port: int,
    *,
    concurrency: int,
    database_url: str | None,
    workdir: Path,
    workers: int = 0,
    login_process: bool = True,
    chunk_size: int | None = None,
    rig: Callable[[], dict[str, float]] = dict,
) -> MailfleetRun:
    """With `workers`, the serve answers the API only and that many workers run
    the job; without, the one serve does everything."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = mailfleet_env(
        database_url,
        MAILFLEET_ALLOW_PRIVATE_NETWORKS="true",
        MAILFLEET_BULK_CONCURRENCY=str(concurrency),
        # Every mailbox of the bench is on one host (127.0.0.1); the per-host cap
        # (on PostgreSQL one for all workers together) would otherwise be what is
        # measured.
        MAILFLEET_BULK_PER_HOST=str(concurrency * max(1, workers)),
        MAILFLEET_BULK_MAX_ITEMS=str(max(len(users), 10_000)),
        MAILFLEET_BULK_MAX_UPLOAD_BYTES=str(256 * 1024 * 1024),
        MAILFLEET_WORKER_ID="bench",
        MAILFLEET_BULK_LOGIN_PROCESS=str(login_process).lower(),
        **({"MAILFLEET_BULK_CHUNK_SIZE": str(chunk_size)} if chunk_size else {}),
    )
    run = MailfleetRun()
    items = [
        {
            "email": email,
            "smtp": {"host": "127.0.0.1", "port": smtp_port, "secure": False, "password": pw},
            "imap": {"host": "127.0.0.1", "port": imap_port, "secure": False, "password": pw},
        }
        for email, pw in users
    ]
    serve_env = {**env, "MAILFLEET_WORKER_QUEUES": "default"} if workers else env
    with (
        mailfleet_serve(workdir, serve_env, "bench@example.test") as server,
        mailfleet_workers(workdir, env, workers) as worker_pids,
        httpx.Client(base_url=server.base, headers=server.headers, timeout=600) as client,
    ):
        pids = [server.pid, *worker_pids]

        def cpu() -> float:
            return sum(cpu_seconds(pid) for pid in pids)

        cpu_before, rig_before = cpu(), rig()
        started = time.perf_counter()
        response = client.post("/v1/mailboxes/bulk", json=items)
        run.accept_seconds = time.perf_counter() - started
        cpu_accepted = cpu()
        run.accept_cpu = cpu_accepted - cpu_before
        if response.status_code != 202:
            raise SystemExit(f"bulk request refused: {response.status_code} {response.text}")
        job_id = response.json()["data"]["id"]
        while True:
            polled = time.perf_counter()
            job = client.get(f"/v1/jobs/{job_id}").json()["data"]
            run.poll_ms.append((time.perf_counter() - polled) * 1000)
            if job["status"] in ("completed", "failed"):
                break
            time.sleep(0.25)
        run.wall_seconds = time.perf_counter() - started
        run.verify_cpu = cpu() - cpu_accepted
        # The login processes start with the job's first logins and live until their
        # server stops: all they spent is the job's.
        run.login_process_cpu = sum(cpu_seconds(child) for pid in pids for child in children(pid))
        run.rig_cpu = {part: spent - rig_before[part] for part, spent in rig().items()}
        run.status = job["status"]
        run.counts = job["counts"]
        run.connected = job["counts"]["connected"]
        run.peak_rss_mb = max(peak_rss_mb(pid) for pid in pids)
    if workers and database_url:
        run.chunks_by_worker = _chunks_by_worker(database_url, job_id)
    return run


def _users(prefix: str, count: int) -> list[tuple[str, str]]:
    return [(f"{prefix}{i}@bench.test", f"{prefix}-secret-{i}") for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000, help="mailboxes in the bulk job")
    parser.add_argument("--rtt-ms", type=float, default=100.0, help="round trip added (0: raw)")
    parser.add_argument("--sample", type=int, default=50, help="mailboxes for the sequential run")
    parser.add_argument("--concurrency", type=int, default=200, help="logins in flight")
    parser.add_argument(
        "--chunk-size", type=int, help="MAILFLEET_BULK_CHUNK_SIZE (default: the server's)"
    )
    parser.add_argument("--database-url", help="PostgreSQL for Mailfleet (default: fresh SQLite)")
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="run (a) with 1, 2 ... this many `mailfleet worker` processes (PostgreSQL)",
    )
    parser.add_argument(
        "--login-process",
        choices=("on", "off"),
        default="on",
        help="MAILFLEET_BULK_LOGIN_PROCESS for (a): logins in a child process, or on the\n"
        "server's own event loop",
    )
    args = parser.parse_args()
    if args.workers and not args.database_url:
        parser.error("--workers needs --database-url (several processes share PostgreSQL)")
    # aiosmtpd warns once per login about its own deprecated attribute.
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("mail.log").setLevel(logging.ERROR)

    worker_counts = list(range(1, args.workers + 1)) or [0]
    # Fresh users for each run of (a): a mailbox logged in once is not logged in again.
    mailfleet_users = {count: _users(f"a{count}-", args.n) for count in worker_counts}
    sequential_users = _users("b", args.sample)
    ceiling_users = _users("c", args.n)
    everyone = dict(
        [user for users in mailfleet_users.values() for user in users]
        + sequential_users
        + ceiling_users
    )
    workdir = Path(tempfile.mkdtemp(prefix="mailfleet-bench-"))
    # Other work on the machine moves every figure; the 1-minute load average says
    # how busy it was.
    load_before = os.getloadavg()[0]
    print(
        f"bulk connect bench: n={args.n} rtt={args.rtt_ms:g}ms concurrency={args.concurrency} "
        f"sample={args.sample} cores={os.cpu_count()} database="
        f"{'postgresql' if args.database_url else 'sqlite'} workers={args.workers or 'serve'} "
        f"load={os.getloadavg()[0]:.1f}",
        flush=True,
    )
    runs: dict[int, MailfleetRun] = {}
    with (
        RigProcess(_run_smtp, everyone) as smtp,
        DovecotServer(everyone) as dovecot,
        RigProcess(_run_proxies, [*smtp.ports, dovecot.port], args.rtt_ms) as proxies,
    ):
        # What the master forks from now on inherits its niceness.
        for pid in descendants(dovecot.pid or 0):
            os.setpriority(os.PRIO_PROCESS, pid, RIG_NICENESS)

        def rig_cpu() -> dict[str, float]:
            """The SMTP server, Dovecot with the login processes it forked, the
            proxy, and this process (the polls)."""
            return {
                "SMTP server": cpu_seconds(smtp.pid) if smtp.pid else 0.0,
                "Dovecot": cpu_seconds(dovecot.pid) if dovecot.pid else 0.0,
                "proxy": cpu_seconds(proxies.pid) if proxies.pid else 0.0,
                "polls": time.process_time(),
            }

        smtp_port, imap_port = proxies.ports
        for count in worker_counts:
            print(f"(a) mailfleet bulk job{_on_workers(count)} ...", flush=True)
            database_url = args.database_url
            if count and database_url:
                database_url = fresh_database(
                    database_url, f"mailfleet_bench_{os.getpid()}_{count}"
                )
            runs[count] = measure_mailfleet(
                mailfleet_users[count],
                smtp_port,
                imap_port,
                concurrency=args.concurrency,
                database_url=database_url,
                workdir=workdir / f"run-{count}",
                workers=count,
                login_process=args.login_process == "on",
                chunk_size=args.chunk_size,
                rig=rig_cpu,
            )
        print("(b) sequential smtplib + imaplib ...", flush=True)
        sequential_seconds, sequential_ok = measure_sequential(
            sequential_users, smtp_port, imap_port
        )
        print("(c) bare asyncio client ...", flush=True)
        ceiling_seconds, ceiling_ok, ceiling_cpu, ceiling_failures = measure_ceiling(
            ceiling_users, smtp_port, imap_port, args.concurrency
        )
    shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()[0]

    rate_b = args.sample / sequential_seconds
    rate_c = args.n / ceiling_seconds
    rows: list[tuple[str, str]] = []
    for count, run in runs.items():
        rate_a = args.n / run.wall_seconds
        polls = sorted(run.poll_ms)
        p95 = polls[min(len(polls) - 1, int(len(polls) * 0.95))]
        on = _on_workers(count)
        rig_total = sum(run.rig_cpu.values())
        cores = os.cpu_count() or 1
        rows += [
            (
                f"(a) mailfleet bulk job{on}",
                f"{rate_a:8.1f} mailboxes/s  ({run.connected}/{args.n} connected, {run.status})",
            ),
            (
                f"    job wall time{on}",
                f"{run.wall_seconds:8.1f} s "
                f"(of which accepting the request {run.accept_seconds:.1f} s)",
            ),
            (f"    peak RSS{on}", f"{run.peak_rss_mb:8.0f} MB (largest process with its children)"),
            (
                f"    chunks run per worker{on}",
                ", ".join(f"{name} {count}" for name, count in run.chunks_by_worker.items()) or "-",
            ),
            (
                f"    CPU per mailbox{on}",
                f"{run.accept_cpu / args.n * 1000:.2f} ms accepting + "
                f"{run.verify_cpu / args.n * 1000:.2f} ms verifying (all processes; "
                f"{run.login_process_cpu / args.n * 1000:.2f} ms of it in login processes)",
            ),
            (
                f"    the rig's CPU per mailbox{on}",
                f"{rig_total / args.n * 1000:.2f} ms ("
                + ", ".join(
                    f"{part} {spent / args.n * 1000:.2f}" for part, spent in run.rig_cpu.items()
                )
                + "); with Mailfleet's, the job needs "
                f"{(run.accept_cpu + run.verify_cpu + rig_total) / cores:.1f} s "
                f"at best on {cores} cores",
            ),
            (
                f"    GET /v1/jobs/{{id}} while running{on}",
                f"p50 {statistics.median(polls):.1f} ms, p95 {p95:.1f} ms ({len(polls)} polls)",
            ),
        ]
    first = next(iter(runs.values()))
    rate_first = args.n / first.wall_seconds
    rows += [
        (
            "(b) sequential, scaled",
            f"{rate_b:8.1f} mailboxes/s  ({sequential_ok}/{args.sample} ok)",
        ),
        ("(c) bare asyncio ceiling", f"{rate_c:8.1f} mailboxes/s  ({ceiling_ok}/{args.n} ok)"),
        ("a/b", f"{rate_first / rate_b:8.1f}x"),
        ("a/c", f"{rate_first / rate_c:8.2f}"),
        ("bare client CPU per mailbox", f"{ceiling_cpu / args.n * 1000:8.2f} ms"),
        ("load average (1 min)", f"{load_before:8.1f} at start, {load_after:.1f} at end"),
    ]
    for count, run in runs.items():
        if count > 1:
            rows.append(
                (f"{count} workers / 1 worker", f"{first.wall_seconds / run.wall_seconds:8.2f}x")
            )
    width = max(len(label) for label, _ in rows)
    print()
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    if ceiling_failures:
        print(f"bare client failures (not retried): {ceiling_failures}")
    for run in runs.values():
        if run.counts.get("connected") != args.n:
            print(f"warning: not every mailbox connected: {run.counts}")
    polls = sorted(first.poll_ms)
    print_targets(
        "issue 17's targets (item 1, set for --n 10000 --rtt-ms 100), "
        f"(a) mailfleet bulk job{_on_workers(next(iter(runs)))}:",
        [
            Target("a/c, of the bare client's rate", rate_first / rate_c, 0.8, "", floor=True),
            Target(f"{args.n} mailboxes end to end", first.wall_seconds, 75.0, "s"),
            Target(f"accepting {args.n} rows", first.accept_seconds, 5.0, "s"),
            Target(
                "CPU per mailbox / the bare client's",
                (first.accept_cpu + first.verify_cpu) / ceiling_cpu,
                2.0,
                "x",
            ),
            Target(
                "status polls p95", polls[min(len(polls) - 1, int(len(polls) * 0.95))], 50.0, "ms"
            ),
            Target("peak RSS", first.peak_rss_mb, 300.0, "MB"),
        ],
    )


def _on_workers(count: int) -> str:
    return f", {count} worker{'s' if count > 1 else ''}" if count else ""


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
