"""An HTTPS server on loopback standing in for autoconfig hosts and the ISPDB.

One server answers for every name a test points at 127.0.0.1 in the test DNS
zone: it routes on the Host header and the path, as virtual hosts do, and records
every request. Its certificate names only those host names (no IP address), so a
client that connects to a pinned address passes TLS only if it sends the name.

    server = ConfigServer(tls_context)   # or `with ConfigServer(...) as server:`
    server.route("autoconfig.acme.test", "/mail/config-v1.1.xml", Reply(body=xml))
    server.route("ispdb.test", "/v1.1/acme.test", Reply(hang=True))
    server.hits("autoconfig.acme.test")
"""

from __future__ import annotations

import contextlib
import socketserver
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["ConfigServer", "Reply", "Seen"]

# A hung handler is released when the test resets the server, or after this.
_MAX_HANG = 30.0


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    # Wait this long before answering.
    delay: float = 0.0
    # Read the request, then never answer.
    hang: bool = False
    # Send no Content-Length: the body ends when the connection closes.
    omit_length: bool = False


@dataclass(frozen=True)
class Seen:
    host: str  # the Host header without its port
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: ConfigServer

    def server_bind(self) -> None:
        # HTTPServer's own version asks for the FQDN of the address: a reverse
        # lookup these tests must not make.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that give up mid-handshake are what the timeout tests provoke.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 10

    def setup(self) -> None:
        # The handshake runs here, in this connection's own thread, so a client
        # that never finishes it cannot hold up the accept loop.
        self.request.settimeout(self.timeout)
        self.request = self.server.owner.tls.wrap_socket(self.request, server_side=True)
        super().setup()

    def do_GET(self) -> None:
        self.server.owner._handle(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class ConfigServer:
    def __init__(self, tls: ssl.SSLContext, host: str = "127.0.0.1") -> None:
        self.tls = tls
        self.host = host
        self.port = 0
        self.requests: list[Seen] = []
        self._routes: dict[tuple[str, str], Reply] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        server = _Server((self.host, 0), _Handler)
        server.owner = self
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._server = server

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> ConfigServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def route(self, host: str, path: str, reply: Reply) -> None:
        with self._lock:
            self._routes[(host.lower(), path)] = reply

    def reset(self) -> None:
        """Forget routes and requests, and let hung handlers go."""
        with self._lock:
            self._routes.clear()
            self.requests.clear()
            self._release.set()
            self._release = threading.Event()

    def hits(self, host: str, path: str | None = None) -> int:
        with self._lock:
            return sum(
                1 for seen in self.requests if seen.host == host and path in (None, seen.path)
            )

    def _handle(self, handler: _Handler) -> None:
        host = (handler.headers.get("host") or "").rsplit(":", 1)[0].lower()
        parts = urllib.parse.urlsplit(handler.path)
        seen = Seen(
            host=host,
            path=parts.path,
            query=urllib.parse.parse_qs(parts.query),
            headers={name.lower(): value for name, value in handler.headers.items()},
        )
        with self._lock:
            self.requests.append(seen)
            reply = self._routes.get((host, parts.path), Reply(404, b"not found"))
            release = self._release
        if reply.hang:
            release.wait(_MAX_HANG)
            handler.close_connection = True
            return
        if reply.delay:
            time.sleep(reply.delay)
        with contextlib.suppress(OSError):
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            if not reply.omit_length:
                handler.send_header("Content-Length", str(len(reply.body)))
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.wfile.write(reply.body)
        handler.close_connection = True
