"""Console pages: sign-in, the overview, mailboxes, imports, settings (domains: domains.py).

Every page calls the same services as the API, inside the same per-request
transaction (committed after the handler returns, before the response goes
out, so the page a POST redirects to already sees the change). Forms work
without JavaScript; htmx only swaps fragments and polls progress.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile
from starlette.staticfiles import StaticFiles

from mailfleet.accounts import service as accounts
from mailfleet.accounts.schemas import PasswordChange
from mailfleet.accounts.throttle import login_throttle
from mailfleet.bulk import formats
from mailfleet.bulk import service as bulk
from mailfleet.bulk.router import report_lines
from mailfleet.console import session as cookies
from mailfleet.console.billing import router as billing_router
from mailfleet.console.charts import bar_chart, warmup_chart
from mailfleet.console.context import (
    STATIC_DIR,
    ConsoleContext,
    ConsoleError,
    ConsoleRoute,
    ContextDep,
    LoginRequired,
    handle_console_error,
    handle_login_required,
    redirect,
    render,
    undo,
)
from mailfleet.console.domains import router as domains_router
from mailfleet.console.exports import router as exports_router
from mailfleet.console.forms import form_number, form_text, safe_next, validation_message
from mailfleet.console.hosted import router as hosted_router
from mailfleet.console.placement import router as placement_router
from mailfleet.console.purchases import router as purchases_router
from mailfleet.console.webhooks import router as webhooks_router
from mailfleet.dashboard import service as dashboard
from mailfleet.db import Database
from mailfleet.deps import KeyringDep, SessionDep, SettingsDep, client_address
from mailfleet.kit.clock import utcnow
from mailfleet.kit.errors import MailfleetError, Unauthorized
from mailfleet.kit.pagination import Page
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailboxes.schemas import MailboxCreate, MailboxUpdate
from mailfleet.models import MAILBOX_STATUSES, BulkJob, ConnectionTest, Mailbox
from mailfleet.warmup import service as warmup
from mailfleet.warmup.schemas import WarmupSettingsIn
from mailfleet.workspaces import service as workspaces

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE: Final = 50
STATUS_TONES: Final = {
    "active": "good",
    "inactive": "wait",
    "pending": "wait",
    "paused": "neutral",
    "error": "bad",
    "misconfigured": "bad",
    "warming": "wait",
    "ready": "good",
}


# Sign-in, sign-out, workspace


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, session: SessionDep, next: str | None = None) -> Response:
    if await cookies.read_session(session, request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    token = cookies.login_csrf(request)
    response = render(request, "login.html", next=safe_next(next), login_token=token, email="")
    cookies.set_login_csrf(request, response, token)
    return response


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """The same password check and failed-login throttling as POST /v1/auth/login."""
    form = await request.form(max_files=0, max_fields=10)
    email, password = form_text(form, "email"), form.get("password")
    target = safe_next(form_text(form, "next"))
    expected = request.cookies.get(cookies.LOGIN_CSRF_COOKIE)
    if expected is None or not cookies.tokens_match(expected, form_text(form, cookies.CSRF_FIELD)):
        raise ConsoleError(403, "The sign-in form expired; reload the page and try again")

    def again(message: str, status_code: int) -> Response:
        response = render(
            request,
            "login.html",
            status_code=status_code,
            next=target,
            login_token=expected,
            email=email,
            error=message,
        )
        return response

    if not email or not isinstance(password, str) or not password:
        return again("Enter your email and password.", 400)
    address = client_address(request)
    try:
        login_throttle.check(address, email, settings)
    except MailfleetError as exc:
        return again(f"{exc.message} (in {exc.extra.get('retryAfter', '?')} seconds).", 429)
    try:
        user = await accounts.login(session, email=email, password=password)
    except Unauthorized:
        login_throttle.failed(address, email, settings)
        return again("Invalid email or password.", 401)
    login_throttle.succeeded(email)
    response = RedirectResponse(target, status_code=303)
    await cookies.open_session(session, request, response, user.id, user.default_workspace_id)
    response.delete_cookie(cookies.LOGIN_CSRF_COOKIE, path="/")
    return response


@router.post("/logout")
async def logout(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    response = RedirectResponse("/login", status_code=303)
    await cookies.end_session(session, ctx.session, response)
    return response


@router.post("/workspace")
async def switch_workspace(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    form = await request.form()
    chosen = form_text(form, "workspace_id")
    if chosen not in {workspace.id for workspace, _ in ctx.workspaces}:
        raise ConsoleError(404, "No such workspace among yours")
    name = next(w.name for w, _ in ctx.workspaces if w.id == chosen)
    ctx.session.workspace_id = chosen
    await session.flush()
    return redirect(request, safe_next(form_text(form, "next")), f"Switched to {name}")


# Overview


@router.get("/", response_class=HTMLResponse)
async def overview(
    request: Request, ctx: ContextDep, session: SessionDep, settings: SettingsDep
) -> Response:
    data = await dashboard.overview(session, settings, ctx.workspace_id)
    charts = [
        bar_chart(
            "Mailboxes by status",
            [(status, data.mailboxes.by_status.get(status, 0)) for status in MAILBOX_STATUSES],
            STATUS_TONES,
        ),
        bar_chart(
            "Mailboxes by provider",
            [(item.key, item.count) for item in data.mailboxes.by_provider[:8]],
        ),
        bar_chart("Domains by DNS health", list(data.domains.by_health.items()), STATUS_TONES),
        bar_chart("Warmup by state", list(data.warmup.by_state.items()), STATUS_TONES),
    ]
    warmup_days = warmup_chart(
        f"Warmup messages per day, last {data.warmup.period_days} days",
        [(day.date, day.sent, day.inbox, day.spam) for day in data.warmup.daily],
    )
    if data.placement.providers:
        charts.append(
            bar_chart(
                "Inbox placement by provider, % (latest test)",
                [(p.provider, round(p.inbox_rate)) for p in data.placement.providers],
            )
        )
    return render(request, "overview.html", ctx, data=data, charts=charts, warmup_days=warmup_days)


# Mailboxes


def _mailbox_query(filters: mailboxes.MailboxFilters, skip: int) -> str:
    values = {
        "status": filters.status,
        "search": filters.search,
        "provider": filters.provider,
        "tag": filters.tag,
        "pool": filters.pool_id,
        "skip": skip,
    }
    return urlencode({k: v for k, v in values.items() if v})


@router.get("/mailboxes", response_class=HTMLResponse)
async def mailbox_list(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    provider: Annotated[str | None, Query(max_length=40)] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    pool: Annotated[str | None, Query(max_length=24)] = None,
    skip: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Response:
    page = Page(limit=PAGE_SIZE, skip=skip)
    filters = mailboxes.MailboxFilters(
        status=status or None,
        search=search or None,
        provider=provider or None,
        tag=tag or None,
        pool_id=pool or None,
    )
    found, total = await mailboxes.list_mailboxes(session, ctx.workspace_id, filters, page)
    previous_skip = max(skip - PAGE_SIZE, 0) if skip else None
    next_skip = skip + PAGE_SIZE if skip + PAGE_SIZE < total else None
    return render(
        request,
        "mailboxes.html",
        ctx,
        mailboxes=found,
        total=total,
        skip=skip,
        status=status or "",
        search=search or "",
        provider=provider or "",
        tag=tag or "",
        pool=pool or "",
        pools=await mailboxes.pool_choices(session, ctx.workspace_id),
        statuses=MAILBOX_STATUSES,
        previous_url=(
            None
            if previous_skip is None
            else "/mailboxes?" + _mailbox_query(filters, previous_skip)
        ),
        next_url=None if next_skip is None else "/mailboxes?" + _mailbox_query(filters, next_skip),
    )


MAILBOX_FIELDS: Final = (
    "email",
    "display_name",
    "smtp_host",
    "smtp_port",
    "smtp_username",
    "imap_host",
    "imap_port",
    "imap_username",
)
MAILBOX_LABELS: Final = {
    "email": "Email",
    "display_name": "Display name",
    "smtp.host": "SMTP host",
    "smtp.port": "SMTP port",
    "smtp.username": "SMTP username",
    "smtp.password": "SMTP password",
    "imap.host": "IMAP host",
    "imap.port": "IMAP port",
    "imap.username": "IMAP username",
    "imap.password": "IMAP password",
}


@router.get("/mailboxes/new", response_class=HTMLResponse)
async def new_mailbox(request: Request, ctx: ContextDep) -> Response:
    ctx.require_write()
    return render(request, "mailbox_new.html", ctx, form={"smtp_port": "587", "imap_port": "993"})


def _mailbox_body(form: FormData) -> dict[str, Any]:
    smtp_password = form.get("smtp_password")
    imap_password = form.get("imap_password")
    body: dict[str, Any] = {
        "email": form_text(form, "email"),
        "smtp": {
            "host": form_text(form, "smtp_host"),
            "port": form_number(form, "smtp_port", 587),
            "secure": form.get("smtp_secure") is not None,
            "password": smtp_password if isinstance(smtp_password, str) else "",
        },
    }
    if form_text(form, "display_name"):
        body["display_name"] = form_text(form, "display_name")
    if form_text(form, "smtp_username"):
        body["smtp"]["username"] = form_text(form, "smtp_username")
    if form_text(form, "imap_host"):
        body["imap"] = {
            "host": form_text(form, "imap_host"),
            "port": form_number(form, "imap_port", 993),
            "secure": form.get("imap_secure") is not None,
            # The same password as SMTP unless the form gives another one.
            "password": imap_password
            if isinstance(imap_password, str) and imap_password
            else body["smtp"]["password"],
        }
        if form_text(form, "imap_username"):
            body["imap"]["username"] = form_text(form, "imap_username")
    return body


@router.post("/mailboxes", response_class=HTMLResponse)
async def add_mailbox(
    request: Request, ctx: ContextDep, session: SessionDep, keyring: KeyringDep
) -> Response:
    form = await request.form()
    kept = {name: form_text(form, name) for name in MAILBOX_FIELDS}
    kept["smtp_secure"] = "on" if form.get("smtp_secure") is not None else ""
    kept["imap_secure"] = "on" if form.get("imap_secure") is not None else ""
    try:
        body = MailboxCreate.model_validate(_mailbox_body(form))
    except ValidationError as exc:
        message = validation_message(exc, MAILBOX_LABELS)
        return render(request, "mailbox_new.html", ctx, status_code=400, form=kept, error=message)
    try:
        mailbox = await mailboxes.create_mailbox(session, keyring, ctx.workspace_id, body)
    except MailfleetError as exc:
        await undo(session, ctx)
        return render(
            request,
            "mailbox_new.html",
            ctx,
            status_code=exc.status_code,
            form=kept,
            error=exc.message,
        )
    return redirect(
        request, f"/mailboxes/{mailbox.id}", f"{mailbox.email} added; testing its connection now"
    )


async def _latest_test(
    session: SessionDep, ctx: ConsoleContext, mailbox: Mailbox
) -> ConnectionTest | None:
    try:
        return await mailboxes.latest_connection_test(session, ctx.workspace_id, mailbox.id)
    except MailfleetError:
        return None


@router.get("/mailboxes/{mailbox_id}", response_class=HTMLResponse)
async def mailbox_page(
    mailbox_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    mailbox = await mailboxes.get_mailbox(session, ctx.workspace_id, mailbox_id)
    return await _mailbox_view(request, ctx, session, mailbox)


async def _mailbox_view(
    request: Request,
    ctx: ConsoleContext,
    session: AsyncSession,
    mailbox: Mailbox,
    *,
    status_code: int = 200,
    warmup_error: str | None = None,
    warmup_form: dict[str, Any] | None = None,
) -> Response:
    """The mailbox's page; `warmup_error` beside the warmup form, which then shows
    `warmup_form` as typed."""
    test = await _latest_test(session, ctx, mailbox)
    settings = await warmup.settings_for(session, mailbox)
    now = utcnow()
    period = warmup.Period.of(None, None, now.date())
    [report] = await warmup.analytics(session, [mailbox], period, now)
    by_day = {day.date: day for day in report.daily}
    days = []
    for offset in range((period.end - period.start).days + 1):
        when = period.start + timedelta(days=offset)
        day = by_day.get(when)
        days.append((when, day.sent, day.inbox, day.spam) if day else (when, 0, 0, 0))
    chart = warmup_chart(f"Warmup, last {len(days)} days", days)
    shown = warmup_form or {
        "enabled": settings.enabled,
        "start_per_day": settings.start_per_day,
        "ramp_up_per_day": settings.ramp_up_per_day,
        "daily_target": settings.daily_target,
        "reply_rate": settings.reply_rate,
        "window_start": settings.window_start,
        "window_end": settings.window_end,
        "timezone": settings.timezone,
    }
    return render(
        request,
        "mailbox.html",
        ctx,
        status_code=status_code,
        mailbox=mailbox,
        test=test,
        warmup=report,
        warmup_chart=chart,
        warmup_form=shown,
        warmup_error=warmup_error,
    )


WARMUP_LABELS: Final = {
    "enabled": "Warm this mailbox",
    "start_per_day": "Start at (per day)",
    "ramp_up_per_day": "Add per day",
    "daily_target": "Daily target",
    "reply_rate": "Reply rate",
    "send_window.start": "Window from",
    "send_window.end": "Window to",
    "send_window.timezone": "Time zone",
    "send_window": "Window",
}


@router.post("/mailboxes/{mailbox_id}/warmup", response_class=HTMLResponse)
async def save_warmup(
    mailbox_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    """The mailbox's warmup: on or off, its ramp, daily target, reply rate and send
    window (PUT /v1/mailboxes/{id}/warmup)."""
    mailbox = await mailboxes.get_mailbox(session, ctx.workspace_id, mailbox_id)
    form = await request.form()
    kept: dict[str, Any] = {
        name: form_text(form, name)
        for name in (
            "start_per_day",
            "ramp_up_per_day",
            "daily_target",
            "reply_rate",
            "window_start",
            "window_end",
            "timezone",
        )
    }
    kept["enabled"] = form.get("enabled") is not None
    try:
        body = WarmupSettingsIn.model_validate(
            {
                "enabled": kept["enabled"],
                **{
                    name: form_number(form, name)
                    for name in ("start_per_day", "ramp_up_per_day", "daily_target", "reply_rate")
                },
                "send_window": {
                    "start": kept["window_start"],
                    "end": kept["window_end"],
                    "timezone": kept["timezone"] or "UTC",
                },
            }
        )
        settings = await warmup.settings_for(session, mailbox)
        await warmup.update_settings(session, settings, mailbox, body)
    except ValidationError as exc:
        message = validation_message(exc, WARMUP_LABELS)
        return await _refused_warmup(request, ctx, session, mailbox, 400, message, kept)
    except MailfleetError as exc:
        return await _refused_warmup(
            request, ctx, session, mailbox, exc.status_code, exc.message, kept
        )
    done = "Warmup on" if body.enabled else "Warmup off"
    return redirect(request, f"/mailboxes/{mailbox.id}", f"{done} for {mailbox.email}")


async def _refused_warmup(
    request: Request,
    ctx: ConsoleContext,
    session: AsyncSession,
    mailbox: Mailbox,
    status_code: int,
    message: str,
    kept: dict[str, Any],
) -> Response:
    await undo(session, ctx)
    await session.refresh(mailbox)
    return await _mailbox_view(
        request,
        ctx,
        session,
        mailbox,
        status_code=status_code,
        warmup_error=message,
        warmup_form=kept,
    )


@router.get("/mailboxes/{mailbox_id}/status", response_class=HTMLResponse)
async def mailbox_status(
    mailbox_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    """The status panel alone, which htmx polls while a test is running."""
    mailbox = await mailboxes.get_mailbox(session, ctx.workspace_id, mailbox_id)
    test = await _latest_test(session, ctx, mailbox)
    return render(request, "_mailbox_status.html", ctx, mailbox=mailbox, test=test)


@router.post("/mailboxes/{mailbox_id}/{action}")
async def mailbox_action(
    mailbox_id: str,
    action: str,
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    keyring: KeyringDep,
) -> Response:
    mailbox = await mailboxes.get_mailbox(session, ctx.workspace_id, mailbox_id)
    if action in ("pause", "resume"):
        update = MailboxUpdate(sending_enabled=action == "resume")
        await mailboxes.update_mailbox(session, keyring, mailbox, update)
        message = f"{mailbox.email} {'resumed' if action == 'resume' else 'paused'}"
    elif action == "retest":
        await mailboxes.retest_mailbox(session, mailbox)
        message = f"Testing {mailbox.email} again"
    elif action == "delete":
        email = mailbox.email
        remove_at = await mailboxes.remove_mailbox(session, mailbox)
        if remove_at is None:
            return redirect(request, "/mailboxes", f"{email} deleted")
        return redirect(
            request,
            "/mailboxes",
            f"{email} will be removed at the next renewal ({remove_at:%Y-%m-%d})",
        )
    else:
        raise ConsoleError(404, f"No action {action!r}")
    return redirect(request, f"/mailboxes/{mailbox.id}", message)


# Bulk import


@router.get("/imports/new", response_class=HTMLResponse)
async def import_page(request: Request, ctx: ContextDep) -> Response:
    ctx.require_write()
    return render(request, "import_new.html", ctx)


@router.post("/imports", response_class=HTMLResponse)
async def start_import(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Response:
    form = await request.form()
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return render(request, "import_new.html", ctx, status_code=400, error="Choose a CSV file.")
    data = await upload.read(settings.bulk_max_upload_bytes + 1)
    if len(data) > settings.bulk_max_upload_bytes:
        return render(
            request,
            "import_new.html",
            ctx,
            status_code=413,
            error=f"The file is larger than {settings.bulk_max_upload_bytes} bytes; split it.",
        )
    try:
        _layout, rows = formats.rows_from_csv(
            formats.decode_text(data), max_rows=settings.bulk_max_items
        )
        job, _ = await bulk.accept_job(
            session,
            keyring,
            ctx.workspace_id,
            rows,
            source="csv",
            idempotency_key=None,
            created_by=ctx.user.id,
            settings=settings,
            field="file",
        )
    except MailfleetError as exc:
        await undo(session, ctx)
        return render(
            request, "import_new.html", ctx, status_code=exc.status_code, error=exc.message
        )
    return redirect(request, f"/imports/{job.id}", f"Import started: {job.total} rows")


def _progress(job: BulkJob) -> dict[str, int]:
    finished = job.connected_count + job.failed_count + job.duplicate_count + job.invalid_count
    return {"finished": finished, "total": job.total}


@router.get("/imports/{job_id}", response_class=HTMLResponse)
async def import_job(
    job_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    job = await bulk.get_job(session, ctx.workspace_id, job_id)
    return render(request, "import_job.html", ctx, job=job, progress=_progress(job))


@router.get("/imports/{job_id}/progress", response_class=HTMLResponse)
async def import_progress(
    job_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    job = await bulk.get_job(session, ctx.workspace_id, job_id)
    return render(request, "_import_progress.html", ctx, job=job, progress=_progress(job))


@router.get("/imports/{job_id}/report.csv")
async def import_report(
    job_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> StreamingResponse:
    job = await bulk.get_job(session, ctx.workspace_id, job_id)
    database: Database = request.app.state.database
    return StreamingResponse(
        report_lines(database, job.id),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="bulk-job-{job.id}.csv"'},
    )


# Settings: API keys and members


@router.get("/settings", response_class=HTMLResponse)
async def settings_page(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    return await _settings(request, ctx, session)


async def _settings(
    request: Request, ctx: ContextDep, session: SessionDep, **values: Any
) -> Response:
    keys = await accounts.list_api_keys(session, ctx.user)
    members = await workspaces.list_members(session, ctx.workspace_id)
    return render(request, "settings.html", ctx, keys=keys, members=members, **values)


@router.post("/settings/api-keys", response_class=HTMLResponse)
async def create_api_key(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    form = await request.form()
    name = form_text(form, "name")[:100] or "console"
    scope = "workspace" if form_text(form, "scope") == "workspace" else "user"
    created = await accounts.create_api_key(
        session,
        ctx.user,
        name=name,
        scope=scope,
        workspace_id=ctx.workspace_id if scope == "workspace" else None,
    )
    # Shown once, on this answer only: never put in a redirect or a cookie.
    return await _settings(request, ctx, session, new_key=created.secret, new_key_name=name)


@router.post("/settings/api-keys/{key_id}/revoke")
async def revoke_api_key(
    key_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    key = await accounts.revoke_api_key(session, ctx.user, key_id)
    return redirect(request, "/settings", f"API key {key.name} revoked")


PASSWORD_LABELS: Final = {
    "current_password": "Current password",
    "new_password": "New password",
}


@router.post("/settings/password")
async def change_password(
    request: Request, ctx: ContextDep, session: SessionDep, settings: SettingsDep
) -> Response:
    """POST /v1/users/me/password for the signed-in user; this session stays, their
    others end."""
    form = await request.form(max_files=0, max_fields=10)
    if form_text(form, "new_password") != form_text(form, "confirm_password"):
        return redirect(request, "/settings", "The new passwords differ; type it twice", "error")
    try:
        body = PasswordChange.model_validate(
            {
                "current_password": form_text(form, "current_password"),
                "new_password": form_text(form, "new_password"),
            }
        )
        await accounts.change_password(
            session,
            settings,
            ctx.user,
            current=body.current_password,
            new=body.new_password,
            address=client_address(request),
            keep_console_session=ctx.session.id,
        )
    except ValidationError as exc:
        return redirect(request, "/settings", validation_message(exc, PASSWORD_LABELS), "error")
    except MailfleetError as exc:
        await undo(session, ctx)
        return redirect(request, "/settings", exc.message, "error")
    return redirect(request, "/settings", "Password changed; your other sessions are signed out")


@router.post("/settings/members")
async def add_member(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    form = await request.form()
    role = form_text(form, "role")
    if role not in ("admin", "member", "viewer"):
        return redirect(request, "/settings", "Role: choose admin, member or viewer", "error")
    try:
        _, user = await workspaces.add_member(
            session, ctx.workspace, ctx.role, email=form_text(form, "email"), role=role
        )
    except MailfleetError as exc:
        await undo(session, ctx)
        return redirect(request, "/settings", exc.message, "error")
    return redirect(request, "/settings", f"{user.email} added as {role}")


def install(app: FastAPI) -> None:
    """Serve the console at / (after the API's routes) and its files at /assets."""
    app.mount("/assets", StaticFiles(directory=STATIC_DIR), name="console-assets")
    app.add_exception_handler(LoginRequired, handle_login_required)
    app.add_exception_handler(ConsoleError, handle_console_error)
    app.include_router(router)
    # Purchases first: /domains/buy and /domains/orders are not domain ids.
    app.include_router(purchases_router)
    app.include_router(domains_router)
    app.include_router(hosted_router)
    app.include_router(exports_router)
    app.include_router(webhooks_router)
    app.include_router(placement_router)
    app.include_router(billing_router)
