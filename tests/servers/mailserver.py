"""Mailfleet's own mail server (`mailfleet mailserver run`) as a test server.

It runs the real command in a child process, with the test session's settings (its
database, keys and data dir), so Postfix, Dovecot and the DKIM filter read what the
API under test writes. It binds the real mail ports (25, 587, 465, 143, 993) on a
loopback address of its own (127.0.0.N, N >= 2): Mailfleet picks implicit TLS from
465/993, and Dovecot treats a client whose address equals the server's as secure,
so only a second address tests the TLS requirements.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from mailfleet.config import Settings
from tests.servers.common import server_unavailable, unused_tcp_port
from tests.servers.tls import LoopbackTLS

INSTALL_HINT = (
    "apt-get install postfix postfix-sqlite postfix-pgsql dovecot-imapd dovecot-lmtpd "
    "dovecot-sqlite dovecot-pgsql (or bash scripts/install-test-servers.sh)"
)
MAIL_PORTS = (25, 587, 465, 143, 993)
HOSTNAME = "mail.mailfleet-hosted.test"


def _free_loopback_address() -> str:
    """A 127.0.0.N on which every mail port is free (another run may hold some N)."""
    candidates = list(range(2, 255))
    random.shuffle(candidates)
    for n in candidates:
        address = f"127.0.0.{n}"
        try:
            for port in MAIL_PORTS:
                with socket.socket() as sock:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((address, port))
        except OSError:
            continue
        return address
    raise RuntimeError("no loopback address has the mail ports free")


def settings_environment(settings: Settings) -> dict[str, str]:
    """The test app's settings as MAILFLEET_ variables, for a child `mailfleet` process."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("MAILFLEET_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list):
            text = ",".join(str(item) for item in value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[f"MAILFLEET_{name.upper()}"] = text
    return env


class RelaySink:
    """The smarthost (MAILFLEET_MAIL_RELAYHOST) of the test mail server: it keeps what
    Postfix sends out, so mail forwarded outside the hosted domains can be checked."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[tuple[str, list[str], bytes]] = []
        sink = self

        class Handler:
            async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
                sink.messages.append(
                    (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
                )
                return "250 2.0.0 kept"

        self.port = unused_tcp_port()
        self._controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    def received(self, recipient: str, subject: str) -> bool:
        return any(
            recipient in rcpts and subject.encode() in content
            for _, rcpts, content in self.messages
        )


class HostedMailServer:
    def __init__(self, settings: Settings, tls: LoopbackTLS, workdir: Path) -> None:
        self.relay = RelaySink()
        self.settings = settings
        self.tls = tls
        self.workdir = workdir
        self.address = ""
        self.hostname = HOSTNAME
        self.cert_pem = workdir / "mail-cert.pem"
        self.key_pem = workdir / "mail-key.pem"
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "mailserver.log"

    def start(self) -> None:
        for binary in ("postfix", "dovecot"):
            if not (shutil.which(binary) or shutil.which(binary, path="/usr/sbin")):
                server_unavailable(f"{binary} not installed: {INSTALL_HINT}")
        if os.geteuid() != 0:
            server_unavailable("the hosted mail server tests need root (Postfix, Dovecot)")
        dialect = "sqlite" if self.settings.is_sqlite else "pgsql"
        if not Path(f"/usr/lib/dovecot/modules/auth/libdriver_{dialect}.so").exists():
            server_unavailable(f"dovecot-{dialect} is missing: {INSTALL_HINT}")
        postconf = shutil.which("postconf") or "/usr/sbin/postconf"
        tables = subprocess.run([postconf, "-m"], capture_output=True, text=True, check=False)
        if dialect not in tables.stdout.split():
            server_unavailable(f"postfix-{dialect} is missing: {INSTALL_HINT}")
        self.address = _free_loopback_address()
        leaf = self.tls.ca.issue_cert(self.hostname, self.address)
        self.cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(self.key_pem))
        self.key_pem.chmod(0o600)
        env = settings_environment(self.settings)
        env.update(
            MAILFLEET_MAIL_HOSTNAME=self.hostname,
            MAILFLEET_MAIL_TLS_CERT=str(self.cert_pem),
            MAILFLEET_MAIL_TLS_KEY=str(self.key_pem),
            MAILFLEET_MAIL_DKIM_FILTER_PORT=str(unused_tcp_port()),
            MAILFLEET_MAIL_REINJECT_PORT=str(unused_tcp_port()),
            MAILFLEET_MAIL_LISTEN=self.address,
            MAILFLEET_MAIL_RELAYHOST=f"[127.0.0.1]:{self.relay.port}",
        )
        self.relay.start()
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "mailfleet.cli", "mailserver", "run"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 90
        while not all(self._accepts(port) for port in MAIL_PORTS):
            if self._process.poll() is not None:
                raise RuntimeError(f"mailfleet mailserver run exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mail server did not start:\n{self.log_tail()}")
            time.sleep(0.2)

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((self.address, port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            self.relay.stop()
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        self.relay.stop()

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        run_dir = self.settings.resolved_data_dir / "mailserver" / "run"
        for path in (self.log_path, run_dir / "maillog", run_dir / "dovecot.log"):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            parts.append(f"--- {path.name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    def __enter__(self) -> HostedMailServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
