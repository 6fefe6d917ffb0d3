"""A small real mail network on loopback: submission SMTP -> LMTP -> Dovecot.

- `SieveDovecot`: Dovecot (tests/servers/dovecot.py) with a Junk folder flagged
  SPECIAL-USE \\Junk, an LMTP listener, and Sieve (Debian's dovecot-sieve and
  dovecot-lmtpd) running a global script before delivery, so a test can have a
  "provider" file some senders' mail into Junk.
- `SubmissionServer`: aiosmtpd with AUTH (against the same users as Dovecot)
  that hands each accepted message to Dovecot over LMTP before answering 250,
  so a message accepted is a message in the recipient's folders. It records
  every envelope it accepted. A `transform` may rewrite each message on the way
  (sign it, add the receiving side's Authentication-Results), as an MTA would.
"""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers.common import server_unavailable, unused_tcp_port
from tests.servers.dovecot import DovecotServer
from tests.servers.tls import LoopbackTLS

__all__ = ["Delivery", "SieveDovecot", "SubmissionServer", "Transform"]

# (login, envelope sender, recipients, message) -> the message to deliver.
Transform = Callable[[str, str, list[str], bytes], bytes]

_SIEVE_HINT = "apt-get install dovecot-lmtpd dovecot-sieve"


class SieveDovecot(DovecotServer):
    """Dovecot with LMTP on `lmtp_port` and a global Sieve script (`junk_senders`
    are filed into Junk). Change the senders with `set_junk_senders`, and put
    rules of your own first with `set_extra_rules` (e.g. a `discard`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lmtp_port = 0
        self.junk_senders: list[str] = []
        self.extra_rules = ""

    def start(self) -> None:
        for module in ("lib90_sieve_plugin.so",):
            if not (Path("/usr/lib/dovecot/modules") / module).exists():
                server_unavailable(f"Dovecot Sieve not installed: {_SIEVE_HINT}")
        if not Path("/usr/lib/dovecot/lmtp").exists():
            server_unavailable(f"Dovecot LMTP not installed: {_SIEVE_HINT}")
        self.lmtp_port = unused_tcp_port(self.host)
        super().start()

    @property
    def sieve_path(self) -> Path:
        return self._dir / "sieve" / "before.sieve"

    def set_junk_senders(self, senders: list[str]) -> None:
        """File messages from these addresses into Junk from now on."""
        self.junk_senders = list(senders)
        self._write_sieve()

    def set_extra_rules(self, rules: str) -> None:
        """Sieve rules run before the Junk ones (`require` "fileinto" is given)."""
        self.extra_rules = rules
        self._write_sieve()

    def _write_sieve(self) -> None:
        folder = self.sieve_path.parent
        folder.mkdir(exist_ok=True)
        shutil.chown(folder, "dovecot", "dovecot")
        rules = "".join(
            f'if address :is "from" "{sender}" {{\n  fileinto "Junk";\n  stop;\n}}\n'
            for sender in self.junk_senders
        )
        self.sieve_path.write_text(f'require ["fileinto"];\n{self.extra_rules}{rules}')
        shutil.chown(self.sieve_path, "dovecot", "dovecot")
        # Dovecot recompiles when the script is newer than its binary.
        compiled = self.sieve_path.with_suffix(".svbin")
        compiled.unlink(missing_ok=True)

    def _config(self) -> str:
        self._write_sieve()
        base = super()._config()
        base = base.replace("protocols = imap\n", "protocols = imap lmtp\n", 1)
        junk = "  mailbox Junk {\n    auto = subscribe\n    special_use = \\Junk\n  }\n"
        base = base.replace(
            "namespace inbox {\n  inbox = yes\n  separator = /\n",
            "namespace inbox {\n  inbox = yes\n  separator = /\n" + junk,
            1,
        )
        return (
            base
            + f"""\
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
}}
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
  postmaster_address = postmaster@mailnet.test
}}
lmtp_save_to_detail_mailbox = no
plugin {{
  sieve_before = {self.sieve_path}
  sieve = file:{self._dir}/sieve/users/%u;active={self._dir}/sieve/users/%u.sieve
}}
"""
        )

    def _wait_until_listening(self) -> None:
        super()._wait_until_listening()
        ports_ok = self._accepts(self.lmtp_port)
        if not ports_ok:
            raise RuntimeError(f"dovecot LMTP not listening:\n{self.log_tail()}")


@dataclass(frozen=True)
class Delivery:
    login: str
    mail_from: str
    rcpt_tos: tuple[str, ...]


class _Authenticator:
    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = users

    def __call__(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        username = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        if self.users.get(username) == password:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)


class _LmtpRelay:
    def __init__(self, server: SubmissionServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        login = ""
        if isinstance(session.auth_data, LoginPassword):
            login = session.auth_data.login.decode("utf-8", "replace")
        content = envelope.original_content or b""
        mail_from = envelope.mail_from or ""
        rcpt_tos = list(envelope.rcpt_tos)
        if self.server.transform is not None:
            content = await asyncio.to_thread(
                self.server.transform, login, mail_from, rcpt_tos, content
            )
        refused = await asyncio.to_thread(self.server.deliver, mail_from, rcpt_tos, content)
        with self.server.lock:
            self.server.deliveries.append(Delivery(login, mail_from, tuple(rcpt_tos)))
        if refused:
            return f"550 5.1.1 LMTP refused: {refused}"
        return "250 2.0.0 delivered"


class SubmissionServer:
    """Submission with AUTH (plain, or STARTTLS with `tls`) delivering over LMTP."""

    def __init__(
        self,
        dovecot: SieveDovecot,
        *,
        tls: LoopbackTLS | None = None,
        host: str = "127.0.0.1",
        transform: Transform | None = None,
    ) -> None:
        self.dovecot = dovecot
        self.transform = transform
        self.tls = tls
        self.host = host
        self.port = 0
        self.deliveries: list[Delivery] = []
        self.lock = threading.Lock()
        self._controller: Controller | None = None

    def deliver(self, mail_from: str, rcpt_tos: list[str], content: bytes) -> dict[str, Any]:
        with smtplib.LMTP(self.dovecot.host, self.dovecot.lmtp_port, timeout=30) as lmtp:
            lmtp.ehlo("submission.mailnet.test")
            try:
                refused = lmtp.sendmail(mail_from, rcpt_tos, content)
            except smtplib.SMTPRecipientsRefused as exc:
                return dict(exc.recipients)
            except smtplib.SMTPDataError as exc:
                return {"*": (exc.smtp_code, exc.smtp_error)}
        return dict(refused)

    def start(self) -> None:
        if self._controller is not None:
            return
        options: dict[str, Any] = {"auth_require_tls": False}
        if self.tls is not None:
            options = {"tls_context": self.tls.server_context(), "require_starttls": True}
        self.port = unused_tcp_port(self.host)
        controller = Controller(
            _LmtpRelay(self),
            hostname=self.host,
            port=self.port,
            server_hostname="submission.mailnet.test",
            # The live dict: a password changed in Dovecot is changed here too.
            authenticator=_Authenticator(self.dovecot.users),
            **options,
        )
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def recipients(self) -> list[str]:
        with self.lock:
            return [rcpt for delivery in self.deliveries for rcpt in delivery.rcpt_tos]

    def __enter__(self) -> SubmissionServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
