"""The console's login session: a row on the server, named by a signed cookie,
and a CSRF token bound to it.

The cookie holds a random token, signed (HMAC) with a key derived from the login
token secret (MAILFLEET_JWT_SECRET or its generated file); the server keeps only
the token's SHA-256 digest (console_sessions), with the user, the chosen
workspace and the session's CSRF token. Signing out deletes the row, so a copy
of the cookie is worth nothing afterwards; a session ends when unused for
MAILFLEET_CONSOLE_IDLE_SECONDS and at the latest MAILFLEET_JWT_TTL_SECONDS after
sign-in. Every POST must carry the session's CSRF token (form field `csrf_token`
or header `x-csrf-token`): a page on another site can make the browser send the
cookie, never read the token. The login form, before any session exists, uses a
double-submit token instead.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any, Final

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import delete, or_
from sqlalchemy.ext.asyncio import AsyncSession

from mailfleet.config import Settings
from mailfleet.kit.clock import utcnow
from mailfleet.models import ConsoleSession

SESSION_COOKIE: Final = "mailfleet_session"
LOGIN_CSRF_COOKIE: Final = "mailfleet_login_csrf"
FLASH_COOKIE: Final = "mailfleet_flash"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
FLASH_MAX_AGE: Final = 60
SESSION_SALT: Final = "mailfleet.console.session"
# Writing last_seen_at on every request would serialise requests on SQLite; the
# idle limit is counted in hours, so a minute's precision is plenty.
LAST_SEEN_PRECISION: Final = timedelta(minutes=1)


def _serializer(request: Request, salt: str) -> URLSafeTimedSerializer:
    cached: dict[str, URLSafeTimedSerializer] | None = getattr(
        request.app.state, "console_serializers", None
    )
    if cached is None:
        cached = {}
        request.app.state.console_serializers = cached
    if salt not in cached:
        settings: Settings = request.app.state.settings
        # The salt separates these signatures from any other use of the secret.
        cached[salt] = URLSafeTimedSerializer(settings.jwt_signing_secret(), salt=salt)
    return cached[salt]


def _secure(request: Request) -> bool:
    settings: Settings = request.app.state.settings
    return settings.is_production or request.url.scheme == "https"


def _set(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


def session_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _presented_digest(request: Request) -> str | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    settings: Settings = request.app.state.settings
    try:
        token: Any = _serializer(request, SESSION_SALT).loads(raw, max_age=settings.jwt_ttl_seconds)
    except BadSignature:
        return None
    return session_digest(token) if isinstance(token, str) and token else None


def _expired(settings: Settings) -> Any:
    now = utcnow()
    return or_(
        ConsoleSession.expires_at <= now,
        ConsoleSession.last_seen_at <= now - timedelta(seconds=settings.console_idle_seconds),
    )


async def read_session(db: AsyncSession, request: Request) -> ConsoleSession | None:
    """The live session the cookie names; None when there is none, it was ended,
    or it expired (idle or absolute)."""
    digest = _presented_digest(request)
    if digest is None:
        return None
    row = await db.get(ConsoleSession, digest)
    if row is None:
        return None
    settings: Settings = request.app.state.settings
    now = utcnow()
    idle = timedelta(seconds=settings.console_idle_seconds)
    if row.expires_at <= now or row.last_seen_at + idle <= now:
        return None
    if now - row.last_seen_at >= LAST_SEEN_PRECISION:
        row.last_seen_at = now
        await db.flush()
    return row


async def open_session(
    db: AsyncSession,
    request: Request,
    response: Response,
    user_id: str,
    workspace_id: str | None,
) -> ConsoleSession:
    """A new session for a user who just signed in, and its cookie on the response."""
    settings: Settings = request.app.state.settings
    # Sessions nobody came back to are cleared here, the one place sessions are made.
    await db.execute(
        delete(ConsoleSession)
        .where(_expired(settings))
        .execution_options(synchronize_session=False)
    )
    token = secrets.token_urlsafe(32)
    now = utcnow()
    row = ConsoleSession(
        id=session_digest(token),
        user_id=user_id,
        workspace_id=workspace_id,
        csrf=new_token(),
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=settings.jwt_ttl_seconds),
    )
    db.add(row)
    await db.flush()
    value = _serializer(request, SESSION_SALT).dumps(token)
    _set(request, response, SESSION_COOKIE, value, settings.jwt_ttl_seconds)
    return row


async def end_session(db: AsyncSession, row: ConsoleSession, response: Response) -> None:
    """Sign out: the row goes, so every copy of the cookie stops working."""
    await db.delete(row)
    await db.flush()
    clear_session(response)


def clear_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(expected: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(expected.encode(), (presented or "").encode())


def login_csrf(request: Request) -> str:
    """The login form's token: the cookie's if the browser has one, else a new one."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or new_token()


def set_login_csrf(request: Request, response: Response, token: str) -> None:
    _set(request, response, LOGIN_CSRF_COOKIE, token, 3600)


def flash(request: Request, response: Response, message: str, kind: str = "notice") -> None:
    """A message shown once on the next page (after a redirect)."""
    value = _serializer(request, "mailfleet.console.flash").dumps({"m": message, "k": kind})
    _set(request, response, FLASH_COOKIE, value, FLASH_MAX_AGE)


def read_flash(request: Request) -> tuple[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data: Any = _serializer(request, "mailfleet.console.flash").loads(
            raw, max_age=FLASH_MAX_AGE
        )
    except BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    return str(data.get("k", "notice")), str(data.get("m", ""))
