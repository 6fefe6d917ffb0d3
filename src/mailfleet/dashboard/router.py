"""GET /v1/dashboard/overview."""

from __future__ import annotations

from fastapi import APIRouter

from mailfleet.dashboard import service
from mailfleet.dashboard.schemas import Overview
from mailfleet.deps import SessionDep, SettingsDep, WorkspaceReadDep
from mailfleet.kit.envelope import WORKSPACE_ERRORS, Envelope, ok

router = APIRouter(prefix="/v1", tags=["dashboard"], responses=WORKSPACE_ERRORS)


@router.get("/dashboard/overview", operation_id="dashboard:overview")
async def dashboard_overview(
    ctx: WorkspaceReadDep, session: SessionDep, settings: SettingsDep
) -> Envelope[Overview]:
    """Mailboxes per status and provider, domains per DNS health, warmup health,
    running bulk jobs and exports, failing webhook endpoints, and the wallet
    balance when billing is on."""
    return ok(await service.overview(session, settings, ctx.workspace_id))
