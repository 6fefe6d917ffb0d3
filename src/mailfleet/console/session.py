"""The console's login session: a signed cookie, and a CSRF token bound to it.

The cookie holds the user id, the chosen workspace and the session's CSRF
token, signed (HMAC) with a key derived from the login token secret
(MAILFLEET_JWT_SECRET or its generated file), so no new secret is needed; it
expires with the same lifetime as a login token. Every POST must carry the
session's CSRF token (form field `csrf_token` or header `x-csrf-token`): a page
on another site can make the browser send the cookie, never read the token.
The login form, before any session exists, uses a double-submit token instead.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any, Final

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from mailfleet.config import Settings

SESSION_COOKIE: Final = "mailfleet_session"
LOGIN_CSRF_COOKIE: Final = "mailfleet_login_csrf"
FLASH_COOKIE: Final = "mailfleet_flash"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
FLASH_MAX_AGE: Final = 60


@dataclass(frozen=True)
class ConsoleSession:
    user_id: str
    workspace_id: str | None
    csrf: str


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


def read_session(request: Request) -> ConsoleSession | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    settings: Settings = request.app.state.settings
    try:
        data: Any = _serializer(request, "mailfleet.console.session").loads(
            raw, max_age=settings.jwt_ttl_seconds
        )
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("u"), str):
        return None
    csrf = data.get("c")
    workspace = data.get("w")
    if not isinstance(csrf, str):
        return None
    return ConsoleSession(
        user_id=data["u"],
        workspace_id=workspace if isinstance(workspace, str) else None,
        csrf=csrf,
    )


def write_session(request: Request, response: Response, session: ConsoleSession) -> None:
    settings: Settings = request.app.state.settings
    value = _serializer(request, "mailfleet.console.session").dumps(
        {"u": session.user_id, "w": session.workspace_id, "c": session.csrf}
    )
    _set(request, response, SESSION_COOKIE, value, settings.jwt_ttl_seconds)


def new_session(user_id: str, workspace_id: str | None) -> ConsoleSession:
    return ConsoleSession(user_id=user_id, workspace_id=workspace_id, csrf=new_token())


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
