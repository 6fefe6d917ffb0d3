"""Prometheus metrics: what the process counts, and `/metrics` to read them.

Counters live in this process (prometheus_client's default registry), so every
process that does work answers for its own: `mailfleet serve` at `/metrics`, a
`mailfleet worker` on its `--health-port`. Queue depths are read from the job
engine's tables at scrape time, so any one process reports them for all.

`/metrics` is off (404) until MAILFLEET_METRICS_TOKEN is set; then it wants
`Authorization: Bearer TOKEN`. Metrics name routes by their template
(`/v1/mailboxes/{mailbox_id}`), never by a concrete path, so ids never become
label values.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from typing import Final

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from mailfleet import jobs
from mailfleet.config import Settings

log = logging.getLogger(__name__)

HTTP_REQUESTS: Final = Counter(
    "mailfleet_http_requests",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
HTTP_LATENCY: Final = Histogram(
    "mailfleet_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
QUEUE_DEPTH: Final = Gauge(
    "mailfleet_queue_workflows",
    "Workflows in a job-engine queue: enqueued (waiting) or pending (running)",
    ["queue", "state"],
)
VERIFICATIONS: Final = Counter(
    "mailfleet_mailbox_verifications",
    "Mailbox connection tests finished, by outcome code (OK or the error code)",
    ["code"],
)
WEBHOOK_DELIVERIES: Final = Counter(
    "mailfleet_webhook_delivery_attempts",
    "Webhook delivery attempts, by outcome (delivered, retry, failed, ...)",
    ["outcome"],
)
EXPORTS: Final = Counter(
    "mailfleet_exports",
    "Exports to sending platforms finished, by final status",
    ["status"],
)
BULK_ROWS: Final = Counter(
    "mailfleet_bulk_rows",
    "Bulk connect rows finished, by outcome; rate() gives rows per second",
    ["outcome"],
)
LOGIN_THROTTLED: Final = Counter(
    "mailfleet_login_throttled",
    "Login attempts refused with 429, by what was over its limit (address, account)",
    ["key"],
)

# Routes that matched nothing share one label, so scanners cannot grow the series.
UNMATCHED_ROUTE: Final = "unmatched"


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(seconds)


# The job engine's tables answer within this or count as not answering.
QUERY_TIMEOUT: Final = 5.0


@functools.lru_cache(maxsize=4)
def _system_engine(url: str) -> sa.Engine:
    # The job engine's own database (DBOS drives it synchronously): a small pool,
    # used only for queue depths (here and in readiness).
    return sa.create_engine(url, pool_size=1, max_overflow=1, pool_pre_ping=True)


def _queue_counts_sync(settings: Settings) -> dict[tuple[str, str], int]:
    table = "workflow_status" if settings.is_sqlite else "dbos.workflow_status"
    query = sa.text(
        f"SELECT queue_name, status, COUNT(*) FROM {table} "  # noqa: S608 (constant names)
        "WHERE queue_name IS NOT NULL AND status IN ('ENQUEUED', 'PENDING') "
        "GROUP BY queue_name, status"
    )
    with _system_engine(settings.system_database_url).connect() as connection:
        rows = connection.execute(query).all()
    return {(str(queue), str(status).lower()): int(count) for queue, status, count in rows}


async def job_engine_queue_counts(settings: Settings) -> dict[tuple[str, str], int]:
    """Workflows waiting (enqueued) and running (pending) per queue, read from the
    job engine's tables; raises when they do not answer."""
    async with asyncio.timeout(QUERY_TIMEOUT):
        return await asyncio.to_thread(_queue_counts_sync, settings)


async def refresh_queue_depths(settings: Settings) -> None:
    """Set the queue gauges from the job engine's tables (every declared queue,
    zero when empty). A database that does not answer leaves them as they were."""
    try:
        counts = await job_engine_queue_counts(settings)
    except Exception:
        log.warning("could not read queue depths from the job engine", exc_info=True)
        return
    for queue in sorted(jobs.QUEUE_NAMES):
        for state in ("enqueued", "pending"):
            QUEUE_DEPTH.labels(queue, state).set(counts.get((queue, state), 0))


def authorized(settings: Settings, authorization: str | None) -> bool:
    token = settings.metrics_token
    if not token:
        return False
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


async def render(settings: Settings) -> tuple[bytes, str]:
    """The exposition text and its content type."""
    await refresh_queue_depths(settings)
    return await asyncio.to_thread(generate_latest), CONTENT_TYPE_LATEST
