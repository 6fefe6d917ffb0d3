"""Console pages for exports: platform accounts, an export (CSV or push), history,
one export's results."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from pydantic import ValidationError

from mailfleet.bulk.service import report_cell
from mailfleet.console.context import ConsoleRoute, ContextDep, redirect, render, undo
from mailfleet.console.forms import form_text, validation_message
from mailfleet.db import Database
from mailfleet.deps import KeyringDep, SessionDep, SettingsDep
from mailfleet.exports import service as exports
from mailfleet.exports.router import csv_download
from mailfleet.exports.schemas import MailboxExportRequest, PlatformAccountCreate
from mailfleet.kit.errors import MailfleetError
from mailfleet.kit.pagination import Page
from mailfleet.models import MAILBOX_STATUSES, ExportHistory, ExportStatus
from mailfleet.platforms import PLATFORMS

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

HISTORY_SHOWN = 50
# An export's page lists this many inboxes; its CSV download has them all.
RESULTS_SHOWN = 500
RESULT_COLUMNS = ("position", "email", "name", "status", "message", "remote_id", "finished_at")
LAYOUTS = ("mailfleet", "instantly", "smartlead")
EXPORT_LABELS = {"status": "Status", "domain": "Domain", "search": "Search", "layout": "Layout"}


async def _history(request: Request, ctx: ContextDep, session: SessionDep) -> dict[str, Any]:
    histories, total = await exports.list_histories(
        session, ctx.workspace_id, exports.HistoryFilters(), Page(limit=HISTORY_SHOWN, skip=0)
    )
    return {
        "histories": histories,
        "total": total,
        "running": any(h.status == ExportStatus.IN_PROGRESS for h in histories),
    }


@router.get("/exports", response_class=HTMLResponse)
async def exports_page(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    accounts = await exports.list_accounts(session, ctx.workspace_id)
    return render(
        request,
        "exports.html",
        ctx,
        accounts=accounts,
        platforms=PLATFORMS,
        layouts=LAYOUTS,
        statuses=MAILBOX_STATUSES,
        **await _history(request, ctx, session),
    )


@router.get("/exports/history", response_class=HTMLResponse)
async def history_fragment(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    """The history table alone, which htmx polls while an export runs."""
    return render(request, "_export_history.html", ctx, **await _history(request, ctx, session))


async def _detail(ctx: ContextDep, session: SessionDep, history_id: str) -> dict[str, Any]:
    # Polled while the export runs: the first rows and two counts, not every result.
    history = await exports.get_history(session, ctx.workspace_id, history_id)
    total, pending = await exports.history_result_counts(session, history)
    return {
        "history": history,
        "results": await exports.history_results(session, history, limit=RESULTS_SHOWN),
        "result_count": total,
        "pending": pending,
        "running": history.status == ExportStatus.IN_PROGRESS,
    }


@router.get("/exports/{history_id}", response_class=HTMLResponse)
async def export_page(
    history_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    """One export (by id or job id): its status, counts, error and each inbox's result."""
    return render(request, "export.html", ctx, **await _detail(ctx, session, history_id))


@router.get("/exports/{history_id}/panel", response_class=HTMLResponse)
async def export_panel(
    history_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    """The export's panel alone, which htmx polls while it runs."""
    return render(request, "_export_detail.html", ctx, **await _detail(ctx, session, history_id))


@router.get("/exports/{history_id}/results.csv")
async def export_results(
    history_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    """Each inbox's result as CSV (never a password: the results hold none), written a
    batch at a time."""
    history = await exports.get_history(session, ctx.workspace_id, history_id)
    return StreamingResponse(
        _results_csv(request.app.state.database, history),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="export-{history.job_id}.csv"'},
    )


async def _results_csv(database: Database, history: ExportHistory) -> AsyncIterator[bytes]:
    # Its own session: the request's ends when the endpoint returns, before the body.
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(RESULT_COLUMNS)
    async with database.sessionmaker() as session:
        async for items in exports.stream_history_results(session, history):
            for item in items:
                finished = item.finished_at.isoformat() if item.finished_at else ""
                row = (item.position, item.email, item.name, item.status, item.message)
                writer.writerow([report_cell(value) for value in (*row, item.remote_id, finished)])
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    if buffer.tell():  # the header alone: an export of no inbox
        yield buffer.getvalue().encode("utf-8")


def _selection(form: Any) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name in ("status", "domain", "search"):
        if form_text(form, name):
            values[name] = form_text(form, name)
    if form_text(form, "tag"):
        values["tags"] = [form_text(form, "tag")]
    return values


@router.post("/exports")
async def export_mailboxes(
    request: Request, ctx: ContextDep, session: SessionDep, keyring: KeyringDep
) -> Response:
    """The selection as a CSV download, or pushed to a platform account."""
    form = await request.form()
    values = _selection(form)
    account_id = form_text(form, "destination")
    try:
        if account_id and account_id != "csv":
            push = MailboxExportRequest.model_validate(
                {**values, "platform_account_id": account_id}
            )
            history, _ = await exports.push_export(session, ctx.workspace_id, ctx.user.id, push)
            return redirect(
                request,
                "/exports",
                f"Export {history.job_id} queued: {history.total} mailboxes to {history.platform}",
            )
        values["layout"] = form_text(form, "layout") or "mailfleet"
        if ctx.can_manage:
            values["include_credentials"] = form.get("include_credentials") is not None
        data = MailboxExportRequest.model_validate(values)
        export = await exports.begin_csv_export(
            session, keyring, ctx.workspace_id, ctx.user.id, ctx.role, data
        )
    except ValidationError as exc:
        return redirect(request, "/exports", validation_message(exc, EXPORT_LABELS), "error")
    except MailfleetError as exc:
        await undo(session, ctx)
        return redirect(request, "/exports", exc.message, "error")
    return csv_download(request.app.state.database, export)


@router.post("/exports/accounts")
async def add_account(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Response:
    if not ctx.can_manage:
        return redirect(
            request, "/exports", "Only the workspace's owners and admins add accounts", "error"
        )
    form = await request.form()
    values: dict[str, Any] = {
        "platform": form_text(form, "platform"),
        "name": form_text(form, "name"),
    }
    api_key = form.get("api_key")
    if isinstance(api_key, str) and api_key.strip():
        values["api_key"] = api_key.strip()
    if form_text(form, "base_url"):
        values["base_url"] = form_text(form, "base_url")
    try:
        data = PlatformAccountCreate.model_validate(values)
        account = await exports.create_account(session, keyring, settings, ctx.workspace_id, data)
    except ValidationError as exc:
        labels = {"platform": "Platform", "api_key": "API key", "base_url": "Base URL"}
        return redirect(request, "/exports", validation_message(exc, labels), "error")
    except MailfleetError as exc:
        await undo(session, ctx)
        return redirect(request, "/exports", exc.message, "error")
    return redirect(request, "/exports", f"Account {account.name or account.platform} added")
