"""A private Dovecot IMAP server on loopback, configured from scratch in a temp dir.

Needs Debian's dovecot-imapd and root: Dovecot drops to the ``dovecot`` and
``dovenull`` users, so the temp dir is root-owned 0755 and its mail/ and home/
belong to ``dovecot``. One plaintext listener (which also offers STARTTLS when TLS
is configured) and, with TLS, one implicit-TLS listener, both on 127.0.0.1.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tests.servers.common import server_unavailable, unused_tcp_port

from .tls import LoopbackTLS

__all__ = ["DEFAULT_FOLDERS", "DovecotServer", "dovecot_binary", "server_unavailable"]

INSTALL_HINT = "apt-get install dovecot-imapd"

# Created for every user at login, so a LIST has more to show than INBOX: a name
# with a space (quoted on the wire) and one outside ASCII (modified UTF-7 on the wire).
DEFAULT_FOLDERS = ("INBOX", "Drafts", "Sent", "Trash", "Sent Items", "Éléments envoyés")


def dovecot_binary() -> str:
    """The dovecot executable, or skip/fail: /usr/sbin is not on every user's PATH."""
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        server_unavailable(f"dovecot not installed: {INSTALL_HINT}")
    if os.geteuid() != 0:
        server_unavailable("the Dovecot test server must run as root (it switches users)")
    return found


# Every test client comes from 127.0.0.1, so Dovecot's per-IP auth penalty would
# hold the next good login for seconds after any test of a wrong password. An
# unreachable penalty socket turns the penalty off (auth shrugs and goes on).
_NO_AUTH_PENALTY = """\
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
"""


