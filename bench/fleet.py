"""A large fleet: list, count and export 100,000 mailboxes of one workspace, through
Mailfleet's HTTP API and, in the same run, as the same queries issued directly
through SQLAlchemy.

    .venv/bin/python bench/fleet.py --n 100000                      # SQLite, then PostgreSQL
    .venv/bin/python bench/fleet.py --n 100000 --databases sqlite
    .venv/bin/python bench/fleet.py --n 100000 --database-url postgresql://user@host/empty_db

For each database: `mailfleet admin bootstrap`, a real `mailfleet serve` (SQLite in a
fresh data dir; PostgreSQL from --database-url, or a private server started from the
PostgreSQL binaries on PATH), then --n mailboxes bulk-loaded into the bootstrap
workspace through SQLAlchemy Core (tests/scale/fleet_data.py: 20 tags, 50 pools, a
domain per 100 mailboxes, each DNS-checked within the last six hours as a fleet at
rest is, a connection test each). The server resolves names on a loopback DNS
server. On PostgreSQL the loaded tables are VACUUM ANALYZEd, as autovacuum would soon
do; SQLite gets no ANALYZE (Mailfleet never runs one).

Then, --requests times each, one after another on a kept-alive connection:

  GET /v1/mailboxes: the first page (100), filtered by status, tag, domain, pool and
      search, the last page by cursor (as the page before gave it, carrying the
      total) and, for comparison, by skip;
  GET /v1/dashboard/mailbox-status-counts;
  GET /api/v1/inboxes (DeepLead's list, Bearer auth);

each against its baseline: the same queries (Mailfleet's own: the page, its rows'
JSON written by the database as the route has it written, and its count) on a fresh
AsyncSession of an engine like the server's, in this process. It prints p50 and p99
of both and the ratio of the p50s. This process's garbage collector is paused while
a loop is timed (`own_collector_paused`), so its pauses are not read as the server's.

Before those, POST /v1/exports/mailboxes of the whole fleet as CSV (credentials
included), read as it streams, against the same rows streamed through SQLAlchemy
(yield_per) and written with the csv module here; the server's resident set is
sampled every 20 ms while it runs. Everything stays on loopback.

It ends with issue 17's targets (item 2), each said met or not by this run's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import gc
import io
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import bindparam, create_engine, select, text  # noqa: E402
from sqlalchemy.ext.asyncio import async_sessionmaker  # noqa: E402

from bench import common  # noqa: E402
from bench.common import (  # noqa: E402
    Target,
    mailfleet_env,
    mailfleet_serve,
    peak_rss_mb,
    print_targets,
)
from mailfleet.db import create_engine_for  # noqa: E402
from mailfleet.kit.crypto import Keyring, parse_secret_keys  # noqa: E402
from mailfleet.kit.pagination import Keyset, Page  # noqa: E402
from mailfleet.mailboxes import service as mailboxes_service  # noqa: E402
from mailfleet.mailboxes.repository import MailboxFilters, MailboxRepository  # noqa: E402
from mailfleet.mailboxes.router import listing_json  # noqa: E402
from mailfleet.models import Mailbox  # noqa: E402
from tests.scale.fleet_data import Fleet, load_fleet  # noqa: E402
from tests.servers.dnsserver import LocalDnsServer  # noqa: E402
from tests.servers.postgres import PostgresServer  # noqa: E402

PAGE = 100
# Issue 17's bounds (item 2): a list page's p99, the status counts', the export's time,
# and what the server may grow by while it streams ("flat memory": not with the fleet).
PAGE_P99_MS = 25.0
COUNTS_P99_MS = 50.0
EXPORT_SECONDS = 10.0
EXPORT_GROWTH_MB = 50.0
# The issue asks for a fast deep page by cursor; skip is timed for comparison only.
UNTARGETED = "deep page, skip"


@dataclass
class Case:
    name: str
    params: dict[str, str]
    filters: MailboxFilters
    after: Keyset | None = None
    skip: int = 0


@dataclass
class Timing:
    name: str
    http: list[float]
    direct: list[float]


def _ms(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def _line(timing: Timing) -> str:
    http50, http99 = _ms(timing.http, 0.5), _ms(timing.http, 0.99)
    direct50, direct99 = _ms(timing.direct, 0.5), _ms(timing.direct, 0.99)
    return (
        f"  {timing.name:<34} {http50:7.1f} {http99:7.1f}   {direct50:7.1f} {direct99:7.1f}"
        f"   {http50 / direct50:5.2f}x"
    )


def _sync_url(async_url: str) -> str:
    return async_url.replace("sqlite+aiosqlite", "sqlite").replace(
        "postgresql+asyncpg", "postgresql+psycopg"
    )


def _workspace_id(server_base: str, headers: dict[str, str]) -> str:
    response = httpx.get(f"{server_base}/v1/workspaces", headers=headers, timeout=30)
    response.raise_for_status()
    (workspace,) = response.json()["data"]
    return str(workspace["id"])


def load(url: str, workspace_id: str, n: int, keyring: Keyring) -> Fleet:
    engine = create_engine(_sync_url(url))
    try:
        with engine.begin() as connection:
            fleet = load_fleet(connection, workspace_id, n, keyring)
        if engine.dialect.name == "postgresql":
            with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.execute(text("VACUUM ANALYZE"))
                _until_all_visible(connection)
    finally:
        engine.dispose()
    return fleet


# The loaded tables whose index-only scans the measured queries use.
VISIBLE_TABLES = ("mailboxes", "mailbox_tags", "connection_tests")


def _until_all_visible(connection: Any) -> None:
    """VACUUM until the fleet's pages are marked all-visible, as autovacuum leaves a
    table at rest. The VACUUM straight after the load's commit marked none here, so
    every index-only scan (the pending tests' count, a tag's link probes) read the
    table too: the status counts took 14 ms for their pending tests instead of 3."""
    query = text(
        "SELECT sum(relallvisible)::float / greatest(sum(relpages), 1) FROM pg_class"
        " WHERE relname IN :tables"
    ).bindparams(bindparam("tables", expanding=True))
    visible = 0.0
    for _ in range(30):
        visible = connection.scalar(query, {"tables": list(VISIBLE_TABLES)}) or 0.0
        if visible >= 0.99:
            break
        time.sleep(1)
        connection.execute(text(f"VACUUM {', '.join(VISIBLE_TABLES)}"))
    print(f"  pages marked all-visible: {visible:.0%}", flush=True)


def cases(fleet: Fleet, deep_cursor: Keyset) -> list[Case]:
    tag, pool, domain = (
        fleet.tag_names[3],
        fleet.pool_ids[7],
        fleet.domains[len(fleet.domains) // 2],
    )
    # "farid.9" is in about one email in 90 (farid.9, farid.95, farid.905...).
    search = "farid.9"
    return [
        Case("first page", {}, MailboxFilters()),
        Case("status=active", {"status": "active"}, MailboxFilters(status="active")),
        Case(f"tag={tag}", {"tag": tag}, MailboxFilters(tag=tag)),
        Case("domain", {"domain": domain}, MailboxFilters(domain=domain)),
        Case("poolId", {"poolId": pool}, MailboxFilters(pool_id=pool)),
        Case(f"search={search}", {"search": search}, MailboxFilters(search=search)),
        Case(
            "deep page, cursor",
            {"cursor": deep_cursor.encode()},
            MailboxFilters(),
            after=deep_cursor,
        ),
        Case(
            "deep page, skip", {"skip": str(fleet.n - PAGE)}, MailboxFilters(), skip=fleet.n - PAGE
        ),
    ]


@contextmanager
def own_collector_paused() -> Iterator[None]:
    """This process's garbage collector held off while a loop is timed, as timeit
    does. The bench's own full collections took 75 to 90 ms here, and, the bench being
    deterministic, fell in the same case of each run (the 6th, `search=`), where
    they were read as the server's: an 88 ms request against a p50 of 10 ms. The
    server's collector runs as it always does."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def time_http(
    client: httpx.Client, path: str, params: dict[str, str], requests: int
) -> list[float]:
    client.get(path, params=params).raise_for_status()  # warm
    samples = []
    with own_collector_paused():
        for _ in range(requests):
            started = time.perf_counter()
            response = client.get(path, params=params)
            samples.append(time.perf_counter() - started)
            response.raise_for_status()
    return samples


