"""A webhook receiver on loopback that tests program and inspect.

It answers each request with the next scripted `Reply` (then `default`), and
checks every request's Standard Webhooks signature with the same library
Mailfleet signs with, once `secret` is set. It runs in background threads, so it
serves Mailfleet's workflows on the test's event loop and subprocesses alike.

    receiver = HttpReceiver()               # or HttpReceiver(port=p) to start later:
    receiver.start()                        # until then, connections are refused
    receiver.script(500, 503)               # then `default` (204)
    receiver.script(Reply(302, {"location": "https://elsewhere.test/"}))
    await receiver.wait_for(3)
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError

__all__ = ["HttpReceiver", "Received", "Reply"]


@dataclass(frozen=True)
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # None when no secret was set; otherwise whether the signature verified.
    verified: bool | None
    verification_error: str | None
    status: int

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: HttpReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.receiver._handle(self)

    do_GET = do_POST
    do_PUT = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HttpReceiver:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.secret: str | None = None
        self.default = Reply()
        self.requests: list[Received] = []
        self._replies: list[Reply] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/hook", host: str | None = None) -> str:
        if not self.port:
            raise RuntimeError("start the receiver, or give it a port, before asking its URL")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host or self.host}:{self.port}{path}"

    def script(self, *replies: int | Reply) -> None:
        """Answer the next requests with these (a bare int is a status), then `default`."""
        with self._lock:
            self._replies.extend(Reply(r) if isinstance(r, int) else r for r in replies)

    def start(self) -> None:
        server = _Server((self.host, self.port), _Handler)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        server.receiver = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> HttpReceiver:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    async def wait_for(self, count: int, within: float = 30) -> list[Received]:
        """At least `count` requests, without blocking the loop Mailfleet's workflows run on."""
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"received {len(self.requests)} of {count} requests")
            await asyncio.sleep(0.02)
        return self.received()

    def wait_for_sync(self, count: int, within: float = 30) -> list[Received]:
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"received {len(self.requests)} of {count} requests")
            time.sleep(0.02)
        return self.received()

    def _handle(self, handler: _Handler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in handler.headers.items()}
        verified: bool | None = None
        problem: str | None = None
        if self.secret is not None:
            try:
                Webhook(self.secret).verify(body, headers)
                verified = True
            except WebhookVerificationError as exc:
                verified, problem = False, str(exc)
        with self._lock:
            reply = self._replies.pop(0) if self._replies else self.default
            self.requests.append(
                Received(
                    handler.command, handler.path, headers, body, verified, problem, reply.status
                )
            )
        handler.send_response(reply.status)
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.send_header("content-length", str(len(reply.body)))
        handler.end_headers()
        if reply.body:
            handler.wfile.write(reply.body)
