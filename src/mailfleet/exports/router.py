"""Export routes: platform accounts, mailbox exports, export history (native), and
LiteMail's connect-inbox, which answers in its seed's shapes, errors included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import JSONResponse, Response, StreamingResponse

from mailfleet.compat.dialect import dialect_route
from mailfleet.db import Database
from mailfleet.deps import (
    KeyringDep,
    SessionDep,
    SettingsDep,
    WorkspaceManageDep,
    WorkspaceReadDep,
    WorkspaceWriteDep,
    presented_credential,
)
from mailfleet.exports import service
from mailfleet.exports.schemas import (
    ConnectInboxData,
    ConnectInboxHistoryOut,
    ConnectInboxOut,
    ConnectInboxRecordOut,
    ConnectInboxRequest,
    ExportHistoryCreate,
    ExportHistoryDetailOut,
    ExportHistoryOut,
    ExportResultOut,
    LiteMailError,
    MailboxExportRequest,
    PlatformAccountCreate,
    PlatformAccountOut,
    PlatformAccountUpdate,
    ValidationOut,
)
from mailfleet.kit.clock import isoformat
from mailfleet.kit.envelope import WORKSPACE_ERRORS, Envelope, ListEnvelope, errors, ok
from mailfleet.kit.idempotency import check_idempotency_key
from mailfleet.kit.pagination import PageDep
from mailfleet.models import ConnectInboxRecord, ExportHistory, ExportItem, PlatformAccount

router = APIRouter(prefix="/v1", tags=["exports"], responses=WORKSPACE_ERRORS)

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="Repeat the request safely: same key, same export"),
]


def account_out(account: PlatformAccount) -> PlatformAccountOut:
    return PlatformAccountOut(
        id=account.id,
        platform=account.platform,
        name=account.name,
        email=account.login_email,
        has_api_key=account.api_key_enc is not None,
        has_password=account.login_password_enc is not None,
        base_url=account.base_url,
        validation=ValidationOut(
            status=account.validation_status,
            message=account.validation_message,
            checked_at=account.validated_at,
        ),
        created_at=account.created_at,
        updated_at=account.updated_at,
    )


def history_out(history: ExportHistory) -> ExportHistoryOut:
    return ExportHistoryOut(**_history_fields(history))


def _history_fields(history: ExportHistory) -> dict[str, Any]:
    return {
        "id": history.id,
        "job_id": history.job_id,
        "platform": history.platform,
        "source": history.source,
        "export_status": history.status,
        "total_mailboxes": history.total,
        "connected_count": history.connected_count,
        "failed_count": history.failed_count,
        "platform_account_id": history.platform_account_id,
        "connect_inbox_id": history.connect_inbox_id,
        "workspace_name": history.workspace_name,
        "layout": history.layout,
        "credentials_included": history.credentials_included,
        "error": history.error,
        "note": history.note,
        "created_by": history.created_by,
        "created_at": history.created_at,
        "updated_at": history.updated_at,
        "finished_at": history.finished_at,
    }


def result_out(item: ExportItem) -> ExportResultOut:
    return ExportResultOut(
        email=item.email,
        mailbox_id=item.mailbox_id,
        status=item.status,
        message=item.message,
        remote_id=item.remote_id,
        finished_at=item.finished_at,
    )


# Platform accounts


@router.get("/exports/accounts", operation_id="platform_accounts:list")
async def list_accounts(
    ctx: WorkspaceReadDep, session: SessionDep
) -> Envelope[list[PlatformAccountOut]]:
    return ok([account_out(a) for a in await service.list_accounts(session, ctx.workspace_id)])


@router.post(
    "/exports/accounts",
    operation_id="platform_accounts:create",
    status_code=status.HTTP_201_CREATED,
)
async def add_account(
    body: PlatformAccountCreate,
    ctx: WorkspaceManageDep,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Envelope[PlatformAccountOut]:
    """Add a sending-platform account. The API key is checked with the platform when
    it has an endpoint for that; a refused key is a 400. Credentials are encrypted
    and never returned."""
    account = await service.create_account(session, keyring, settings, ctx.workspace_id, body)
    return ok(account_out(account), "Platform account added")


@router.put("/exports/accounts/{account_id}", operation_id="platform_accounts:update")
async def update_account(
    account_id: str,
    body: PlatformAccountUpdate,
    ctx: WorkspaceManageDep,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Envelope[PlatformAccountOut]:
    account = await service.get_account(session, ctx.workspace_id, account_id)
    account = await service.update_account(session, keyring, settings, account, body)
    return ok(account_out(account), "Platform account updated")


@router.delete("/exports/accounts/{account_id}", operation_id="platform_accounts:delete")
async def delete_account(
    account_id: str, ctx: WorkspaceManageDep, session: SessionDep
) -> Envelope[None]:
    account = await service.get_account(session, ctx.workspace_id, account_id)
    await service.delete_account(session, account)
    return ok(None, "Platform account deleted; its export history stays")


# Mailbox exports


async def _csv_file(database: Database, export: service.CsvExport) -> AsyncIterator[bytes]:
    # Its own session: the request's commits (recording the export) when the endpoint
    # returns, before the first byte of the file is sent.
    async with database.sessionmaker() as session:
        async for piece in service.csv_chunks(session, export):
            yield piece.encode("utf-8")


def csv_download(database: Database, export: service.CsvExport) -> StreamingResponse:
    """The export's file as a download written a batch at a time (`csv_chunks`), for
    the API and the console alike: however many mailboxes, one batch in memory."""
    history = export.history
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        _csv_file(database, export),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": (
                f'attachment; filename="mailfleet-{export.layout}-{stamp}.csv"'
            ),
            # The file may hold passwords: no cache keeps a copy.
            "cache-control": "no-store",
            "x-export-id": history.id,
            "x-credentials-included": "true" if history.credentials_included else "false",
        },
    )


@router.post(
    "/exports/mailboxes",
    operation_id="exports:create",
    status_code=status.HTTP_200_OK,
    response_class=Response,
    responses={
        200: {
            "description": "The selection as a CSV file in the chosen layout",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        },
        202: {
            "description": "The export to a platform account is queued",
            "model": Envelope[ExportHistoryOut],
        },
        **errors(409),
    },
)
async def export_mailboxes(
    request: Request,
    body: MailboxExportRequest,
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    keyring: KeyringDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Select mailboxes (ids, tags, status, pool, domain, search) and get them as CSV
    (mailfleet, instantly or smartlead layout), or push them to a platform account.
    Passwords are in the CSV only for owners and admins."""
    if body.platform_account_id is not None:
        history, _ = await service.push_export(
            session,
            ctx.workspace_id,
            ctx.user.id,
            body,
            idempotency_key=check_idempotency_key(idempotency_key),
        )
        queued = ok(history_out(history), "Export queued")
        return JSONResponse(
            queued.model_dump(mode="json", by_alias=True), status_code=status.HTTP_202_ACCEPTED
        )
    export = await service.begin_csv_export(
        session, keyring, ctx.workspace_id, ctx.user.id, ctx.role, body
    )
    return csv_download(request.app.state.database, export)