class Direct:
    """The baseline: Mailfleet's queries on an engine like the server's, no HTTP."""

    def __init__(self, url: str, workspace_id: str) -> None:
        self.engine = create_engine_for(url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.workspace_id = workspace_id

    async def time(self, query: Callable[[Any], Awaitable[Any]], requests: int) -> list[float]:
        async with self.sessions() as session:
            await query(session)
        samples = []
        with own_collector_paused():
            for _ in range(requests):
                started = time.perf_counter()
                async with self.sessions() as session:
                    await query(session)
                samples.append(time.perf_counter() - started)
        return samples

    def page(self, case: Case, *, deeplead: bool = False) -> Callable[[Any], Awaitable[Any]]:
        async def run(session: Any) -> Any:
            # The repository's own statements: the page (one row more, to know if more
            # follow) as the route reads it, each row's JSON written by the database
            # with its tags' names (DeepLead's inboxes: listings, without tags), then
            # the count over the same filters.
            repository = MailboxRepository(session)
            page = Page(limit=PAGE, skip=case.skip)
            if deeplead:
                rows, _, counted = await repository.newest_listings(
                    self.workspace_id, case.filters, page, case.after
                )
            else:
                rows, _, counted = await repository.newest_rendered(
                    self.workspace_id, case.filters, page, case.after, listing_json
                )
            if case.after is not None and case.after.total is not None:
                return rows, case.after.total
            if counted is not None:  # the page's statement counted (a search, on SQLite)
                return rows, counted
            return rows, await repository.count_matching(self.workspace_id, case.filters)

        return run

    def status_counts(self) -> Callable[[Any], Awaitable[Any]]:
        async def run(session: Any) -> Any:
            # The service's own reads: the maintained counts (mailbox_counts) and the
            # pending tests' count.
            return await mailboxes_service.status_counts(session, self.workspace_id)

        return run

    async def export(self, keyring: Keyring) -> tuple[float, int]:
        """Seconds to stream every mailbox with its tags and write it as CSV, and lines."""
        started = time.perf_counter()
        lines = 0
        async with self.sessions() as session:
            query = (
                MailboxRepository.filtered(self.workspace_id, MailboxFilters())
                .order_by(Mailbox.created_at, Mailbox.id)
                .execution_options(yield_per=1000)
            )
            result = await session.stream_scalars(query)
            async for batch in result.partitions():
                sink = io.StringIO()
                writer = csv.writer(sink, lineterminator="\r\n")
                for m in batch:
                    writer.writerow(
                        [
                            m.email,
                            m.display_name,
                            m.smtp_host,
                            m.smtp_port,
                            m.smtp_username,
                            keyring.decrypt(m.smtp_password_enc),
                            m.imap_host,
                            m.imap_port,
                            m.imap_username,
                            keyring.decrypt(m.imap_password_enc),
                            ";".join(t.name for t in m.tags),
                        ]
                    )
                    session.expunge(m)
                lines += sink.getvalue().count("\r\n")
        return time.perf_counter() - started, lines

    async def close(self) -> None:
        await self.engine.dispose()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def export_over_http(client: httpx.Client, pid: int) -> tuple[float, int, float, float]:
    """Seconds, CSV lines, RSS before (MB) and the highest RSS sampled while it ran."""
    before = rss_mb(pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_mb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = 0
    started = time.perf_counter()
    try:
        with client.stream("POST", "/v1/exports/mailboxes", json={}, timeout=600) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                lines += chunk.count(b"\n")
        elapsed = time.perf_counter() - started
    finally:
        done.set()
        sampler.join()
    return elapsed, lines, before, peak


def bench_one(label: str, database_url: str | None, n: int, requests: int) -> None:
    # The server's own DNS (its rechecks of the fleet's domains) goes to an empty
    # zone on loopback, never to this machine's resolver.
    with LocalDnsServer() as dns:
        _bench_one(label, database_url, n, requests, dns.nameserver)


def _bench_one(
    label: str, database_url: str | None, n: int, requests: int, nameserver: str
) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mailfleet-bench-fleet-"))
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    secret = f"bench:{key}"
    env = mailfleet_env(
        database_url,
        MAILFLEET_DATA_DIR=str(workdir / "data"),
        MAILFLEET_SECRET_KEYS=secret,
        MAILFLEET_WORKER_ID="bench-fleet",
        MAILFLEET_LOG_LEVEL="WARNING",
        MAILFLEET_DNS_NAMESERVERS=nameserver,
        # The server runs this checkout's code, not whatever the venv's editable
        # install points at (the server's working directory is a temp dir).
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])),
    )
    url = (
        database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
        if database_url
        else f"sqlite+aiosqlite:///{workdir / 'data' / 'mailfleet.db'}"
    )
    keyring = Keyring(parse_secret_keys(secret))
    try:
        with mailfleet_serve(workdir, env, "fleet@example.test") as server:
            workspace_id = _workspace_id(server.base, server.headers)
            started = time.perf_counter()
            fleet = load(url, workspace_id, n, keyring)
            print(
                f"\n== {label}: {n} mailboxes loaded in {time.perf_counter() - started:.1f} s"
                f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)",
                flush=True,
            )
            asyncio.run(_measure(label, server, url, fleet, keyring, requests))
    except BaseException:
        print(f"(kept {workdir} for its serve.log)")
        raise
    shutil.rmtree(workdir, ignore_errors=True)


