"""`mailfleet mailserver run`: Postfix, Dovecot and the DKIM filter in the foreground.

The configuration is generated under the data dir at every start (so it follows
the settings), Postfix's queue and Dovecot's state live in a private run dir, and
SIGTERM or Ctrl-C stops all three cleanly. Needs root: Postfix and Dovecot switch
users, and the mail ports are privileged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import grp
import logging
import os
import pwd
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

from mailfleet.config import Settings, SettingsError
from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.mailserver import storage
from mailfleet.mailserver.config import MailServerConfig, Ports, config_from_settings, write_config
from mailfleet.mailserver.dkimfilter import start_filter
from mailfleet.migrate import upgrade_database

log = logging.getLogger(__name__)

PURGE_INTERVAL = 600.0
INSTALL_HINT = (
    "apt-get install postfix postfix-sqlite postfix-pgsql dovecot-imapd dovecot-lmtpd "
    "dovecot-sqlite dovecot-pgsql"
)


class MailServerError(Exception):
    """The mail server cannot start; the message says why and what to do."""


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise MailServerError(f"{name} is not installed: {INSTALL_HINT}")
    return found


def mail_user(settings: Settings) -> str:
    """The owner of mail storage: MAILFLEET_MAIL_USER, else Dovecot's own user."""
    for name in (settings.mail_user, "dovecot"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise MailServerError(f"no system user {settings.mail_user!r}: useradd --system vmail")


def ensure_tls_pair(settings: Settings) -> tuple[Path, Path]:
    """The configured certificate and key, or (outside production) a self-signed pair
    for the mail host name, generated once into the data dir."""
    if settings.mail_tls_cert and settings.mail_tls_key:
        return settings.mail_tls_cert, settings.mail_tls_key
    if settings.is_production:
        raise SettingsError(
            "MAILFLEET_MAIL_TLS_CERT and MAILFLEET_MAIL_TLS_KEY are required in production"
        )
    directory = settings.resolved_data_dir / "mail-tls"
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    host = settings.mail_host
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(private, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


@dataclass
class RunOptions:
    listen: str | None = None
    ports: Ports | None = None


class EmbeddedMailServer:
    """Postfix and Dovecot as children of this process, plus the DKIM filter."""

    def __init__(self, settings: Settings, options: RunOptions | None = None) -> None:
        self.settings = settings
        self.options = options or RunOptions()
        base = settings.resolved_data_dir / "mailserver"
        self.config_dir = base / "config"
        self.run_dir = base / "run"
        self.config: MailServerConfig | None = None
        self._dovecot: subprocess.Popen[bytes] | None = None
        self._postfix: subprocess.Popen[bytes] | None = None
        self._filter: asyncio.Server | None = None
        self._database: Database | None = None

    def prepare(self) -> MailServerConfig:
        if os.geteuid() != 0:
            raise MailServerError("mailfleet mailserver run needs root (Postfix and Dovecot)")
        for name in ("postfix", "dovecot"):
            _binary(name)
        owner = mail_user(self.settings)
        cert, key = ensure_tls_pair(self.settings)
        config = config_from_settings(
            self.settings,
            self.config_dir,
            listen=self.options.listen,
            ports=self.options.ports,
            run_dir=self.run_dir,
            tls_cert=cert,
            tls_key=key,
            mail_user=owner,
        )
        # The data dir holds the database and keys: root-only, but traversable so
        # the storage and sockets below it can be reached by their owners.
        self.settings.resolved_data_dir.chmod(0o711)
        for directory in (self.run_dir.parent, self.run_dir, config.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o755)
        (self.run_dir / "queue").mkdir(exist_ok=True)
        data = self.run_dir / "data"
        data.mkdir(exist_ok=True)
        shutil.chown(data, "postfix", "postfix")
        storage = config.storage
        storage.mkdir(parents=True, exist_ok=True)
        shutil.chown(storage, owner, grp.getgrgid(pwd.getpwnam(owner).pw_gid).gr_name)
        storage.chmod(0o700)
        write_config(config)
        self.config = config
        return config

    async def start(self) -> None:
        config = self.prepare()
        self._database = Database.from_settings(self.settings)
        # The views Postfix and Dovecot read come with the migrations; a server
        # started before `mailfleet serve` ever ran still finds them.
        await upgrade_database(self._database)
        keyring = Keyring(self.settings.secret_keyring_entries())
        self._filter = await start_filter(
            self._database, keyring, config.filter_port, config.reinject_port
        )
        self._dovecot = self._spawn(
            "dovecot", ["-F", "-c", str(config.dovecot_dir / "dovecot.conf")]
        )
        self._postfix = self._spawn("postfix", ["-c", str(config.postfix_dir), "start-fg"])
        await self._wait_until_listening(config)
        log.info(
            "mail server for %s listening on %s (smtp %d, submission %d, smtps %d, "
            "imap %d, imaps %d)",
            config.hostname,
            config.listen,
            config.ports.smtp,
            config.ports.submission,
            config.ports.smtps,
            config.ports.imap,
            config.ports.imaps,
        )

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.run_dir / f"{name}-start.log").open("ab") as early_log:
            return subprocess.Popen(  # noqa: S603 - fixed arguments
                [_binary(name), *args],
                preexec_fn=_die_with_parent,
                stdin=subprocess.DEVNULL,
                stdout=early_log,
                stderr=subprocess.STDOUT,
            )

    async def _wait_until_listening(self, config: MailServerConfig) -> None:
        timeout = 60.0
        host = "127.0.0.1" if config.listen in ("0.0.0.0", "*", "") else config.listen  # noqa: S104
        ports = [
            config.ports.smtp,
            config.ports.submission,
            config.ports.smtps,
            config.ports.imap,
            config.ports.imaps,
        ]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for name, process in (("dovecot", self._dovecot), ("postfix", self._postfix)):
                if process is None or process.poll() is not None:
                    raise MailServerError(f"{name} exited during start-up:\n{self.log_tail()}")
            if all([await _accepts(host, port) for port in ports]):
                return
            if loop.time() > deadline:
                raise MailServerError(f"not listening on {ports} after {timeout}s")
            await asyncio.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        texts = []
        for name in ("postfix-start.log", "maillog", "dovecot-start.log", "dovecot.log"):
            with contextlib.suppress(OSError):
                text = (self.run_dir / name).read_text(errors="replace")
                texts.append(f"--- {name}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(texts)

    async def purge_loop(self) -> None:
        while True:
            try:
                assert self._database is not None
                async with self._database.transaction() as session:
                    removed = await storage.purge_due_mail(
                        session, self.settings.resolved_mail_storage_dir
                    )
                if removed:
                    log.info("removed the mail of %d deleted mailboxes", removed)
            except Exception:
                log.exception("purging deleted mailboxes' mail failed; will retry")
            await asyncio.sleep(PURGE_INTERVAL)

    async def stop(self) -> None:
        if self._filter is not None:
            self._filter.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._filter.wait_closed(), 5)
            self._filter = None
        if self._postfix is not None and self.config is not None:
            if self._postfix.poll() is None:
                await asyncio.to_thread(
                    subprocess.run,
                    [_binary("postfix"), "-c", str(self.config.postfix_dir), "stop"],
                    check=False,
                    capture_output=True,
                )
            await asyncio.to_thread(_wait_or_kill, self._postfix)
            self._postfix = None
        if self._dovecot is not None:
            if self._dovecot.poll() is None:
                self._dovecot.terminate()
            await asyncio.to_thread(_wait_or_kill, self._dovecot)
            self._dovecot = None
        if self._database is not None:
            await self._database.dispose()
            self._database = None


def _die_with_parent() -> None:
    """In the child: a SIGTERM when this process dies, however it dies (even SIGKILL),
    so no Postfix or Dovecot outlives `mailserver run`."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _wait_or_kill(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()
    return True


async def run_until_stopped(server: EmbeddedMailServer, stop: asyncio.Event) -> None:
    await server.start()
    purge = asyncio.create_task(server.purge_loop())
    try:
        await stop.wait()
    finally:
        purge.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await purge
        await server.stop()