class DovecotServer:
    """Dovecot in the foreground as our child process, so stopping it is a plain wait."""

    def __init__(
        self,
        users: Mapping[str, str] | None = None,
        *,
        tls: LoopbackTLS | None = None,
        host: str = "127.0.0.1",
        auth_penalty: bool = False,
        startup_timeout: float = 20.0,
    ) -> None:
        """`auth_penalty=True` keeps Dovecot's per-IP slowdown after failed logins,
        for tests that want a provider's real behaviour rather than speed."""
        self.host = host
        self.auth_penalty = auth_penalty
        self.tls = tls
        self.port = 0
        self.ssl_port: int | None = None
        self.users: dict[str, str] = {}
        self.startup_timeout = startup_timeout
        self.directory: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        for username, password in (users or {}).items():
            self._check_user(username, password)
            self.users[username] = password

    @property
    def pid(self) -> int | None:
        """The Dovecot master's process id while it runs (it forks the logins)."""
        return self._process.pid if self._process is not None else None

    @property
    def config_path(self) -> Path:
        return self._dir / "dovecot.conf"

    @property
    def log_path(self) -> Path:
        return self._dir / "dovecot.log"

    @property
    def _dir(self) -> Path:
        if self.directory is None:
            raise RuntimeError("DovecotServer is not started")
        return self.directory

    def add_user(self, username: str, password: str) -> None:
        """Add a user (usable at once) or change a password (takes about a second)."""
        self.add_users({username: password})

    def add_users(self, users: Mapping[str, str]) -> None:
        """Add or update many users; writing thousands takes well under a second."""
        for username, password in users.items():
            self._check_user(username, password)
        self.users.update(users)
        if self.directory is not None:
            self._write_users(users)

    def start(self) -> None:
        if self._process is not None:
            return
        binary = dovecot_binary()
        directory = Path(tempfile.mkdtemp(prefix="mailfleet-dovecot-"))
        self.directory = directory
        try:
            directory.chmod(0o755)
            for name in ("mail", "home"):
                (directory / name).mkdir()
                shutil.chown(directory / name, "dovecot", "dovecot")
            self.port = unused_tcp_port(self.host)
            self.ssl_port = unused_tcp_port(self.host) if self.tls is not None else None
            self._write_users()
            self.config_path.write_text(self._config())
            with self.log_path.open("ab") as early_log:
                self._process = subprocess.Popen(
                    [binary, "-F", "-c", str(self.config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=early_log,
                    stderr=subprocess.STDOUT,
                )
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, RuntimeError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> DovecotServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _check_user(username: str, password: str) -> None:
        # The name is a passwd-file key and a file name; the password is base64
        # encoded, so only the name has to keep out of the way of either syntax.
        if (
            not username
            or any(ch in username for ch in ":/\\\r\n\0")
            or username.startswith((".", "#"))
        ):
            raise ValueError(f"username not usable in a passwd-file: {username!r}")

    def _write_users(self, changed: Mapping[str, str] | None = None) -> None:
        """Write one passwd-file per user (all of them, or just `changed`).

        One file per user, not one for all: Dovecot checks a passwd-file for changes
        at most once a second, so a user appended to a shared file could stay
        unknown for up to a second after any other login. A new user's file is read
        fresh at its first login.
        """
        folder = self._dir / "passwd"
        if not folder.exists():
            folder.mkdir(mode=0o750)
            shutil.chown(folder, "root", "dovecot")
        replaced = False
        for username, password in (self.users if changed is None else changed).items():
            path = folder / username
            encoded = base64.b64encode(password.encode()).decode("ascii")
            line = f"{username}:{{PLAIN.B64}}{encoded}\n"
            old: os.stat_result | None = None
            if path.exists():
                if path.read_text() == line:
                    continue
                old = path.stat()
                replaced = True
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(line)
            shutil.chown(tmp, "root", "dovecot")
            tmp.chmod(0o640)
            if old is not None:
                # Dovecot rereads when the mtime (whole seconds) or the size differs.
                bumped = max(time.time_ns(), old.st_mtime_ns + 1_000_000_000)
                os.utime(tmp, ns=(bumped, bumped))
            os.replace(tmp, path)
        if replaced:
            # ...and it looks at most once a second, so let the current second pass.
            time.sleep(1.05)

    def _config(self) -> str:
        d = self._dir
        if self.tls is not None:
            ssl = f"ssl = yes\nssl_cert = <{self.tls.cert_pem}\nssl_key = <{self.tls.key_pem}\n"
        else:
            ssl = "ssl = no\n"
        mailboxes = "".join(
            f'  mailbox "{name}" {{\n    auto = subscribe\n{use}  }}\n'
            for name, use in (
                ("Drafts", "    special_use = \\Drafts\n"),
                ("Sent", "    special_use = \\Sent\n"),
                ("Trash", "    special_use = \\Trash\n"),
                ("Sent Items", ""),
                ("Éléments envoyés", ""),
            )
        )
        penalty = "" if self.auth_penalty else _NO_AUTH_PENALTY
        return f"""\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
instance_name = {d.name}
protocols = imap
listen = {self.host}
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain login
# Failed logins are tested on purpose; the default 2 s delay would only slow them
# (Dovecot still answers failures on a 0.5 s timer).
auth_failure_delay = 0
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:{d}/mail/%u
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd/%u
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={d}/home/%u
}}
{penalty}service imap-login {{
  inet_listener imap {{
    port = {self.port}
  }}
  inet_listener imaps {{
    port = {self.ssl_port or 0}
    ssl = yes
  }}
  # One long-lived login process serves every connection instead of forking per
  # login, which keeps bulk-login tests fast.
  service_count = 0
  process_min_avail = 1
}}
# A logged-in client's imap process serves the next one when it is done, instead of
# a fork and exec per login: 2 to 3 ms of CPU per login instead of 8 to 9, which
# the bulk-connect bench would otherwise count against the machine's two cores.
# Every user maps to one uid, so a process may serve any of them.
service imap {{
  service_count = 0
  process_min_avail = 2
}}
"""

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        ports = [self.port] + ([self.ssl_port] if self.ssl_port else [])
        while True:
            process = self._process
            if process is None or process.poll() is not None:
                raise RuntimeError(f"dovecot exited during startup:\n{self.log_tail()}")
            if all(self._accepts(port) for port in ports):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"dovecot did not listen on {ports} within {self.startup_timeout}s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.05)

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=1.0):
                return True
        except OSError:
            return False
