"""Warmup routes: settings per mailbox and in bulk, analytics.

Mounted before the mailboxes router: `/v1/mailboxes/warmup-analytics` must not
be taken for `/v1/mailboxes/{mailbox_id}`.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from mailfleet.deps import SessionDep, WorkspaceReadDep, WorkspaceWriteDep
from mailfleet.kit.clock import utcnow
from mailfleet.kit.envelope import WORKSPACE_ERRORS, Envelope, ListEnvelope, ok
from mailfleet.kit.errors import ValidationFailed
from mailfleet.kit.pagination import PageDep
from mailfleet.mailboxes import service as mailboxes
from mailfleet.warmup import service
from mailfleet.warmup.schemas import (
    WarmupAnalyticsOut,
    WarmupBulkIn,
    WarmupBulkOut,
    WarmupSettingsIn,
    WarmupSettingsOut,
)

router = APIRouter(prefix="/v1", tags=["warmup"], responses=WORKSPACE_ERRORS)


def _ids(raw: list[str] | None) -> list[str] | None:
    # Accept repeated `mailboxIds=a&mailboxIds=b` and `mailboxIds=a,b`.
    if not raw:
        return None
    ids = [part.strip() for item in raw for part in item.split(",") if part.strip()]
    if len(ids) > 1000:
        raise ValidationFailed.for_field("mailboxIds", "at most 1000 mailboxes at once")
    return ids or None


@router.get("/mailboxes/warmup-analytics", operation_id="warmup:list_analytics")
async def warmup_analytics(
    ctx: WorkspaceReadDep,
    session: SessionDep,
    page: PageDep,
    mailbox_ids: Annotated[list[str] | None, Query(alias="mailboxIds")] = None,
    start: Annotated[date | None, Query(alias="from", description="YYYY-MM-DD")] = None,
    end: Annotated[date | None, Query(alias="to", description="YYYY-MM-DD")] = None,
) -> ListEnvelope[WarmupAnalyticsOut]:
    """Warmup analytics per mailbox (default: every mailbox with warmup on, last 14 days)."""
    now = utcnow()
    period = service.Period.of(start, end, now.date())
    found, total = await service.analytics_mailboxes(
        session, ctx.workspace_id, _ids(mailbox_ids), page
    )
    return ListEnvelope(
        data=await service.analytics(session, found, period, now), pagination=page.describe(total)
    )


@router.get("/mailboxes/{mailbox_id}/warmup", operation_id="warmup:get")
async def get_warmup(
    mailbox_id: str, ctx: WorkspaceReadDep, session: SessionDep
) -> Envelope[WarmupSettingsOut]:
    settings, mailbox = await service.get_settings(session, ctx.workspace_id, mailbox_id)
    return ok(service.settings_out(settings, mailbox))


@router.put("/mailboxes/{mailbox_id}/warmup", operation_id="warmup:update")
async def put_warmup(
    mailbox_id: str, body: WarmupSettingsIn, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[WarmupSettingsOut]:
    settings, mailbox = await service.get_settings(session, ctx.workspace_id, mailbox_id)
    settings = await service.update_settings(session, settings, mailbox, body)
    return ok(service.settings_out(settings, mailbox), "Warmup settings saved")


@router.get("/mailboxes/{mailbox_id}/warmup/analytics", operation_id="warmup:get_analytics")
async def mailbox_warmup_analytics(
    mailbox_id: str,
    ctx: WorkspaceReadDep,
    session: SessionDep,
    start: Annotated[date | None, Query(alias="from", description="YYYY-MM-DD")] = None,
    end: Annotated[date | None, Query(alias="to", description="YYYY-MM-DD")] = None,
) -> Envelope[WarmupAnalyticsOut]:
    mailbox = await mailboxes.get_mailbox(session, ctx.workspace_id, mailbox_id)
    now = utcnow()
    period = service.Period.of(start, end, now.date())
    [report] = await service.analytics(session, [mailbox], period, now)
    return ok(report)


@router.post("/warmup/enable", operation_id="warmup:enable")
async def enable_warmup(
    body: WarmupBulkIn, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[WarmupBulkOut]:
    result = await service.bulk_switch(session, ctx.workspace_id, body, enabled=True)
    return ok(result, f"Warmup enabled on {len(result.updated)} mailboxes")


@router.post("/warmup/disable", operation_id="warmup:disable")
async def disable_warmup(
    body: WarmupBulkIn, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[WarmupBulkOut]:
    result = await service.bulk_switch(session, ctx.workspace_id, body, enabled=False)
    return ok(result, f"Warmup disabled on {len(result.updated)} mailboxes")
