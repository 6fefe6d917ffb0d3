"""Domain forwarding: Mailfleet answers HTTP for forwarded domains with a redirect.

A forwarded domain's A record points at Mailfleet (MAILFLEET_PUBLIC_IP). The
middleware looks the request's Host up in a table of forwarded domains held in
memory; any other Host (the API's own, an IP, anything unknown) passes through to
the API untouched. The table is reloaded when this process changes a forwarding
and at most `CACHE_SECONDS` after another process did.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger(__name__)

CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class Forward:
    url: str
    permanent: bool
    keep_path: bool

    def location(self, raw_path: str, query: str) -> str:
        if not self.keep_path:
            return self.url
        base = self.url.rstrip("/") if raw_path.startswith("/") else self.url
        return base + raw_path + (f"?{query}" if query else "")


class ForwardingTable:
    def __init__(self) -> None:
        self._entries: dict[str, Forward] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")

    async def lookup(self, host: str, database: Any) -> Forward | None:
        if time.monotonic() - self._loaded_at > CACHE_SECONDS:
            async with self._lock:
                if time.monotonic() - self._loaded_at > CACHE_SECONDS:
                    await self._load(database)
        return self._entries.get(host)

    async def _load(self, database: Any) -> None:
        from mailfleet.models import Domain

        try:
            async with database.sessionmaker() as session:
                rows = await session.execute(
                    select(
                        Domain.name,
                        Domain.forward_url,
                        Domain.forward_permanent,
                        Domain.forward_keep_path,
                    ).where(Domain.forward_url.is_not(None))
                )
                self._entries = {
                    name: Forward(url, permanent, keep_path)
                    for name, url, permanent, keep_path in rows
                }
        except Exception:
            # A database hiccup must not take the API down with it: keep serving the
            # table we have, and try again on a later request.
            log.exception("could not load the domain forwarding table")
        self._loaded_at = time.monotonic()


table = ForwardingTable()


async def invalidate() -> None:
    """Reload the table on the next request (run after a forwarding change commits)."""
    table.invalidate()


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            text = bytes(value).decode("latin-1").strip().lower()
            if text.startswith("["):
                return ""  # an IPv6 literal is never a forwarded domain
            return text.rsplit(":", 1)[0].rstrip(".")
    return ""


class DomainForwardingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = _host(scope)
        application = scope.get("app")
        database = getattr(getattr(application, "state", None), "database", None)
        forward = await table.lookup(host, database) if host and database else None
        if forward is None:
            await self.app(scope, receive, send)
            return
        raw_path: bytes = scope.get("raw_path") or str(scope.get("path", "/")).encode()
        query: bytes = scope.get("query_string", b"")
        location = forward.location(raw_path.decode("latin-1"), query.decode("latin-1"))
        await send(
            {
                "type": "http.response.start",
                "status": 301 if forward.permanent else 302,
                "headers": [
                    (b"location", location.encode("latin-1", errors="replace")),
                    (b"content-length", b"0"),
                    (b"cache-control", b"no-store" if not forward.permanent else b"max-age=3600"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})
