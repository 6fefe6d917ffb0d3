"""Console pages for placement tests: the list, and one test's results by provider."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from mailfleet.console.charts import bar_chart
from mailfleet.console.context import ConsoleRoute, ContextDep, render
from mailfleet.deps import SessionDep
from mailfleet.kit.pagination import Page
from mailfleet.models import PlacementTestStatus
from mailfleet.placement import service as placement

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

SHOWN = 50
RUNNING = (PlacementTestStatus.SENDING, PlacementTestStatus.WAITING)


@router.get("/placement", response_class=HTMLResponse)
async def placement_page(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    tests, total = await placement.list_tests(session, ctx.workspace_id, Page(limit=SHOWN, skip=0))
    return render(request, "placement.html", ctx, tests=tests, total=total)


@router.get("/placement/{test_id}", response_class=HTMLResponse)
async def placement_test(
    test_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    test = await placement.get_test(session, ctx.workspace_id, test_id)
    out = await placement.test_out(session, test)
    chart = bar_chart(
        "Inbox placement by provider, %",
        [(p.provider, round(p.inbox_rate)) for p in out.summary.providers],
    )
    return render(
        request,
        "placement_test.html",
        ctx,
        test=out,
        chart=chart,
        running=test.status in RUNNING,
    )
