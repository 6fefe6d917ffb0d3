"""DeepLead's API (/api/v1): pools, the inbox list, and single or batch inbox creation.

Inboxes are Mailfleet mailboxes; this module only translates. Provider settings
are discovered (provider table, MX records, autoconfig) for fields left out.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.compat.dialect import dialect_route
from mailfleet.deps import (
    DiscovererDep,
    KeyringDep,
    SessionDep,
    WorkspaceReadDep,
    WorkspaceWriteDep,
)
from mailfleet.kit.crypto import Keyring
from mailfleet.kit.envelope import ApiOut, Pagination, Timestamp, errors
from mailfleet.kit.errors import MailfleetError, ValidationFailed
from mailfleet.kit.pagination import MAX_LIMIT, LimitQuery, Page, SkipQuery
from mailfleet.kit.validation import EmailAddress, Hostname, Port
from mailfleet.mail.discovery import Discoverer, apply_discovery
from mailfleet.mailboxes import service
from mailfleet.mailboxes.schemas import ImapIn, MailboxCreate, SmtpIn
from mailfleet.models import Mailbox, Pool

# DeepLead's four statuses, from Mailfleet's: a mailbox awaiting its first test is
# not sending yet, which DeepLead calls "deactivated".
STATUS_TO_DEEPLEAD = {
    "active": "active",
    "paused": "paused",
    "error": "error",
    "inactive": "deactivated",
}
STATUS_FROM_DEEPLEAD = {value: key for key, value in STATUS_TO_DEEPLEAD.items()}
DeepLeadStatus = Literal["active", "paused", "deactivated", "error"]


def render_error(
    request: Request, status: int, message: str, details: list[dict[str, Any]] | None
) -> JSONResponse:
    body: dict[str, Any] = {"error": "Unauthorized" if status == 401 else message}
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=status)


class DeepLeadError(BaseModel):
    """DeepLead's error body."""

    error: str = Field(examples=["Unauthorized"])
    details: list[dict[str, Any]] | None = Field(
        default=None, exclude_if=lambda value: value is None
    )


router = APIRouter(
    prefix="/api/v1",
    tags=["deeplead"],
    route_class=dialect_route(render_error),
    responses=errors(401, 403, 404, model=DeepLeadError),
)


