"""A sending platform faked at the HTTP boundary: a real HTTP server on loopback
that tests program per route and inspect afterwards.

It runs in background threads, so it answers Mailfleet's workflows on the test's
event loop (and subprocesses) alike.

    platform = FakePlatform()
    platform.route("POST", "/api/v2/accounts", Reply(200, {"id": "a1"}))
    platform.route("GET", "/status/*", lambda seen: Reply(200, {...}))  # a prefix
    platform.script("POST", "/api/v2/accounts", Reply(429, headers={"retry-after": "1"}))
    platform.requests("POST", "/api/v2/accounts")
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", "application/json"
        if isinstance(self.body, bytes):
            return self.body, self.headers.get("content-type", "application/octet-stream")
        if isinstance(self.body, str):
            return self.body.encode(), self.headers.get("content-type", "text/plain")
        return json.dumps(self.body).encode(), "application/json"


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


Handler = Callable[[Seen], Reply]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    platform: FakePlatform


class _RequestHandler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.platform._handle(self)

    do_POST = do_GET
    do_PUT = do_GET
    do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class FakePlatform:
    def __init__(self, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1") -> None:
        self.tls = tls
        self.host = host
        self._routes: dict[tuple[str, str], Handler] = {}
        self._scripts: dict[tuple[str, str], list[Reply]] = {}
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def route(self, method: str, path: str, answer: Reply | Handler) -> None:
        """Answer `method path` (a trailing * matches a prefix) with a reply or a handler."""
        handler: Handler = answer if callable(answer) else (lambda _seen, reply=answer: reply)
        self._routes[(method.upper(), path)] = handler

    def script(self, method: str, path: str, *replies: Reply) -> None:
        """Answer the next requests to exactly `method path` with these, then the route."""
        with self._lock:
            self._scripts.setdefault((method.upper(), path), []).extend(replies)

    def requests(self, method: str | None = None, path: str | None = None) -> list[Seen]:
        with self._lock:
            return [
                seen
                for seen in self._seen
                if (method is None or seen.method == method.upper())
                and (path is None or seen.path == path)
            ]

    def start(self) -> None:
        server = _Server(("127.0.0.1", 0), _RequestHandler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        server.platform = self
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakePlatform:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _handler_for(self, method: str, path: str) -> Handler | None:
        if (method, path) in self._routes:
            return self._routes[(method, path)]
        for (route_method, route_path), handler in self._routes.items():
            if (
                route_method == method
                and route_path.endswith("*")
                and path.startswith(route_path[:-1])
            ):
                return handler
        return None

    def _handle(self, request: _RequestHandler) -> None:
        length = int(request.headers.get("content-length") or 0)
        body = request.rfile.read(length) if length else b""
        parsed = urllib.parse.urlsplit(request.path)
        seen = Seen(
            method=request.command,
            path=parsed.path,
            query=dict(urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body,
            at=time.monotonic(),
        )
        with self._lock:
            self._seen.append(seen)
            scripted = self._scripts.get((seen.method, seen.path))
            reply = scripted.pop(0) if scripted else None
        if reply is None:
            handler = self._handler_for(seen.method, seen.path)
            reply = handler(seen) if handler else Reply(404, {"message": "Not Found"})
        content, content_type = reply.encoded()
        request.send_response(reply.status)
        headers = {"content-type": content_type, **reply.headers}
        for name, value in headers.items():
            request.send_header(name, value)
        request.send_header("content-length", str(len(content)))
        request.end_headers()
        request.wfile.write(content)