# Export history


@router.get("/export-history", operation_id="export_history:list")
async def list_export_history(
    ctx: WorkspaceReadDep,
    session: SessionDep,
    page: PageDep,
    platform: str | None = None,
    status: Annotated[
        str | None, Query(description="IN_PROGRESS, COMPLETED, PARTIAL or FAILED")
    ] = None,
    job_id: Annotated[str | None, Query(alias="jobId")] = None,
    source: Annotated[str | None, Query(description="connect-inbox, api, csv or external")] = None,
) -> ListEnvelope[ExportHistoryOut]:
    filters = service.HistoryFilters(platform=platform, status=status, job_id=job_id, source=source)
    histories, total = await service.list_histories(session, ctx.workspace_id, filters, page)
    return ListEnvelope(data=[history_out(h) for h in histories], pagination=page.describe(total))


@router.get("/export-history/{history_id}", operation_id="export_history:get")
async def get_export_history(
    history_id: str, ctx: WorkspaceReadDep, session: SessionDep
) -> Envelope[ExportHistoryDetailOut]:
    """One export (by id or jobId) with the result of each inbox."""
    history = await service.get_history(session, ctx.workspace_id, history_id)
    results = await service.history_results(session, history)
    return ok(
        ExportHistoryDetailOut(
            **_history_fields(history), results=[result_out(item) for item in results]
        )
    )


