"""An SMTP server with AUTH on loopback: aiosmtpd's Controller in its own thread.

Three flavours, as mail providers offer them:
- ``plain``: no TLS at all, AUTH allowed in the clear;
- ``starttls``: plaintext greeting, STARTTLS required before AUTH (and before mail);
- ``ssl``: implicit TLS from the first byte (port 465 style).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers.common import unused_tcp_port

from .tls import LoopbackTLS

__all__ = ["SmtpMode", "SmtpServer"]

SmtpMode = Literal["plain", "starttls", "ssl"]

FailureReply = Callable[[str, str], str]
"""Builds the reply to a failed AUTH from (username, password), e.g. to echo a secret."""


class _Authenticator:
    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    def __call__(
        self,
        smtp: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        with self._server.lock:
            self._server.auth_attempts.append((mechanism, username))
            expected = self._server.users.get(username)
        if expected is not None and expected == password:
            return AuthResult(success=True, auth_data=auth_data)
        reply = self._server.failure_reply
        message = reply(username, password) if reply is not None else None
        return AuthResult(success=False, handled=False, message=message)


class _DiscardHandler:
    """Accepts messages and drops them, or hands them to the server's `deliver` when a
    test set one (the probes under test never send one). Counts QUITs."""

    def __init__(self, server: SmtpServer) -> None:
        self._server = server

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        deliver = self._server.deliver
        if deliver is None:
            return "250 2.0.0 OK: discarded"
        try:
            deliver(envelope)
        except Exception as exc:  # the test's delivery failed: the sender should retry
            return f"451 4.3.0 delivery failed: {type(exc).__name__}"
        return "250 2.0.0 OK: delivered"

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._server.lock:
            self._server.quits += 1
        return "221 Bye"


class SmtpServer:
    """An aiosmtpd server on `host`:`port` that authenticates against `users`.

    `users` is a live dict: add to it while the server runs. `auth_attempts` records
    (mechanism, username) for every AUTH the server saw; `quits` counts QUIT commands.
    `deliver`, when set, is called (in the server's thread) with each message accepted.
    """

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        mode: SmtpMode = "plain",
        tls: LoopbackTLS | None = None,
        host: str = "127.0.0.1",
        failure_reply: FailureReply | None = None,
    ) -> None:
        if mode != "plain" and tls is None:
            raise ValueError(f"SMTP mode {mode!r} needs a LoopbackTLS")
        self.users: dict[str, str] = dict(users or {})
        self.mode: SmtpMode = mode
        self.tls = tls
        self.host = host
        self.port = 0
        self.failure_reply = failure_reply
        self.auth_attempts: list[tuple[str, str]] = []
        self.quits = 0
        self.deliver: Callable[[Envelope], None] | None = None
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def start(self) -> None:
        if self._controller is not None:
            return
        options: dict[str, Any] = {}
        if self.mode == "starttls":
            assert self.tls is not None
            options.update(tls_context=self.tls.server_context(), require_starttls=True)
        elif self.mode == "ssl":
            assert self.tls is not None
            # aiosmtpd only counts STARTTLS as "TLS" for auth_require_tls; implicit
            # TLS is already encrypted, so AUTH must be allowed without it.
            options.update(ssl_context=self.tls.server_context(), auth_require_tls=False)
        else:
            options.update(auth_require_tls=False)
        self.port = unused_tcp_port(self.host)
        controller = Controller(
            _DiscardHandler(self),
            hostname=self.host,
            port=self.port,
            server_hostname="mx.mailfleet.test",
            authenticator=_Authenticator(self),
            **options,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
