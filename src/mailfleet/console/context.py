"""Who is using the console, in which workspace, and how pages are rendered."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.accounts import service as accounts
from mailfleet.config import Settings
from mailfleet.console import session as cookies
from mailfleet.deps import SessionDep
from mailfleet.kit.errors import MailfleetError, NotFound
from mailfleet.kit.pagination import Page
from mailfleet.models import ConsoleSession, User, Workspace
from mailfleet.workspaces import service as workspaces

TEMPLATES_DIR: Final = Path(__file__).parent / "templates"
STATIC_DIR: Final = Path(__file__).parent / "static"
templates: Final = Jinja2Templates(directory=TEMPLATES_DIR)
# POSTs a viewer may make: they change only their own session or password.
SESSION_ONLY_PATHS: Final = frozenset({"/logout", "/workspace", "/settings/password"})
# Extra room over the bulk upload limit for the multipart framing and the token.
FORM_OVERHEAD: Final = 64 * 1024


class LoginRequired(Exception):
    """No valid session: the page redirects to the login form."""


class ConsoleError(Exception):
    """A refusal the console shows as a page (403, 404, ...)."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message


@dataclass(frozen=True)
class ConsoleContext:
    request: Request
    user: User
    workspace: Workspace
    role: str
    workspaces: list[tuple[Workspace, str]]
    session: ConsoleSession

    @property
    def workspace_id(self) -> str:
        return self.workspace.id

    @property
    def can_write(self) -> bool:
        return self.role != "viewer"

    @property
    def can_manage(self) -> bool:
        return self.role in workspaces.MANAGE_ROLES

    def require_write(self) -> None:
        if not self.can_write:
            raise ConsoleError(403, "Viewers have read-only access to this workspace")


async def _presented_token(request: Request) -> str | None:
    header = request.headers.get(cookies.CSRF_HEADER)
    if header:
        return header
    settings: Settings = request.app.state.settings
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > settings.bulk_max_upload_bytes + FORM_OVERHEAD:
        raise ConsoleError(413, "The upload is too large (MAILFLEET_BULK_MAX_UPLOAD_BYTES)")
    form = await request.form(max_files=1, max_fields=50)
    value = form.get(cookies.CSRF_FIELD)
    return value if isinstance(value, str) else None


async def console_context(request: Request, session: SessionDep) -> ConsoleContext:
    """The signed-in user and their workspace; POSTs need the session's CSRF token
    and, except for the session's own changes, a role that may write."""
    current = await cookies.read_session(session, request)
    if current is None:
        raise LoginRequired
    user = await accounts.get_active_user(session, current.user_id)
    if user is None:
        raise LoginRequired
    if request.method not in ("GET", "HEAD") and not cookies.tokens_match(
        current.csrf, await _presented_token(request)
    ):
        raise ConsoleError(403, "The form's security token is missing or stale; reload the page")
    memberships, _ = await workspaces.list_member_workspaces(
        session, user.id, Page(limit=200, skip=0)
    )
    if not memberships:
        raise ConsoleError(403, "You are not a member of any workspace")
    chosen = current.workspace_id or user.default_workspace_id
    try:
        if chosen is None:
            raise NotFound("no workspace chosen")
        workspace, role = await workspaces.get_member_workspace(session, chosen, user.id)
    except NotFound:
        workspace, role = memberships[0]
    ctx = ConsoleContext(request, user, workspace, role, memberships, current)
    request.state.actor_id = user.id
    request.state.workspace_id = workspace.id
    if (
        request.method not in ("GET", "HEAD")
        and request.url.path not in SESSION_ONLY_PATHS
        and not ctx.can_write
    ):
        raise ConsoleError(403, "Viewers have read-only access to this workspace")
    return ctx


ContextDep = Annotated[ConsoleContext, Depends(console_context)]


async def undo(session: AsyncSession, ctx: ConsoleContext) -> None:
    """Take back what a refused action wrote before the service refused it: the
    request's transaction commits whatever page is shown in its place, and services
    flush as they go. The rows the page header reads are loaded again."""
    await session.rollback()
    for row in (ctx.user, ctx.workspace, ctx.session, *(w for w, _ in ctx.workspaces)):
        await session.refresh(row)


def render(
    request: Request,
    name: str,
    ctx: ConsoleContext | None = None,
    *,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    notice = cookies.read_flash(request)
    response = templates.TemplateResponse(
        request,
        name,
        {"ctx": ctx, "flash": notice, "csrf": ctx.session.csrf if ctx else None, **values},
        status_code=status_code,
    )
    if notice is not None:
        response.delete_cookie(cookies.FLASH_COOKIE, path="/")
    return response


def redirect(
    request: Request, url: str, message: str | None = None, kind: str = "notice"
) -> RedirectResponse:
    """After a POST: 303 to a page (which shows the message once)."""
    response = RedirectResponse(url, status_code=303)
    if message:
        cookies.flash(request, response, message, kind)
    return response


async def handle_login_required(request: Request, exc: Exception) -> Response:
    target = request.url.path
    if request.url.query:
        target += "?" + request.url.query
    location = "/login" + ("" if target == "/" else "?next=" + quote(target, safe=""))
    if request.headers.get("hx-request"):
        # htmx follows a redirect inside the fragment; this makes it load the page.
        return Response(status_code=204, headers={"hx-redirect": location})
    response = RedirectResponse(location, status_code=303)
    cookies.clear_session(response)
    return response


async def handle_console_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleError)
    return render(
        request,
        "error.html",
        status_code=exc.status_code,
        status=exc.status_code,
        message=exc.message,
    )


class ConsoleRoute(APIRoute):
    """Service errors (not found, conflict, refused) become an HTML page, not JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except MailfleetError as exc:
                raise ConsoleError(exc.status_code, exc.message) from exc

        return console_handler
