"""A third-party HTTP API faked on loopback: a threaded server on a free port that
hands each request to the fake's `_handle`. Subclasses answer; this holds the
serving, the URL and the context manager.

    class FakeThing(LoopbackHttpFake):
        def _handle(self, handler: FakeHandler) -> None:
            self._send(handler, 200, b"{}", "application/json")
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: LoopbackHttpFake


class FakeHandler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        pass


class LoopbackHttpFake:
    def __init__(self) -> None:
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._server = _Server(("127.0.0.1", 0), FakeHandler)
        self._server.fake = self
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: FakeHandler) -> None:
        raise NotImplementedError

    @staticmethod
    def _send(
        handler: FakeHandler,
        status: int,
        payload: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("content-type", content_type)
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.send_header("content-length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except OSError:
            pass  # the client went away (killed while it waited)
