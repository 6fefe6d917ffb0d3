"""Placement test routes: seeds, create, list, read, cancel.

`/v1/placement-tests/seeds` is declared before `/{test_id}`, so it is never taken
for a test id.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from mailfleet.deps import DiscovererDep, SessionDep, WorkspaceReadDep, WorkspaceWriteDep
from mailfleet.kit.envelope import WORKSPACE_ERRORS, Envelope, ListEnvelope, errors, ok
from mailfleet.kit.pagination import PageDep
from mailfleet.placement import service
from mailfleet.placement.schemas import (
    PlacementTestBrief,
    PlacementTestIn,
    PlacementTestOut,
    SeedOut,
)

router = APIRouter(prefix="/v1/placement-tests", tags=["placement"], responses=WORKSPACE_ERRORS)


@router.get("/seeds", operation_id="placement:list_seeds")
async def list_seeds(
    ctx: WorkspaceReadDep, session: SessionDep, discoverer: DiscovererDep, page: PageDep
) -> ListEnvelope[SeedOut]:
    """Mailboxes marked `placementSeed`, with the provider that hosts each."""
    seeds, total = await service.list_seeds(session, discoverer, ctx.workspace_id, page)
    return ListEnvelope(data=seeds, pagination=page.describe(total))


@router.post("", operation_id="placement:create", status_code=status.HTTP_202_ACCEPTED)
async def create_test(
    body: PlacementTestIn, ctx: WorkspaceWriteDep, session: SessionDep, discoverer: DiscovererDep
) -> Envelope[PlacementTestOut]:
    """Send one message from each sender to each seed, then read where each landed."""
    test = await service.create_test(session, discoverer, ctx.workspace_id, body)
    return ok(await service.test_out(session, test), "Placement test started")


@router.get("", operation_id="placement:list")
async def list_tests(
    ctx: WorkspaceReadDep, session: SessionDep, page: PageDep
) -> ListEnvelope[PlacementTestBrief]:
    tests, total = await service.list_tests(session, ctx.workspace_id, page)
    return ListEnvelope(data=tests, pagination=page.describe(total))


@router.get("/{test_id}", operation_id="placement:get")
async def get_test(
    test_id: str, ctx: WorkspaceReadDep, session: SessionDep
) -> Envelope[PlacementTestOut]:
    test = await service.get_test(session, ctx.workspace_id, test_id)
    return ok(await service.test_out(session, test))


@router.delete("/{test_id}", operation_id="placement:cancel", responses=errors(409))
async def cancel_test(
    test_id: str, ctx: WorkspaceWriteDep, session: SessionDep
) -> Envelope[PlacementTestOut]:
    """Cancel a running test: nothing more is sent or read (409 once completed)."""
    test = await service.get_test(session, ctx.workspace_id, test_id)
    test = await service.cancel_test(session, test)
    return ok(await service.test_out(session, test), "Placement test canceled")