async def _measure(
    label: str, server: Any, url: str, fleet: Fleet, keyring: Keyring, requests: int
) -> None:
    direct = Direct(url, fleet.workspace_id)
    headers = server.headers
    bearer = {"authorization": f"Bearer {headers['x-api-key']}"}
    try:
        async with direct.sessions() as session:
            # The 101st oldest: a cursor after it leaves the last (oldest) 100.
            row = (
                await session.execute(
                    select(Mailbox.created_at, Mailbox.id)
                    .where(Mailbox.workspace_id == fleet.workspace_id)
                    .order_by(Mailbox.created_at, Mailbox.id)
                    .offset(PAGE)
                    .limit(1)
                )
            ).one()
        # As a client holds it: from the page before, carrying the first page's total.
        deep = Keyset(row[0], row[1], fleet.n, MailboxFilters().fingerprint())
        timings: list[Timing] = []

        def report(timing: Timing) -> None:
            timings.append(timing)
            print(_line(timing), flush=True)

        with httpx.Client(base_url=server.base, headers=headers, timeout=120) as client:
            seconds, lines, before, peak = await asyncio.to_thread(
                export_over_http, client, server.pid
            )
        direct_seconds, direct_lines = await direct.export(keyring)
        print(
            f"  CSV export of {lines - 1} mailboxes: {seconds:.2f} s over HTTP, "
            f"{direct_seconds:.2f} s straight through SQLAlchemy ({direct_lines} rows) "
            f"= {seconds / direct_seconds:.2f}x"
        )
        print(
            f"  server RSS: {before:.0f} MB before the export, {peak:.0f} MB at most during it "
            f"(+{peak - before:.0f} MB); VmHWM {peak_rss_mb(server.pid):.0f} MB",
            flush=True,
        )
        print(f"  {requests} requests each; milliseconds", flush=True)
        print(f"  {'':<34} {'HTTP p50':>7} {'p99':>7}   {'SQLA p50':>7} {'p99':>7}   HTTP/SQLA")
        with httpx.Client(base_url=server.base, headers=headers, timeout=120) as client:
            for case in cases(fleet, deep):
                params = {"limit": str(PAGE), **case.params}
                http = await asyncio.to_thread(time_http, client, "/v1/mailboxes", params, requests)
                report(Timing(case.name, http, await direct.time(direct.page(case), requests)))
            http = await asyncio.to_thread(
                time_http, client, "/v1/dashboard/mailbox-status-counts", {}, requests
            )
            report(
                Timing("status counts", http, await direct.time(direct.status_counts(), requests))
            )
            with httpx.Client(base_url=server.base, headers=bearer, timeout=120) as deeplead:
                http = await asyncio.to_thread(
                    time_http, deeplead, "/api/v1/inboxes", {"limit": str(PAGE)}, requests
                )
            first = cases(fleet, deep)[0]
            inboxes = direct.page(first, deeplead=True)
            report(Timing("/api/v1/inboxes", http, await direct.time(inboxes, requests)))
    finally:
        await direct.close()
    print_targets(
        f"issue 17's targets (item 2, set for --n 100000), {label}; {UNTARGETED} is not one"
        " (the deep page it asks for is by cursor):",
        [
            Target(
                f"{timing.name}, HTTP p99",
                _ms(timing.http, 0.99),
                COUNTS_P99_MS if timing.name == "status counts" else PAGE_P99_MS,
                "ms",
            )
            for timing in timings
            if timing.name != UNTARGETED
        ]
        + [
            Target(f"CSV export of {fleet.n}", seconds, EXPORT_SECONDS, "s"),
            Target("server RSS growth during the export", peak - before, EXPORT_GROWTH_MB, "MB"),
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="mailboxes in the workspace")
    parser.add_argument(
        "--requests", type=int, default=200, help="requests per query, for p50 and p99"
    )
    parser.add_argument(
        "--databases", default="sqlite,postgresql", help="sqlite, postgresql or both (a,b)"
    )
    parser.add_argument(
        "--database-url", help="an empty PostgreSQL database to use instead of starting one"
    )
    args = parser.parse_args()
    # DBOS's start-up on PostgreSQL took over 90 s on a loaded 2-core machine.
    common.HEALTHY_WITHIN = 600
    for name in args.databases.split(","):
        if name == "sqlite":
            bench_one("SQLite", None, args.n, args.requests)
        elif args.database_url:
            bench_one("PostgreSQL", args.database_url, args.n, args.requests)
        else:
            postgres = PostgresServer()
            postgres.start()
            try:
                url = postgres.create_database("mailfleet_bench")
                bench_one("PostgreSQL 15 (private, fsync off)", url, args.n, args.requests)
            finally:
                postgres.stop()


if __name__ == "__main__":
    main()