@router.post(
    "/export-history",
    operation_id="export_history:create",
    status_code=status.HTTP_201_CREATED,
)
async def create_export_history(
    body: ExportHistoryCreate,
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[ExportHistoryOut]:
    """Record an export done outside Mailfleet."""
    history, _ = await service.record_external_export(
        session,
        ctx.workspace_id,
        ctx.user.id,
        body,
        idempotency_key=check_idempotency_key(idempotency_key),
    )
    return ok(history_out(history), "Export recorded")


# LiteMail's connect-inbox

UNAUTHENTICATED_MESSAGE = "Authentication required. Provide x-api-key header or valid JWT token."


def render_litemail_error(
    request: Request, status_code: int, message: str, details: list[dict[str, Any]] | None
) -> JSONResponse:
    """LiteMail's error body: `{"error", "message", "path", "timestamp"}` (seed 001)."""
    if status_code == 401 and presented_credential(request) is None:
        message = UNAUTHENTICATED_MESSAGE
    try:
        phrase = HTTPStatus(status_code).phrase
    except ValueError:
        phrase = "Error"
    body: dict[str, Any] = {
        "error": phrase,
        "message": message,
        "path": request.url.path,
        "timestamp": isoformat(datetime.now(UTC)),
    }
    if details:
        body["details"] = details
    headers = {"www-authenticate": "Bearer"} if status_code == 401 else None
    return JSONResponse(body, status_code=status_code, headers=headers)


connect_inbox_router = APIRouter(
    prefix="/v1",
    tags=["exports"],
    route_class=dialect_route(render_litemail_error),
    responses=errors(401, 403, 404, 409, model=LiteMailError),
)


def connect_inbox_out(record: ConnectInboxRecord, history: ExportHistory) -> ConnectInboxOut:
    return ConnectInboxOut(
        message=service.CONNECT_INBOX_MESSAGE,
        data=ConnectInboxData(
            record=ConnectInboxRecordOut(
                id=record.id,
                platform=record.platform,
                email=record.platform_email,
                workspace_name=record.workspace_name,
                selected_mailboxes=record.selected_mailboxes,
            ),
            export_history=ConnectInboxHistoryOut(
                id=history.id,
                job_id=history.job_id,
                total_mailboxes=history.total,
                platform=history.platform,
                export_status=history.status,
                created_at=history.created_at,
            ),
        ),
    )


@connect_inbox_router.post("/connect-inbox", operation_id="exports:connect_inbox")
async def connect_inbox(
    body: ConnectInboxRequest,
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    keyring: KeyringDep,
    idempotency_key: IdempotencyKey = None,
) -> ConnectInboxOut:
    """Connect Inboxes (Export to Platform), LiteMail's request and answer verbatim.

    Upserts the connect_inbox record of this platform login and queues the export;
    its history record starts IN_PROGRESS and ends COMPLETED, PARTIAL or FAILED,
    with a result per inbox (GET /v1/export-history/{jobId})."""
    record, history = await service.connect_inbox(
        session,
        keyring,
        ctx.workspace_id,
        ctx.user.id,
        body,
        idempotency_key=check_idempotency_key(idempotency_key),
    )
    return connect_inbox_out(record, history)
