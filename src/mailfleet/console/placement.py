"""Console pages for placement tests: the list, starting one, one test's results by
provider (live until it completes), and canceling it."""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from mailfleet.console.charts import bar_chart
from mailfleet.console.context import ConsoleRoute, ContextDep, redirect, render, undo
from mailfleet.console.forms import form_number, form_text, validation_message
from mailfleet.deps import DiscovererDep, SessionDep
from mailfleet.kit.errors import MailfleetError
from mailfleet.kit.pagination import Page
from mailfleet.mailboxes import service as mailboxes
from mailfleet.models import DeliveryMode, MailboxStatus, PlacementTestStatus
from mailfleet.placement import repository
from mailfleet.placement import service as placement
from mailfleet.placement.schemas import MAX_TIMEOUT_MINUTES, MIN_TIMEOUT_MINUTES, PlacementTestIn

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

SHOWN = 50
# Senders offered on the form: the newest active mailboxes (the API takes any).
SENDERS_SHOWN: Final = 200
RUNNING = (PlacementTestStatus.SENDING, PlacementTestStatus.WAITING)
TEST_LABELS: Final = {
    "name": "Name",
    "subject": "Subject",
    "text": "Message",
    "fromMailboxIds": "Senders",
    "seedMailboxIds": "Seeds",
    "deliveryMode": "Delivery",
    "timeoutMinutes": "Timeout (minutes)",
}


@router.get("/placement", response_class=HTMLResponse)
async def placement_page(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    tests, total = await placement.list_tests(session, ctx.workspace_id, Page(limit=SHOWN, skip=0))
    return render(request, "placement.html", ctx, tests=tests, total=total)


async def _new_form(
    request: Request,
    ctx: ContextDep,
    session: SessionDep,
    form: dict[str, Any],
    *,
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    seeds = [
        m
        for m in await repository.seeds_of(session, ctx.workspace_id)
        if m.status == MailboxStatus.ACTIVE
    ]
    seed_ids = {m.id for m in seeds}
    active, _ = await mailboxes.list_mailboxes(
        session,
        ctx.workspace_id,
        mailboxes.MailboxFilters(status=MailboxStatus.ACTIVE),
        Page(limit=SENDERS_SHOWN, skip=0),
    )
    return render(
        request,
        "placement_new.html",
        ctx,
        status_code=status_code,
        error=error,
        form=form,
        senders=[m for m in active if m.id not in seed_ids],
        seeds=seeds,
        modes=list(DeliveryMode),
        min_timeout=MIN_TIMEOUT_MINUTES,
        max_timeout=MAX_TIMEOUT_MINUTES,
    )


@router.get("/placement/new", response_class=HTMLResponse)
async def new_test(request: Request, ctx: ContextDep, session: SessionDep) -> Response:
    ctx.require_write()
    defaults = {"delivery_mode": DeliveryMode.TOGETHER.value, "timeout_minutes": "60"}
    return await _new_form(request, ctx, session, {**defaults, "senders": [], "seeds": []})


def _chosen(form: FormData, name: str) -> list[str]:
    return [value.strip() for value in form.getlist(name) if isinstance(value, str)]


@router.post("/placement", response_class=HTMLResponse)
async def start_test(
    request: Request, ctx: ContextDep, session: SessionDep, discoverer: DiscovererDep
) -> Response:
    form = await request.form()
    kept: dict[str, Any] = {
        name: form_text(form, name)
        for name in ("name", "subject", "text", "delivery_mode", "timeout_minutes")
    }
    kept["senders"], kept["seeds"] = _chosen(form, "sender"), _chosen(form, "seed")
    try:
        body = PlacementTestIn.model_validate(
            {
                "name": kept["name"],
                "subject": kept["subject"],
                "text": form_text(form, "text") or None,
                "fromMailboxIds": kept["senders"],
                # None ticked: every active seed of the workspace, as the API's default.
                "seedMailboxIds": kept["seeds"] or None,
                "deliveryMode": kept["delivery_mode"] or DeliveryMode.TOGETHER.value,
                "timeoutMinutes": form_number(form, "timeout_minutes", 60),
            }
        )
        test = await placement.create_test(session, discoverer, ctx.workspace_id, body)
    except ValidationError as exc:
        message = validation_message(exc, TEST_LABELS)
        return await _new_form(request, ctx, session, kept, status_code=400, error=message)
    except MailfleetError as exc:
        await undo(session, ctx)
        return await _new_form(
            request, ctx, session, kept, status_code=exc.status_code, error=exc.message
        )
    return redirect(request, f"/placement/{test.id}", f"Placement test {test.name} started")


async def _results(ctx: ContextDep, session: SessionDep, test_id: str) -> dict[str, Any]:
    test = await placement.get_test(session, ctx.workspace_id, test_id)
    out = await placement.test_out(session, test)
    chart = bar_chart(
        "Inbox placement by provider, %",
        [(p.provider, round(p.inbox_rate)) for p in out.summary.providers],
    )
    return {"test": out, "chart": chart, "running": test.status in RUNNING}


@router.get("/placement/{test_id}", response_class=HTMLResponse)
async def placement_test(
    test_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    return render(request, "placement_test.html", ctx, **await _results(ctx, session, test_id))


@router.get("/placement/{test_id}/results", response_class=HTMLResponse)
async def placement_results(
    test_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    """The results alone, which htmx polls until the test completes."""
    return render(request, "_placement_results.html", ctx, **await _results(ctx, session, test_id))


@router.post("/placement/{test_id}/cancel")
async def cancel_test(
    test_id: str, request: Request, ctx: ContextDep, session: SessionDep
) -> Response:
    test = await placement.get_test(session, ctx.workspace_id, test_id)
    back = f"/placement/{test.id}"
    try:
        await placement.cancel_test(session, test)
    except MailfleetError as exc:
        await undo(session, ctx)
        return redirect(request, back, exc.message, "error")
    return redirect(request, back, f"Placement test {test.name} canceled")
