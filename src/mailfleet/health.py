"""Health: liveness, readiness (database and job engine), and `/metrics`.

`/v1/health` answers while the process serves at all (liveness: restart it when
this fails). `/v1/health/ready` also checks that the database answers and that
the job engine runs here and its tables answer (readiness: send traffic only
when this is 200; 503 otherwise, with what failed). A `mailfleet worker` has no
API, so `--health-port` serves the same checks and its metrics
(`serve_worker_health`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Final

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from mailfleet import __version__, jobs, metrics
from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.envelope import ApiOut, Envelope, ErrorEnvelope, ok

log = logging.getLogger(__name__)

router = APIRouter(tags=["health"])

# A check that takes longer than this counts as failed: a load balancer asking
# for readiness wants an answer, not a hung connection.
CHECK_TIMEOUT: Final = 5.0


async def _check_database(database: Database) -> str:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT), database.engine.connect() as connection:
            await connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        log.warning("readiness: the database does not answer: %s", type(exc).__name__)
        return "unavailable"
    return "ok"


async def _check_job_engine(settings: Settings) -> str:
    if not jobs.is_launched():
        return "not running"
    try:
        await metrics.job_engine_queue_counts(settings)
    except Exception as exc:
        log.warning("readiness: the job engine database does not answer: %s", type(exc).__name__)
        return "unavailable"
    return "ok"


async def readiness(database: Database, settings: Settings) -> dict[str, str]:
    """Each check's result: "ok", or why not."""
    database_state, jobs_state = await asyncio.gather(
        _check_database(database), _check_job_engine(settings)
    )
    return {"database": database_state, "jobEngine": jobs_state}


def _is_ready(checks: dict[str, str]) -> bool:
    return all(state == "ok" for state in checks.values())


class LiveOut(ApiOut):
    status: str
    version: str


class ReadyOut(LiveOut):
    database: str
    job_engine: str


# Public, both: load balancers and probes call them without a credential.
@router.get("/v1/health", operation_id="health:get")
async def health() -> Envelope[LiveOut]:
    """Liveness: the process answers. Touches nothing else."""
    return ok(LiveOut(status="ok", version=__version__))


@router.get(
    "/v1/health/ready",
    operation_id="health:ready",
    response_model=Envelope[ReadyOut],
    responses={
        503: {"description": "Not ready: NOT_READY with each check", "model": ErrorEnvelope}
    },
)
async def health_ready(request: Request) -> Envelope[ReadyOut] | JSONResponse:
    """Readiness: the database and the job engine answer (503 when not)."""
    checks = await readiness(request.app.state.database, request.app.state.settings)
    if _is_ready(checks):
        return ok(ReadyOut(status="ready", version=__version__, **checks))
    return JSONResponse(
        {
            "success": False,
            "error": {"code": "NOT_READY", "message": _not_ready_message(checks), **checks},
        },
        status_code=503,
    )


def _not_ready_message(checks: dict[str, str]) -> str:
    failed = ", ".join(f"{name}: {state}" for name, state in checks.items() if state != "ok")
    return f"Not ready ({failed})"


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics; 404 unless MAILFLEET_METRICS_TOKEN is set, then Bearer."""
    settings: Settings = request.app.state.settings
    status, body, content_type, headers = await _metrics_answer(
        settings, request.headers.get("authorization")
    )
    return Response(body, status_code=status, media_type=content_type, headers=headers)


async def _metrics_answer(
    settings: Settings, authorization: str | None
) -> tuple[int, bytes, str, dict[str, str]]:
    if not settings.metrics_token:
        return 404, _json_error("NOT_FOUND", "Metrics are off"), "application/json", {}
    if not metrics.authorized(settings, authorization):
        return (
            401,
            _json_error("UNAUTHORIZED", "Send Authorization: Bearer MAILFLEET_METRICS_TOKEN"),
            "application/json",
            {"www-authenticate": "Bearer"},
        )
    body, content_type = await metrics.render(settings)
    return 200, body, content_type, {}


def _json_error(code: str, message: str) -> bytes:
    return json.dumps({"success": False, "error": {"code": code, "message": message}}).encode()


# --- the worker's health port -------------------------------------------------

_MAX_REQUEST_HEAD: Final = 8192
_REASONS: Final = {200: "OK", 401: "Unauthorized", 404: "Not Found", 503: "Service Unavailable"}


async def _worker_answer(
    path: str, authorization: str | None, database: Database, settings: Settings
) -> tuple[int, bytes, str, dict[str, str]]:
    if path == "/health":
        body = {"success": True, "data": {"status": "ok", "version": __version__}}
        return 200, json.dumps(body).encode(), "application/json", {}
    if path == "/health/ready":
        checks = await readiness(database, settings)
        if _is_ready(checks):
            body = {"success": True, "data": {"status": "ready", "version": __version__, **checks}}
            return 200, json.dumps(body).encode(), "application/json", {}
        error = {"code": "NOT_READY", "message": _not_ready_message(checks), **checks}
        return 503, json.dumps({"success": False, "error": error}).encode(), "application/json", {}
    if path == "/metrics":
        return await _metrics_answer(settings, authorization)
    return 404, _json_error("NOT_FOUND", f"No route {path}"), "application/json", {}


async def _handle_worker_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    database: Database,
    settings: Settings,
) -> None:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT * 2):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head[:_MAX_REQUEST_HEAD].decode("latin-1").split("\r\n")
            method, _, rest = lines[0].partition(" ")
            path = rest.split(" ", 1)[0].split("?", 1)[0]
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in lines[1:] if line)
            }
            answer: tuple[int, bytes, str, dict[str, str]]
            if method not in ("GET", "HEAD"):
                answer = (404, _json_error("NOT_FOUND", "Only GET"), "application/json", {})
            else:
                answer = await _worker_answer(
                    path, headers.get("authorization"), database, settings
                )
            status, body, content_type, extra = answer
            response_head = [
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
                f"content-type: {content_type}",
                f"content-length: {len(body)}",
                "connection: close",
                *(f"{name}: {value}" for name, value in extra.items()),
            ]
            writer.write(("\r\n".join(response_head) + "\r\n\r\n").encode("latin-1"))
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass
    finally:
        writer.close()


async def serve_worker_health(
    host: str, port: int, database: Database, settings: Settings
) -> asyncio.Server:
    """GET /health, /health/ready and /metrics for a `mailfleet worker`: a tiny
    HTTP/1.1 server (one request per connection) for probes and Prometheus."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _handle_worker_connection(reader, writer, database, settings)

    return await asyncio.start_server(handle, host, port, limit=_MAX_REQUEST_HEAD)
