"""Bulk connect routes: POST /v1/mailboxes/bulk, the job, and its CSV report."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from fastapi.responses import StreamingResponse

from mailfleet.bulk import service
from mailfleet.bulk.schemas import BulkJobOut, JobCounts
from mailfleet.bulk.upload import read_bulk_rows
from mailfleet.db import Database
from mailfleet.deps import (
    KeyringDep,
    SessionDep,
    SettingsDep,
    WorkspaceReadDep,
    WorkspaceWriteDep,
)
from mailfleet.kit.envelope import WORKSPACE_ERRORS, Envelope, errors, ok
from mailfleet.kit.idempotency import check_idempotency_key
from mailfleet.models import BulkJob

router = APIRouter(prefix="/v1", tags=["bulk connect"], responses=WORKSPACE_ERRORS)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Send the same key again and get the same job back (200), never a second one",
    ),
]

_CSV_COLUMNS = (
    "email, display_name, provider, smtp_host, smtp_port, smtp_username, smtp_password, "
    "smtp_secure, imap_host, imap_port, imap_username, imap_password, imap_secure, "
    "daily_limit, tags, signature"
)
_CSV_EXAMPLE = (
    "email,smtp_host,smtp_port,smtp_password,imap_host,imap_port,imap_password\n"
    "ana@example.com,smtp.example.com,587,app-pass,imap.example.com,993,app-pass\n"
)
_BULK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": (
            "A JSON array of mailboxes in the shape of POST /v1/mailboxes; or a CSV file as "
            "the multipart field `file` or as a text/csv body, with Mailfleet's columns "
            f"({_CSV_COLUMNS}), Instantly's bulk-upload columns (Email, First Name, SMTP Host, "
            "...) or Smartlead's (from_email, user_name, password, smtp_host, ...)."
        ),
        "content": {
            "application/json": {
                "schema": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/MailboxCreate"},
                },
                "example": [
                    {
                        "email": "ana@example.com",
                        "smtp": {"host": "smtp.example.com", "port": 587, "password": "app-pass"},
                        "imap": {"host": "imap.example.com", "port": 993, "password": "app-pass"},
                    }
                ],
            },
            "text/csv": {
                "schema": {"type": "string"},
                "example": _CSV_EXAMPLE,
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                },
                "example": {"file": _CSV_EXAMPLE},
            },
        },
    }
}


def report_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/report.csv"


def job_out(job: BulkJob) -> BulkJobOut:
    return BulkJobOut(
        id=job.id,
        status=job.status,
        source=job.source,
        total=job.total,
        counts=JobCounts(
            pending=job.pending_count,
            connected=job.connected_count,
            failed=job.failed_count,
            duplicate=job.duplicate_count,
            invalid=job.invalid_count,
        ),
        idempotency_key=job.idempotency_key,
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        report_url=report_url(job.id),
    )


@router.post(
    "/mailboxes/bulk",
    operation_id="bulk:connect",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra=_BULK_BODY,
    responses={
        200: {
            "description": "An earlier request with this Idempotency-Key made the job",
            "model": Envelope[BulkJobOut],
        },
        **errors(409, 413, 415),
    },
)
async def bulk_connect(
    request: Request,
    response: Response,
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> Envelope[BulkJobOut]:
    """Connect many mailboxes at once: each is created inactive and verified by one
    background job. Rows that are invalid or duplicates are reported, not fatal."""
    workspace_id = ctx.workspace_id
    key = check_idempotency_key(idempotency_key)
    if key is not None:
        existing = await service.find_job_by_key(session, workspace_id, key)
        if existing is not None:
            response.status_code = status.HTTP_200_OK
            return ok(job_out(existing), "This Idempotency-Key already made this job")
    source, rows = await read_bulk_rows(
        request, max_bytes=settings.bulk_max_upload_bytes, max_rows=settings.bulk_max_items
    )
    job, created = await service.accept_job(
        session,
        keyring,
        workspace_id,
        rows,
        source=source,
        idempotency_key=key,
        created_by=ctx.user.id,
        settings=settings,
        field="file" if source == "csv" else "body",
    )
    if not created:
        response.status_code = status.HTTP_200_OK
        return ok(job_out(job), "This Idempotency-Key already made this job")
    return ok(
        job_out(job),
        f"Bulk connect job accepted: {job.pending_count} mailboxes to verify. "
        f"Poll GET /v1/jobs/{job.id}",
    )


@router.get("/jobs/{job_id}", operation_id="jobs:get")
async def get_job(job_id: str, ctx: WorkspaceReadDep, session: SessionDep) -> Envelope[BulkJobOut]:
    """A bulk connect job: its status and counts by outcome, live while it runs."""
    return ok(job_out(await service.get_job(session, ctx.workspace_id, job_id)))


@router.get(
    "/jobs/{job_id}/report.csv",
    operation_id="jobs:report",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "One row per request row",
        }
    },
)
async def get_job_report(
    job_id: str, request: Request, ctx: WorkspaceReadDep, session: SessionDep
) -> StreamingResponse:
    """row, email, outcome, error_code, message, mailbox_id: one line per row of the
    request (pending rows show as pending while the job runs)."""
    job = await service.get_job(session, ctx.workspace_id, job_id)
    database: Database = request.app.state.database
    return StreamingResponse(
        report_lines(database, job.id),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="bulk-job-{job.id}.csv"'},
    )


async def report_lines(database: Database, job_id: str) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(service.REPORT_COLUMNS)
    yield buffer.getvalue()
    async for page in service.report_rows(database, job_id):
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([service.report_cell(value) for value in row] for row in page)
        yield buffer.getvalue()
