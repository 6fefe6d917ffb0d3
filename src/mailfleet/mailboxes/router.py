"""Mailbox, tag and dashboard routes (SendKit's mailbox semantics)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from sqlalchemy import ColumnElement

from mailfleet.deps import (
    DiscovererDep,
    KeyringDep,
    SessionDep,
    SettingsDep,
    WorkspaceReadDep,
    WorkspaceWriteDep,
)
from mailfleet.kit.envelope import (
    WORKSPACE_ERRORS,
    CursorListEnvelope,
    CursorPagination,
    Envelope,
    errors,
    json_list_response,
    ok,
)
from mailfleet.kit.errors import ValidationFailed
from mailfleet.kit.pagination import Keyset, PageDep
from mailfleet.kit.sqljson import model_json
from mailfleet.kit.validation import normalize_email
from mailfleet.mail.discovery import ServerSettings
from mailfleet.mailboxes import service
from mailfleet.mailboxes.schemas import (
    ConnectionTestOut,
    DiscoveryOut,
    MailboxCreate,
    MailboxOut,
    MailboxUpdate,
    PoolCreate,
    PoolOut,
    PoolUpdate,
    RemovalOut,
    ServerSettingsOut,
    StatusCounts,
    TagCreate,
    TagOut,
    TagUpdate,
)
from mailfleet.mailserver import service as hosted
from mailfleet.mailserver import storage
from mailfleet.mailserver.schemas import HostedUpdateIn
from mailfleet.models import ConnectionTest, Mailbox, Pool, Tag

router = APIRouter(prefix="/v1", tags=["mailboxes"], responses=WORKSPACE_ERRORS)

CREATED_MESSAGE = (
    "Mailbox queued for SMTP verification. Poll GET /v1/mailboxes/:id/connection-test "
    'until status is no longer "inactive".'
)


def mailbox_out(mailbox: Mailbox) -> MailboxOut:
    return MailboxOut(
        mongo_id=mailbox.id,
        id=mailbox.id,
        email=mailbox.email,
        display_name=mailbox.display_name,
        provider=mailbox.provider,
        status=mailbox.status,
        connection_type=mailbox.connection_type,
        daily_send_limit=mailbox.daily_send_limit,
        sending_enabled=mailbox.sending_enabled,
        signature=mailbox.signature,
        tags=[tag.name for tag in mailbox.tags],
        smtp_host=mailbox.smtp_host,
        smtp_port=mailbox.smtp_port,
        smtp_secure=mailbox.smtp_secure,
        smtp_username=mailbox.smtp_username,
        imap_host=mailbox.imap_host,
        imap_port=mailbox.imap_port,
        imap_secure=mailbox.imap_secure,
        imap_username=mailbox.imap_username,
        domain=mailbox.domain,
        pool_id=mailbox.pool_id,
        placement_seed=mailbox.placement_seed,
        setup_status=mailbox.setup_status,
        last_verified_at=mailbox.last_verified_at,
        created_at=mailbox.created_at,
        updated_at=mailbox.updated_at,
        hosted=mailbox.hosted_domain_id is not None,
        first_name=mailbox.first_name,
        last_name=mailbox.last_name,
        quota_bytes=mailbox.quota_bytes,
        forward_to=mailbox.forward_to,
    )


def test_out(test: ConnectionTest) -> ConnectionTestOut:
    error = None
    if test.error_code:
        error = {"code": test.error_code, "message": test.error_message or ""}
    return ConnectionTestOut(
        id=test.id,
        mailbox_id=test.mailbox_id,
        email=test.email,
        status=test.status,
        kind=test.kind,
        smtp=test.smtp_result,
        imap=test.imap_result,
        error=error,
        mailbox_deleted=test.mailbox_deleted,
        created_at=test.created_at,
        finished_at=test.finished_at,
    )


def tag_out(tag: Tag, count: int = 0) -> TagOut:
    return TagOut(
        id=tag.id,
        name=tag.name,
        color=tag.color,
        mailbox_count=count,
        created_at=tag.created_at,
        updated_at=tag.updated_at,
    )


@router.post(
    "/mailboxes",
    operation_id="mailboxes:create",
    status_code=status.HTTP_201_CREATED,
    responses=errors(409),
)
async def create_mailbox(
    body: MailboxCreate, ctx: WorkspaceWriteDep, session: SessionDep, keyring: KeyringDep
) -> Envelope[MailboxOut]:
    """Add an SMTP mailbox: created inactive, verified in the background."""
    mailbox = await service.create_mailbox(session, keyring, ctx.workspace_id, body)
    return ok(mailbox_out(mailbox), CREATED_MESSAGE)


def listing_json(
    columns: Mapping[str, ColumnElement[Any]], tag_names: ColumnElement[Any]
) -> ColumnElement[str]:
    """A list page's row as MailboxOut renders it, built by the database
    (`kit.sqljson.model_json`): no row is read into Python objects."""
    sources = {
        "mongo_id": columns["id"],
        "tags": tag_names,
        "hosted": columns["hosted_domain_id"].is_not(None),
    }
    return model_json(MailboxOut, columns, sources)


@router.get(
    "/mailboxes",
    operation_id="mailboxes:list",
    response_model=CursorListEnvelope[MailboxOut],
)
async def list_mailboxes(
    ctx: WorkspaceReadDep,
    session: SessionDep,
    page: PageDep,
    status: Annotated[str | None, Query(description="inactive, active, paused or error")] = None,
    provider: str | None = None,
    tag: Annotated[str | None, Query(description="a tag id or name")] = None,
    domain: str | None = None,
    search: Annotated[str | None, Query(max_length=200)] = None,
    pool_id: Annotated[str | None, Query(alias="poolId")] = None,
    cursor: Annotated[
        str | None,
        Query(
            max_length=200,
            description="nextCursor of the previous page: the page after it, at any depth "
            "(instead of skip)",
        ),
    ] = None,
) -> Response:
    """Newest first. Page with `skip`, or for deep pages with `cursor` (each page's
    `pagination.nextCursor`), which stays fast however far in the page is."""
    after = Keyset.decode(cursor) if cursor is not None else None
    if after is not None and page.skip:
        raise ValidationFailed.for_field("skip", "Give either skip or cursor, not both")
    filters = service.MailboxFilters(
        status=status, provider=provider, tag=tag, domain=domain, search=search, pool_id=pool_id
    )
    found = await service.page_rendered(
        session, ctx.workspace_id, filters, page, after, listing_json
    )
    pagination = CursorPagination(
        total=found.total,
        limit=page.limit,
        skip=page.skip,
        has_more=found.has_more,
        next_cursor=found.next_cursor,
    )
    return json_list_response([listing.json for listing in found.mailboxes], pagination)


def _server_out(server: ServerSettings | None) -> ServerSettingsOut | None:
    if server is None:
        return None
    return ServerSettingsOut(
        host=server.host,
        port=server.port,
        secure=server.security != "none",
        security=server.security,
        username=server.username,
    )


@router.get("/mailboxes/discover", operation_id="mailboxes:discover")
async def discover_settings(
    ctx: WorkspaceReadDep,
    discoverer: DiscovererDep,
    email: Annotated[str, Query(max_length=320)],
    provider: Annotated[str | None, Query(max_length=40)] = None,
) -> Envelope[DiscoveryOut]:
    """IMAP/SMTP settings for an address, and where they came from."""
    try:
        address = normalize_email(email)
    except ValueError as exc:
        raise ValidationFailed.for_field("email", str(exc)) from exc
    result = await discoverer.discover(address, provider)
    return ok(
        DiscoveryOut(
            email=address,
            provider=result.provider,
            source=result.source,
            imap=_server_out(result.imap),
            smtp=_server_out(result.smtp),
        )
    )


@router.get("/mailboxes/{mailbox_id}", operation_id="mailboxes:get")
async def get_mailbox(
    mailbox_id: str, ctx: WorkspaceReadDep, session: SessionDep, settings: SettingsDep
) -> Envelope[MailboxOut]:
    mailbox = await service.get_mailbox(session, ctx.workspace_id, mailbox_id)
    out = mailbox_out(mailbox)
    out.quota_used_bytes = storage.quota_used_bytes(settings, mailbox)
    return ok(out)


@router.put("/mailboxes/{mailbox_id}", operation_id="mailboxes:update")
async def update_mailbox(
    mailbox_id: str,
    body: MailboxUpdate,
    ctx: WorkspaceWriteDep,
    session: SessionDep,
    keyring: KeyringDep,
) -> Envelope[MailboxOut]:
    mailbox = await service.get_mailbox(session, ctx.workspace_id, mailbox_id)
    hosted_update = HostedUpdateIn.model_validate(
        body.model_dump(include={"first_name", "last_name", "password", "reset_password"})
    )
    servers = [name for name in ("smtp", "imap") if getattr(body, name) is not None]
    generated = await hosted.update_hosted_mailbox(
        session, keyring, mailbox, hosted_update, servers_given=servers
    )
    mailbox, test = await service.update_mailbox(session, keyring, mailbox, body)
    message = "Mailbox updated" + ("; new settings queued for verification" if test else "")
    out = mailbox_out(mailbox)
    out.password = generated
    return ok(out, message)


@router.delete("/mailboxes/{mailbox_id}", operation_id="mailboxes:delete")
async def delete_mailbox(
    mailbox_id: str, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[RemovalOut | None]:
    """Delete now; a billed mailbox goes at the next renewal (LiteMail's "Next Renewal")."""
    mailbox = await service.get_mailbox(session, ctx.workspace_id, mailbox_id)
    remove_at = await service.remove_mailbox(session, mailbox)
    if remove_at is None:
        return ok(None, "Mailbox deleted")
    return ok(RemovalOut(removal_at=remove_at), "Mailbox will be removed at the next renewal")


@router.get("/mailboxes/{mailbox_id}/connection-test", operation_id="mailboxes:get_connection_test")
async def get_connection_test(
    mailbox_id: str, ctx: WorkspaceReadDep, session: SessionDep
) -> Envelope[ConnectionTestOut]:
    """The latest test; it still answers after a failed first test deleted the mailbox."""
    test = await service.latest_connection_test(session, ctx.workspace_id, mailbox_id)
    return ok(test_out(test))


@router.post(
    "/mailboxes/{mailbox_id}/connection-test",
    operation_id="mailboxes:retest",
    status_code=status.HTTP_202_ACCEPTED,
)
async def retest_mailbox(
    mailbox_id: str, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[ConnectionTestOut]:
    mailbox = await service.get_mailbox(session, ctx.workspace_id, mailbox_id)
    test = await service.retest_mailbox(session, mailbox)
    return ok(test_out(test), "Connection test queued")


@router.get("/dashboard/mailbox-status-counts", operation_id="dashboard:mailbox_status_counts")
async def mailbox_status_counts(
    ctx: WorkspaceReadDep, session: SessionDep
) -> Envelope[StatusCounts]:
    return ok(StatusCounts(**await service.status_counts(session, ctx.workspace_id)))


@router.get("/tags", operation_id="tags:list", tags=["tags"])
async def list_tags(ctx: WorkspaceReadDep, session: SessionDep) -> Envelope[list[TagOut]]:
    return ok(
        [tag_out(tag, count) for tag, count in await service.list_tags(session, ctx.workspace_id)]
    )


@router.post(
    "/tags",
    operation_id="tags:create",
    status_code=status.HTTP_201_CREATED,
    tags=["tags"],
    responses=errors(409),
)
async def create_tag(
    body: TagCreate, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[TagOut]:
    return ok(tag_out(await service.create_tag(session, ctx.workspace_id, body)), "Tag created")


@router.put("/tags/{tag_id}", operation_id="tags:update", tags=["tags"], responses=errors(409))
async def update_tag(
    tag_id: str, body: TagUpdate, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[TagOut]:
    tag = await service.get_tag(session, ctx.workspace_id, tag_id)
    return ok(tag_out(await service.update_tag(session, tag, body)), "Tag updated")


@router.delete("/tags/{tag_id}", operation_id="tags:delete", tags=["tags"])
async def delete_tag(tag_id: str, ctx: WorkspaceWriteDep, session: SessionDep) -> Envelope[None]:
    tag = await service.get_tag(session, ctx.workspace_id, tag_id)
    await service.delete_tag(session, tag)
    return ok(None, "Tag deleted")


def pool_out(pool: Pool, count: int = 0) -> PoolOut:
    return PoolOut(
        id=pool.id,
        name=pool.name,
        inbox_count=count,
        created_at=pool.created_at,
        updated_at=pool.updated_at,
    )


@router.get("/pools", operation_id="pools:list", tags=["pools"])
async def list_pools(ctx: WorkspaceReadDep, session: SessionDep) -> Envelope[list[PoolOut]]:
    pools = await service.list_pools(session, ctx.workspace_id)
    return ok([pool_out(pool, count) for pool, count in pools])


@router.post(
    "/pools", operation_id="pools:create", status_code=status.HTTP_201_CREATED, tags=["pools"]
)
async def create_pool(
    body: PoolCreate, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[PoolOut]:
    return ok(
        pool_out(await service.create_pool(session, ctx.workspace_id, body.name)), "Pool created"
    )


@router.put("/pools/{pool_id}", operation_id="pools:update", tags=["pools"])
async def rename_pool(
    pool_id: str, body: PoolUpdate, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[PoolOut]:
    pool = await service.get_pool(session, ctx.workspace_id, pool_id)
    return ok(pool_out(await service.rename_pool(session, pool, body.name)), "Pool updated")


@router.delete("/pools/{pool_id}", operation_id="pools:delete", tags=["pools"])
async def delete_pool(pool_id: str, ctx: WorkspaceWriteDep, session: SessionDep) -> Envelope[None]:
    pool = await service.get_pool(session, ctx.workspace_id, pool_id)
    await service.delete_pool(session, pool)
    return ok(None, "Pool deleted; its mailboxes are now outside any pool")
