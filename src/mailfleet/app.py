"""The FastAPI application factory."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from mailfleet import __version__, runtime
from mailfleet.accounts import usage
from mailfleet.accounts.router import router as accounts_router
from mailfleet.billing.router import router as billing_router
from mailfleet.bulk.router import router as bulk_router
from mailfleet.compat.deeplead import router as deeplead_router
from mailfleet.compat.saleshandy import router as saleshandy_router
from mailfleet.config import Settings, get_settings
from mailfleet.console.router import install as install_console
from mailfleet.dashboard.router import router as dashboard_router
from mailfleet.domains.forwarding import DomainForwardingMiddleware
from mailfleet.domains.purchase_router import router as domain_purchases_router
from mailfleet.domains.router import router as domains_router
from mailfleet.exports.router import connect_inbox_router
from mailfleet.exports.router import router as exports_router
from mailfleet.health import router as health_router
from mailfleet.kit import openapi
from mailfleet.kit.errors import ERROR_CODES, MailfleetError, ValidationFailed
from mailfleet.logconfig import configure_logging
from mailfleet.mailboxes.router import router as mailboxes_router
from mailfleet.mailserver.router import router as mailserver_router
from mailfleet.placement.router import router as placement_router
from mailfleet.requestid import RequestIdMiddleware
from mailfleet.warmup.router import router as warmup_router
from mailfleet.webhooks.router import router as webhooks_router
from mailfleet.workspaces.router import router as workspaces_router

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        {"success": False, "error": {"code": code, "message": message, **extra}},
        status_code=status,
    )


def _field_path(location: tuple[Any, ...] | list[Any]) -> str:
    # ("body", "smtp", "port") -> "smtp.port"; the location kind is its own key.
    parts = (
        [str(part) for part in location[1:]] if len(location) > 1 else [str(p) for p in location]
    )
    return ".".join(parts)


async def handle_mailfleet_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, MailfleetError)
    response = _error(exc.status_code, exc.code, exc.message, **exc.extra)
    if exc.status_code == 401:
        response.headers["www-authenticate"] = "Bearer"
    if exc.status_code == 429 and "retryAfter" in exc.extra:
        response.headers["retry-after"] = str(exc.extra["retryAfter"])
    return response


async def handle_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    malformed = next((e for e in errors if e.get("type") == "json_invalid"), None)
    if malformed is not None:
        # FastAPI locates the error by character offset; people read lines and columns.
        location = malformed.get("loc", ())
        position = location[-1] if location and isinstance(location[-1], int) else 0
        document = exc.body if isinstance(exc.body, str) else ""
        reason = str((malformed.get("ctx") or {}).get("error", "invalid JSON"))
        failed = ValidationFailed.invalid_json(reason, document, position)
        return _error(400, failed.code, failed.message, **failed.extra)
    details = []
    for error in errors:
        location = error.get("loc", ())
        detail = {
            "field": _field_path(location),
            "in": str(location[0]) if location else "body",
            "message": error.get("msg", "invalid"),
            "type": error.get("type", "invalid"),
        }
        details.append(detail)
    message = "Invalid request: " + "; ".join(
        f"{d['field'] or d['in']}: {d['message']}" for d in details[:5]
    )
    return _error(400, "VALIDATION_ERROR", message, details=details)


async def handle_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = ERROR_CODES.get(exc.status_code, "ERROR")
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = f"No route {request.method} {request.url.path}"
    else:
        message = str(exc.detail)
    response = _error(exc.status_code, code, message)
    for name, value in (exc.headers or {}).items():
        response.headers[name] = value
    return response


def _is_foreign_key_violation(exc: IntegrityError) -> bool:
    # PostgreSQL's SQLSTATE 23503; SQLite only says so in its message.
    original = exc.orig
    code = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    return code == "23503" or "FOREIGN KEY constraint failed" in str(original)


async def handle_concurrent_change(request: Request, exc: Exception) -> JSONResponse:
    """A row this request relied on changed under it: another request deleted the
    mailbox it was writing for (a foreign key) or removed the row it was updating.
    Nothing was saved; the same request may be retried. Services handle the races
    they expect; this is the floor for those two, so they are a 409, not a 500.
    The statement and its parameters are not logged: they can hold addresses and
    encrypted secrets."""
    if isinstance(exc, IntegrityError) and not _is_foreign_key_violation(exc):
        # A unique-constraint race stays a 500 for now: clients (SendKit's, our own
        # export adapter) read 409 as "already exists", which it may not be.
        return await handle_unexpected_error(request, exc)
    request_id = _request_id(request)
    log.warning("concurrent change request_id=%s error=%s", request_id, type(exc).__name__)
    return _error(
        409,
        "CONFLICT",
        "Something this request relied on was changed or removed by another request "
        "while it ran; nothing was saved. Read it again and retry.",
    )


async def handle_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    request_id = _request_id(request)
    # The traceback goes to the log, tied to the request id; the client gets the id only.
    log.exception("unhandled error request_id=%s", request_id)
    response = _error(
        500,
        "INTERNAL_ERROR",
        "Something went wrong on our side; quote the request id when reporting it",
        requestId=request_id,
    )
    if request_id:
        response.headers["x-request-id"] = request_id
    return response


def add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs from the vendored swagger-ui-dist (static/swagger-ui)."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        assets = f"{root}/static/swagger-ui"
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
        )


def create_app(settings: Settings | None = None, *, start_jobs: bool = True) -> FastAPI:
    """Build the app. `start_jobs=False` leaves DBOS to the caller (tests launch it once)."""
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        current = await runtime.start(settings, launch_jobs=start_jobs)
        app.state.database = current.database
        app.state.keyring = current.keyring
        # What start-up built (routes, models, DBOS, SQLAlchemy's mappers: some 270,000
        # objects) lives as long as the process: frozen out of the cycle collector's
        # reach, so its full collections walk only what came since. Walking them all
        # took 100 to 300 ms, every few hundred requests, stopping whatever request
        # was running: the listing's p99 (bench/fleet.py, README "A large fleet").
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            # Before the pool closes: what requests noted of their keys' use.
            await usage.flush_at_stop(current.database)
            await runtime.stop(current, jobs_launched=start_jobs)

    app = FastAPI(
        title="Mailfleet",
        version=__version__,
        description="Self-hosted control plane for cold-email inbox infrastructure.",
        lifespan=lifespan,
        # /docs is served below from files shipped in the package (FastAPI's own
        # loads Swagger UI from a CDN: a blank page offline). No ReDoc: it would
        # need a CDN too, and /docs and /openapi.json cover the same ground.
        docs_url=None,
        redoc_url=None,
    )
    add_docs(app)
    app.state.settings = settings
    # Registered before (so inside) the request-id middleware: redirects carry an id too.
    # Only Hosts of forwarded domains are answered; every other Host reaches the API.
    app.add_middleware(DomainForwardingMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(MailfleetError, handle_mailfleet_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_error)
    app.add_exception_handler(IntegrityError, handle_concurrent_change)
    app.add_exception_handler(StaleDataError, handle_concurrent_change)
    app.add_exception_handler(Exception, handle_unexpected_error)

    for router in (
        health_router,
        accounts_router,
        workspaces_router,
        # Before mailboxes: /v1/mailboxes/warmup-analytics is not a mailbox id.
        warmup_router,
        mailboxes_router,
        dashboard_router,
        bulk_router,
        deeplead_router,
        saleshandy_router,
        webhooks_router,
        # Before domains: /v1/domains/available, /purchase and /orders are not domain ids.
        domain_purchases_router,
        domains_router,
        mailserver_router,
        billing_router,
        exports_router,
        connect_inbox_router,
        placement_router,
    ):
        app.include_router(router)
    # Last: its pages live at / and must never shadow an API route.
    install_console(app)
    openapi.install(app)
    return app
