"""Saleshandy's Open API for connecting email accounts in bulk, verbatim.

POST /v1/email-accounts/connect takes a JSON array of accounts and answers at
once with a requestId; GET /v1/email-accounts/connect/status/{requestId} says
whether the import finished and, once it has, links a CSV report with one row
per account. Underneath it is a bulk connect job like any other (source
"saleshandy"): the requestId is the job id, and the report is the job's.
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mailfleet.bulk import service as bulk
from mailfleet.bulk.formats import ParsedRow, parse_item, too_many_rows
from mailfleet.bulk.router import report_url
from mailfleet.bulk.upload import read_json
from mailfleet.compat.dialect import dialect_route
from mailfleet.deps import KeyringDep, SessionDep, SettingsDep, WorkspaceReadDep, WorkspaceWriteDep
from mailfleet.kit.envelope import errors
from mailfleet.kit.errors import ValidationFailed
from mailfleet.kit.idempotency import check_idempotency_key
from mailfleet.models import BulkJob

CONNECT_MESSAGE: Final = (
    "The email accounts connection process has been initiated successfully. Please wait while "
    "we connect your email accounts. You may check the status using this API "
    "`/v1/email-accounts/connect/status/{{requestId}}`."
)
IN_PROGRESS_MESSAGE: Final = "The email accounts connection process is in progress."
COMPLETED_MESSAGE: Final = (
    "The email accounts connection process has been completed. Download the report for "
    "the result of each email account."
)

# Mailfleet's field names in validation messages, back in Saleshandy's.
FIELD_NAMES: Final = {
    "email": "smtpEmailAddress",
    "displayName": "fromFirstName",
    "provider": "emailServiceProvider",
    "smtp.host": "smtpHost",
    "smtp.port": "smtpPort",
    "smtp.secure": "smtpEncryption",
    "smtp.username": "smtpUserName",
    "smtp.password": "smtpPassword",
    "imap.host": "imapHost",
    "imap.port": "imapPort",
    "imap.secure": "imapEncryption",
    "imap.username": "imapUserName",
    "imap.password": "imapPassword",
}
_ENCRYPTIONS: Final = {"ssl": True, "tls": True, "none": False}


def render_error(
    request: Request, status: int, message: str, details: list[dict[str, Any]] | None
) -> JSONResponse:
    """Errors in the shape of Saleshandy's answers: a message and a payload."""
    payload = {"errors": details} if details else None
    return JSONResponse({"message": message, "payload": payload}, status_code=status)


class ErrorPayload(BaseModel):
    errors: list[dict[str, Any]]


class SaleshandyError(BaseModel):
    """Saleshandy's error body: a message, and the fields at fault when there are some."""

    message: str
    payload: ErrorPayload | None


class _Out(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class AcceptedPayload(_Out):
    request_id: str = Field(alias="requestId")


class Accepted(_Out):
    message: str
    payload: AcceptedPayload


class StatusPayload(_Out):
    is_completed: bool = Field(alias="isCompleted")
    report_url: str | None = Field(alias="reportURL")


class ConnectStatus(_Out):
    message: str
    payload: StatusPayload


router = APIRouter(
    prefix="/v1/email-accounts",
    tags=["saleshandy"],
    route_class=dialect_route(render_error),
    responses=errors(401, 403, 404, model=SaleshandyError),
)

# The body is read raw (size-capped before parsing), so it is documented here.
_ACCOUNTS_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An array of email accounts, in Saleshandy's fields",
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": {"type": "object"}},
                "example": [
                    {
                        "smtpEmailAddress": "ana@example.com",
                        "fromFirstName": "Ana",
                        "smtpHost": "smtp.example.com",
                        "smtpPort": 587,
                        "smtpUserName": "ana@example.com",
                        "smtpPassword": "app-password",
                        "smtpEncryption": "tls",
                        "imapHost": "imap.example.com",
                        "imapPort": 993,
                        "imapUserName": "ana@example.com",
                        "imapPassword": "app-password",
                        "imapEncryption": "ssl",
                    }
                ],
            }
        },
    }
}


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _server(account: dict[str, Any], prefix: str) -> dict[str, Any] | str:
    """One of smtp/imap in Mailfleet's shape, or what is wrong with its encryption."""
    encryption = account.get(f"{prefix}Encryption")
    server: dict[str, Any] = {
        "host": account.get(f"{prefix}Host"),
        "port": account.get(f"{prefix}Port"),
        "username": account.get(f"{prefix}UserName"),
        "password": account.get(f"{prefix}Password"),
    }
    if encryption is not None:
        # "ssl" and "tls" both mean encrypted; the port picks implicit TLS (465,
        # 993) or STARTTLS (any other), as for every Mailfleet mailbox.
        secure = _ENCRYPTIONS.get(str(encryption).strip().lower())
        if secure is None:
            return f"{prefix}Encryption: must be ssl, tls or none"
        server["secure"] = secure
    return {key: value for key, value in server.items() if value is not None}