class InboxIn(BaseModel):
    """One inbox as DeepLead's POST /inboxes takes it; unknown fields are ignored."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    email_address: EmailAddress
    pool_id: str | None = None
    imap_password: str = Field(min_length=1, max_length=1024)
    smtp_password: str | None = Field(default=None, min_length=1, max_length=1024)
    imap_username: str | None = Field(default=None, min_length=1, max_length=320)
    smtp_username: str | None = Field(default=None, min_length=1, max_length=320)
    provider: str | None = Field(default=None, max_length=40)
    imap_host: Hostname | None = None
    imap_port: Port | None = None
    smtp_host: Hostname | None = None
    smtp_port: Port | None = None
    daily_sending_limit: int = Field(default=2, strict=True, ge=1, le=10_000)
    skip_connection_test: bool = False


class PoolOut(ApiOut):
    id: str
    name: str
    inbox_count: int
    created_at: Timestamp


class PoolList(ApiOut):
    pools: list[PoolOut]


class InboxOut(ApiOut):
    id: str
    email_address: str
    pool_id: str | None
    status: DeepLeadStatus
    daily_sending_limit: int
    created_at: Timestamp


class InboxList(ApiOut):
    inboxes: list[InboxOut]
    pagination: Pagination


def _omitted_when_none() -> Any:
    return Field(default=None, exclude_if=lambda value: value is None)


class ItemResult(ApiOut):
    # What the item sent as emailAddress, echoed as sent (null when absent).
    email_address: Any
    success: bool
    inbox_id: str | None = _omitted_when_none()
    error: str | None = _omitted_when_none()
    auto_filled_fields: list[str] | None = _omitted_when_none()


class Summary(ApiOut):
    total: int
    created: int
    failed: int


class AutoCreatedPool(ApiOut):
    id: str
    name: str


class CreateResult(ApiOut):
    """One answer for a single inbox or a batch: each item says how it went."""

    success: bool
    summary: Summary
    auto_created_pool: AutoCreatedPool | None = _omitted_when_none()
    results: list[ItemResult]


def _pool_out(pool: Pool, count: int) -> PoolOut:
    return PoolOut(id=pool.id, name=pool.name, inbox_count=count, created_at=pool.created_at)


def _inbox_out(mailbox: service.MailboxListing) -> InboxOut:
    return InboxOut(
        id=mailbox.id,
        email_address=mailbox.email,
        pool_id=mailbox.pool_id,
        status=STATUS_TO_DEEPLEAD.get(mailbox.status, "error"),
        daily_sending_limit=mailbox.daily_send_limit,
        created_at=mailbox.created_at,
    )


@router.get("/pools", operation_id="deeplead.pools:list")
async def list_pools(ctx: WorkspaceReadDep, session: SessionDep) -> PoolList:
    pools = await service.list_pools(session, ctx.workspace_id)
    return PoolList(pools=[_pool_out(pool, count) for pool, count in pools])


@router.get("/inboxes", operation_id="deeplead.inboxes:list")
async def list_inboxes(
    ctx: WorkspaceReadDep,
    session: SessionDep,
    pool_id: Annotated[str | None, Query(alias="poolId")] = None,
    status: DeepLeadStatus | None = None,
    limit: LimitQuery = 100,
    skip: SkipQuery = 0,
) -> InboxList:
    filters = service.MailboxFilters(
        pool_id=pool_id, status=STATUS_FROM_DEEPLEAD[status] if status else None
    )
    page = Page(limit=limit, skip=skip)
    # An inbox shows no tags: its page reads listings, which carry none.
    found = await service.page_mailboxes(session, ctx.workspace_id, filters, page)
    return InboxList(
        inboxes=[_inbox_out(m) for m in found.mailboxes], pagination=page.describe(found.total)
    )


class _ItemFailed(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


async def _create_inbox(
    session: AsyncSession,
    keyring: Keyring,
    discoverer: Discoverer,
    workspace_id: str,
    item: InboxIn,
    pool_id: str,
) -> tuple[Mailbox, list[str]]:
    explicit: dict[str, Any] = {
        "imapHost": item.imap_host,
        "imapPort": item.imap_port,
        "smtpHost": item.smtp_host,
        "smtpPort": item.smtp_port,
    }
    filled_fields: list[str] = []
    if any(value is None for value in explicit.values()):
        result = await discoverer.discover(item.email_address, item.provider)
        explicit, filled_fields = apply_discovery(explicit, result)
    missing = [
        name for name in ("imapHost", "imapPort", "smtpHost", "smtpPort") if not explicit.get(name)
    ]
    if missing:
        raise _ItemFailed(
            f"Could not detect {', '.join(missing)} for {item.email_address.split('@')[1]}; "
            "give the provider or the full connection details"
        )
    smtp_password = item.smtp_password or item.imap_password
    data = MailboxCreate(
        email=item.email_address,
        provider=item.provider or "custom",
        smtp=SmtpIn(
            host=explicit["smtpHost"],
            port=explicit["smtpPort"],
            secure=explicit.get("smtpSecure", True),
            username=item.smtp_username or item.imap_username,
            password=smtp_password,
        ),
        imap=ImapIn(
            host=explicit["imapHost"],
            port=explicit["imapPort"],
            secure=explicit.get("imapSecure", True),
            username=item.imap_username,
            password=item.imap_password,
        ),
        pool_id=pool_id,
    )
    mailbox = await service.create_mailbox(
        session,
        keyring,
        workspace_id,
        data,
        verify=not item.skip_connection_test,
        # DeepLead's limit is not clamped to SendKit's 1..50.
        daily_send_limit=item.daily_sending_limit,
    )
    return mailbox, filled_fields


async def _drop_unused(session: AsyncSession, pool: Pool | None) -> None:
    if pool is not None:
        await service.delete_pool(session, pool)


def _validation_message(exc: ValidationError) -> tuple[str, list[dict[str, Any]]]:
    details = [
        {"field": ".".join(str(p) for p in error["loc"]), "message": error["msg"]}
        for error in exc.errors()
    ]
    return "Invalid input: " + "; ".join(f"{d['field']}: {d['message']}" for d in details), details


_INBOX_EXAMPLE: dict[str, Any] = {
    "emailAddress": "ana@example.com",
    "imapPassword": "app-password",
    "provider": "google",
    "dailySendingLimit": 30,
}


@router.post(
    "/inboxes",
    operation_id="deeplead.inboxes:create",
    responses=errors(409, model=DeepLeadError),
)
async def create_inboxes(
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    keyring: KeyringDep,
    discoverer: DiscovererDep,
    payload: Annotated[
        dict[str, Any] | list[Any],
        Body(
            description="One inbox (an object) or a batch (an array of them), as InboxIn",
            examples=[_INBOX_EXAMPLE, [_INBOX_EXAMPLE]],
        ),
    ],
) -> CreateResult:
    """One inbox (an object) or a batch (an array); each item answers for itself."""
    single = isinstance(payload, dict)
    raw_items: list[Any] = [payload] if single else list(payload)
    if not raw_items:
        raise ValidationFailed(
            "Provide at least one inbox", [{"field": "", "message": "empty array"}]
        )
    if len(raw_items) > MAX_LIMIT:
        raise ValidationFailed(
            f"At most {MAX_LIMIT} inboxes per request", [{"field": "", "message": "too many items"}]
        )

    auto_pool: Pool | None = None
    auto_pool_used = False
    results: list[ItemResult] = []
    for raw in raw_items:
        email = raw.get("emailAddress") if isinstance(raw, dict) else None
        try:
            try:
                item = InboxIn.model_validate(raw)
            except ValidationError as exc:
                message, details = _validation_message(exc)
                if single:
                    raise ValidationFailed(message, details) from exc
                raise _ItemFailed(message) from exc
            if item.pool_id is not None:
                pool_id = (await service.get_pool(session, ctx.workspace_id, item.pool_id)).id
            else:
                if auto_pool is None:
                    auto_pool = await service.create_pool(
                        session, ctx.workspace_id, f"API Pool - {date.today().isoformat()}"
                    )
                pool_id = auto_pool.id
            mailbox, filled = await _create_inbox(
                session, keyring, discoverer, ctx.workspace_id, item, pool_id
            )
        except (_ItemFailed, MailfleetError) as exc:
            if single:
                # The error is rendered as an answer, so the request's transaction
                # commits: the pool made for this inbox must go explicitly.
                await _drop_unused(session, auto_pool)
                if isinstance(exc, MailfleetError):
                    raise
                raise ValidationFailed(exc.message, []) from exc
            results.append(ItemResult(email_address=email, success=False, error=exc.message))
            continue
        if auto_pool is not None and mailbox.pool_id == auto_pool.id:
            auto_pool_used = True
        results.append(
            ItemResult(
                email_address=mailbox.email,
                success=True,
                inbox_id=mailbox.id,
                auto_filled_fields=filled or None,
            )
        )

    if not auto_pool_used:
        # Every inbox that would have gone into it failed: a retry would otherwise
        # leave one more empty "API Pool" each time.
        await _drop_unused(session, auto_pool)
        auto_pool = None
    created = sum(1 for r in results if r.success)
    return CreateResult(
        success=created > 0,
        summary=Summary(total=len(results), created=created, failed=len(results) - created),
        auto_created_pool=(
            AutoCreatedPool(id=auto_pool.id, name=auto_pool.name) if auto_pool else None
        ),
        results=results,
    )