def account_row(row: int, account: object) -> ParsedRow:
    """One Saleshandy account as a bulk row; unknown fields are ignored."""
    if not isinstance(account, dict):
        return ParsedRow(row, "", None, "each account must be a JSON object")
    email = account.get("smtpEmailAddress") or account.get("imapEmailAddress")
    smtp = _server(account, "smtp")
    imap = _server(account, "imap")
    for server in (smtp, imap):
        if isinstance(server, str):
            return ParsedRow(
                row, email.strip().lower() if isinstance(email, str) else "", None, server
            )
    names = (_text(account.get("fromFirstName")), _text(account.get("fromLastName")))
    item: dict[str, Any] = {"email": email, "smtp": smtp, "imap": imap}
    if any(names):
        item["displayName"] = " ".join(name for name in names if name)
    if provider := _text(account.get("emailServiceProvider")):
        item["provider"] = provider
    return parse_item(row, item, email=email, field_names=FIELD_NAMES)


def _accepted(job: BulkJob) -> Accepted:
    return Accepted(message=CONNECT_MESSAGE, payload=AcceptedPayload(request_id=job.id))


@router.post(
    "/connect",
    operation_id="saleshandy.email_accounts:connect",
    openapi_extra=_ACCOUNTS_BODY,
    responses=errors(400, 409, 413, model=SaleshandyError),
)
async def connect_email_accounts(
    request: Request,
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="The same key again gets the same requestId"),
    ] = None,
) -> Accepted:
    """Connect email accounts with SMTP and IMAP settings; answers at once with a
    requestId to follow with the status API."""
    workspace_id = ctx.workspace_id
    key = check_idempotency_key(idempotency_key)
    if key is not None and (existing := await bulk.find_job_by_key(session, workspace_id, key)):
        return _accepted(existing)
    payload = await read_json(request, settings.bulk_max_upload_bytes)
    if not isinstance(payload, list):
        raise ValidationFailed.for_field("body", "Send an array of email accounts")
    if len(payload) > settings.bulk_max_items:
        raise too_many_rows("body", settings.bulk_max_items)
    rows = [account_row(index, account) for index, account in enumerate(payload, start=1)]
    job, _created = await bulk.accept_job(
        session,
        keyring,
        workspace_id,
        rows,
        source="saleshandy",
        idempotency_key=key,
        created_by=ctx.user.id,
        settings=settings,
    )
    return _accepted(job)


@router.get("/connect/status/{request_id}", operation_id="saleshandy.email_accounts:connect_status")
async def connect_status(
    request_id: str, request: Request, ctx: WorkspaceReadDep, session: SessionDep
) -> ConnectStatus:
    """Whether the import finished; once it has, `reportURL` links its CSV report,
    which the same key downloads."""
    job = await bulk.get_job(session, ctx.workspace_id, request_id)
    completed = job.status in bulk.FINAL_JOB_STATUSES
    url = str(request.base_url).rstrip("/") + report_url(job.id) if completed else None
    return ConnectStatus(
        message=COMPLETED_MESSAGE if completed else IN_PROGRESS_MESSAGE,
        payload=StatusPayload(is_completed=completed, report_url=url),
    )
