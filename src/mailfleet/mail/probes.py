"""Real SMTP and IMAP connection tests: connect, authenticate, look around, leave.

Background mailbox verification calls these. A probe does not raise for anything
the network or the server does: it returns a `ProbeResult` whose `code` names the
failure in one word and whose `message` explains it, quoting the server's reply
when there is one. The password never appears in a result, whatever the server
echoes back.

Every probe passes the network guard first and then connects to an address the
guard returned, never to the name again (a second lookup could be rebound to a
private address). TLS still checks the certificate against the host name given.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
import socket
import ssl
import time
import traceback
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, cast

import aioimaplib
import aiosmtplib

from mailfleet.kit.netguard import IPAddress, NetguardError, guard_host
from mailfleet.kit.tls import client_context

__all__ = [
    "AUTH_FAILED",
    "CONNECTION_REFUSED",
    "FORBIDDEN_TARGET",
    "HOST_NOT_FOUND",
    "PROTOCOL_ERROR",
    "TIMEOUT",
    "TLS_ERROR",
    "ImapSettings",
    "ListEntry",
    "ProbeCode",
    "ProbeOptions",
    "ProbeProtocol",
    "ProbeResult",
    "Security",
    "SmtpSettings",
    "decode_mailbox_name",
    "list_entries",
    "parse_list_response",
    "probe_imap",
    "probe_logins",
    "probe_smtp",
    "security_for",
]

logger = logging.getLogger(__name__)

Security = Literal["ssl", "starttls", "none"]
ProbeProtocol = Literal["smtp", "imap"]
ProbeCode = Literal[
    "AUTH_FAILED",
    "CONNECTION_REFUSED",
    "TIMEOUT",
    "TLS_ERROR",
    "HOST_NOT_FOUND",
    "PROTOCOL_ERROR",
    "FORBIDDEN_TARGET",
]

AUTH_FAILED: Final = "AUTH_FAILED"
CONNECTION_REFUSED: Final = "CONNECTION_REFUSED"
TIMEOUT: Final = "TIMEOUT"
TLS_ERROR: Final = "TLS_ERROR"
HOST_NOT_FOUND: Final = "HOST_NOT_FOUND"
PROTOCOL_ERROR: Final = "PROTOCOL_ERROR"
FORBIDDEN_TARGET: Final = "FORBIDDEN_TARGET"

_SECURITIES: Final = ("ssl", "starttls", "none")
_IMPLICIT_TLS_PORTS: Final = frozenset({465, 993})
_TRANSIENT_CODES: Final[frozenset[str]] = frozenset({TIMEOUT, CONNECTION_REFUSED})
_GUARD_TIMEOUT: Final = 5.0
# QUIT/LOGOUT are courtesy: the verdict is in by then, so they get little time.
_FAREWELL_TIMEOUT: Final = 2.0
_IMPLICIT_TLS_PORT: Final[dict[str, int]] = {"smtp": 465, "imap": 993}
_STARTTLS_PORT: Final[dict[str, int]] = {"smtp": 587, "imap": 143}
_MAX_MESSAGE: Final = 500
_REDACTED: Final = "********"
_SHORT_SECRET: Final = 6
_TLS_AUTH_ORDER: Final = ("plain", "login", "cram-md5")
_CLEARTEXT_AUTH_ORDER: Final = ("cram-md5", "plain", "login")

_T = TypeVar("_T")


def security_for(port: int, secure: bool) -> Security:
    """Map the API's ``secure`` flag to a connection mode.

    465 and 993 speak TLS from the first byte; ``secure`` on any other port means
    "upgrade with STARTTLS", which is what submission (587) and IMAP (143) offer.
    """
    if not secure:
        return "none"
    return "ssl" if port in _IMPLICIT_TLS_PORTS else "starttls"


@dataclass(frozen=True, slots=True)
class _ServerSettings:
    host: str
    port: int
    security: Security
    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, not {self.port}")
        if self.security not in _SECURITIES:
            raise ValueError(f"security must be one of {_SECURITIES}, not {self.security!r}")


@dataclass(frozen=True, slots=True)
class SmtpSettings(_ServerSettings):
    """Where and how to log in to a mailbox's SMTP server."""


@dataclass(frozen=True, slots=True)
class ImapSettings(_ServerSettings):
    """Where and how to log in to a mailbox's IMAP server."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    protocol: ProbeProtocol
    ok: bool
    code: ProbeCode | None
    message: str
    latency_ms: int
    folders: list[str] = field(default_factory=list)
    reply_code: int | None = None
    """The SMTP reply code behind a failure, when a server reply caused it."""
    temporary: bool = False
    """The server (or the way it hung up) said to try again later: an SMTP 4xx, an
    IMAP [UNAVAILABLE], a connection closed mid-conversation."""

    @property
    def transient(self) -> bool:
        """Worth retrying later without anyone changing the settings."""
        if self.ok:
            return False
        return self.temporary or self.code in _TRANSIENT_CODES

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": self.protocol,
            "ok": self.ok,
            "code": self.code,
            "message": self.message,
            "latencyMs": self.latency_ms,
            "folders": list(self.folders),
            "replyCode": self.reply_code,
            "transient": self.transient,
        }


class _Failure(Exception):
    """A failure already classified; raised inside a probe, turned into a result."""

    def __init__(
        self,
        code: ProbeCode,
        message: str,
        *,
        reply_code: int | None = None,
        temporary: bool = False,
    ) -> None:
        super().__init__(message)
        self.code: ProbeCode = code
        self.message = message
        self.reply_code = reply_code
        self.temporary = temporary


def _tls_name(host: str) -> str:
    # The name a certificate is checked against: no IPv6 brackets, no root dot.
    return host.removeprefix("[").removesuffix("]").rstrip(".")


def _ehlo_name(sock: socket.socket) -> str:
    # An address literal is a valid EHLO argument that needs no DNS lookup;
    # socket.getfqdn(), aiosmtplib's default, can stall for seconds on a bad resolver.
    address = sock.getsockname()[0]
    return f"[IPv6:{address}]" if ":" in address else f"[{address}]"


def _secret_forms(settings: _ServerSettings) -> list[str]:
    password = settings.password
    if not password:
        return []
    forms = {
        password,
        aioimaplib.quoted(password)[1:-1],
        base64.b64encode(password.encode()).decode("ascii"),
        base64.b64encode(f"\0{settings.username}\0{password}".encode()).decode("ascii"),
    }
    return sorted(forms, key=len, reverse=True)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if len(secret) >= _SHORT_SECRET:
            text = text.replace(secret, _REDACTED)
        else:
            # A short password is also a piece of ordinary words ("x" in "expects");
            # redact it only where it stands alone, as an echoed password would.
            pattern = rf"(?<![^\W_]){re.escape(secret)}(?![^\W_])"
            text = re.sub(pattern, _REDACTED, text)
    return text


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _first(chain: Sequence[BaseException], kind: type[_T]) -> _T | None:
    for exc in chain:
        if isinstance(exc, kind):
            return exc
    return None


def _smtp_reply(code: int, message: str) -> str:
    return f"{code} {message}".strip() if code >= 100 else message


def _smtp_reply_failure(
    error: aiosmtplib.SMTPResponseException, code: ProbeCode, context: str
) -> _Failure:
    reply_code = error.code if error.code >= 100 else None
    temporary = reply_code is not None and 400 <= reply_code < 500
    return _Failure(
        code,
        f"{context}: {_smtp_reply(error.code, error.message)}",
        reply_code=reply_code,
        temporary=temporary,
    )


class _Probe:
    """One probe attempt: its settings, its deadline, and what it was doing last."""

    protocol: ProbeProtocol

    def __init__(
        self,
        settings: _ServerSettings,
        *,
        timeout: float,
        tls_context: ssl.SSLContext | None,
        allow_private: bool,
        nameservers: Sequence[str] | None = None,
    ) -> None:
        self.settings = settings
        self.nameservers = nameservers
        self.timeout = timeout
        self.tls_context = tls_context or client_context()
        self.allow_private = allow_private
        self.phase = "resolving the host"
        self.sock: socket.socket | None = None
        self._deadline = 0.0

    @property
    def target(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    # Hints speak the API's terms: a mailbox has `secure` and a port, and the port
    # picks implicit TLS (465, 993) or STARTTLS (any other) when secure is true.
    def implicit_tls_setting(self) -> str:
        return f"port {_IMPLICIT_TLS_PORT[self.protocol]} with secure: true"

    def starttls_setting(self) -> str:
        return f"port {_STARTTLS_PORT[self.protocol]} with secure: true"

    def no_starttls(self) -> str:
        return (
            f"{self.target} does not offer STARTTLS (for TLS from the first byte use "
            f"{self.implicit_tls_setting()}; secure: false logs in unencrypted)"
        )

    def remaining(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    async def run(self) -> ProbeResult:
        started = time.monotonic()
        self._deadline = started + self.timeout
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    message, folders = await self.verify()
            except Exception as exc:
                failure = self.classify(exc)
                result = self.result(started, failure.message, failure=failure)
                # A rejected login still ends the session politely: hanging up
                # without QUIT/LOGOUT is what abusive clients do, and some servers
                # count it against the address. Not after a timeout: the server is
                # not answering, and the verdict must not wait longer.
                if failure.code != TIMEOUT:
                    await self.say_goodbye()
                return result
            result = self.result(started, message, folders=folders)
            await self.say_goodbye()
            return result
        finally:
            self.close()

    async def say_goodbye(self) -> None:
        try:
            async with asyncio.timeout(_FAREWELL_TIMEOUT):
                await self.farewell()
        except Exception as exc:
            logger.debug("%s farewell to %s failed: %r", self.protocol, self.target, exc)

    def result(
        self,
        started: float,
        message: str,
        *,
        failure: _Failure | None = None,
        folders: list[str] | None = None,
    ) -> ProbeResult:
        return ProbeResult(
            protocol=self.protocol,
            ok=failure is None,
            code=None if failure is None else failure.code,
            # Scrub before clipping: a clipped secret would no longer match.
            message=_clip(_scrub(message, _secret_forms(self.settings))),
            latency_ms=round((time.monotonic() - started) * 1000),
            folders=folders or [],
            reply_code=None if failure is None else failure.reply_code,
            temporary=False if failure is None else failure.temporary,
        )

    async def verify(self) -> tuple[str, list[str]]:
        raise NotImplementedError

    async def farewell(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        # Only a socket no transport has taken over yet is ours to close: closing
        # one under a live transport frees its fd for reuse while asyncio still
        # watches it.
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def handed_off(self) -> socket.socket:
        """The connected socket, now owned by whichever transport it is given to."""
        sock, self.sock = self.sock, None
        assert sock is not None
        return sock

    async def connect(self) -> socket.socket:
        """Guard the host, then open TCP to the first of its addresses that answers."""
        self.phase = "resolving the host"
        addresses: list[IPAddress] = await guard_host(
            self.settings.host,
            allow_private=self.allow_private,
            timeout=min(_GUARD_TIMEOUT, self.timeout),
            nameservers=self.nameservers,
        )
        self.phase = f"connecting to {self.target}"
        loop = asyncio.get_running_loop()
        errors: list[OSError] = []
        for index, ip in enumerate(addresses):
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            # Split what time is left between the addresses still untried, so one
            # silently dropping address (often an unrouted IPv6) cannot eat it all.
            untried = len(addresses) - index
            budget = self.remaining() / untried if untried > 1 else None
            try:
                async with asyncio.timeout(budget):
                    await loop.sock_connect(sock, (str(ip), self.settings.port))
            except OSError as exc:
                sock.close()
                errors.append(exc)
                continue
            except BaseException:
                sock.close()
                raise
            self.sock = sock
            return sock
        refused = [exc for exc in errors if isinstance(exc, ConnectionRefusedError)]
        raise (refused or errors)[-1]

    def classify(self, exc: BaseException) -> _Failure:
        if isinstance(exc, _Failure):
            return exc
        if isinstance(exc, NetguardError):
            code: ProbeCode = FORBIDDEN_TARGET if exc.code == FORBIDDEN_TARGET else HOST_NOT_FOUND
            return _Failure(code, exc.message)
        chain = _causes(exc)
        cert_error = _first(chain, ssl.SSLCertVerificationError)
        if cert_error is not None:
            return _Failure(
                TLS_ERROR,
                f"the TLS certificate of {self.target} was rejected: "
                f"{cert_error.verify_message or cert_error}",
            )
        tls_error = _first(chain, ssl.SSLError)
        if tls_error is not None:
            reason = tls_error.reason or str(tls_error)
            hint = ""
            if self.settings.security == "ssl" and reason == "WRONG_VERSION_NUMBER":
                # The server answered in plaintext: a STARTTLS or plain port.
                hint = (
                    " (this port does not speak TLS from the first byte; for STARTTLS "
                    f"use {self.starttls_setting()})"
                )
            return _Failure(TLS_ERROR, f"TLS failed while {self.phase}: {reason}{hint}")
        if _first(chain, TimeoutError) is not None:
            hint = ""
            if (
                self.phase.startswith("waiting for the greeting")
                and self.settings.security != "ssl"
            ):
                hint = (
                    " (a port that expects TLS from the first byte stays silent; for that "
                    f"use {self.implicit_tls_setting()})"
                )
            return _Failure(TIMEOUT, f"no answer within {self.timeout:g}s while {self.phase}{hint}")
        if _first(chain, ConnectionRefusedError) is not None:
            return _Failure(CONNECTION_REFUSED, f"{self.target} refused the connection")
        gai_error = _first(chain, socket.gaierror)
        if gai_error is not None:
            return _Failure(HOST_NOT_FOUND, f"host {self.settings.host!r} not found: {gai_error}")
        if _first(chain, ConnectionError) is not None:
            return _Failure(
                PROTOCOL_ERROR,
                f"{self.target} closed the connection while {self.phase}",
                temporary=True,
            )
        if self.phase.startswith("connecting") and isinstance(exc, OSError):
            # EHOSTUNREACH, ENETUNREACH and friends: no TCP connection could be made.
            return _Failure(
                CONNECTION_REFUSED,
                f"could not connect to {self.target}: {exc.strerror or exc}",
                temporary=True,
            )
        if isinstance(exc, aiosmtplib.SMTPResponseException):
            if exc.code < 100:
                # aiosmtplib's "Malformed SMTP response line: <what came>"
                _, _, line = exc.message.partition(": ")
                return _Failure(
                    PROTOCOL_ERROR,
                    f"the server does not speak SMTP (wrong port?): {line.strip()[:200]}",
                )
            return _smtp_reply_failure(exc, PROTOCOL_ERROR, f"unexpected reply while {self.phase}")
        if isinstance(exc, (aiosmtplib.SMTPException, aioimaplib.AioImapException, OSError)):
            return _Failure(PROTOCOL_ERROR, f"error while {self.phase}: {exc}")
        secrets = _secret_forms(self.settings)
        logger.error(
            "unexpected %s probe error for %s while %s:\n%s",
            self.protocol,
            self.target,
            self.phase,
            _scrub("".join(traceback.format_exception(exc)), secrets),
        )
        return _Failure(
            PROTOCOL_ERROR, f"unexpected error while {self.phase}: {type(exc).__name__}: {exc}"
        )


class _SmtpProbe(_Probe):
    protocol: ProbeProtocol = "smtp"

    def __init__(self, settings: SmtpSettings, **options: Any) -> None:
        super().__init__(settings, **options)
        self.client: aiosmtplib.SMTP | None = None

    async def verify(self) -> tuple[str, list[str]]:
        s = self.settings
        sock = await self.connect()
        implicit_tls = s.security == "ssl"
        self.phase = "TLS handshake" if implicit_tls else "waiting for the greeting"
        client = aiosmtplib.SMTP(
            hostname=_tls_name(s.host),
            sock=sock,
            local_hostname=_ehlo_name(sock),
            # Our own deadline governs; aiosmtplib's per-step timeout is a backstop.
            timeout=self.timeout + 1,
            use_tls=implicit_tls,
            start_tls=False,
            tls_context=self.tls_context,
        )
        self.client = client
        self.handed_off()
        try:
            await client.connect()
        except aiosmtplib.SMTPConnectResponseError as exc:
            raise _smtp_reply_failure(
                exc, PROTOCOL_ERROR, "the server refused the session"
            ) from exc

        self.phase = "saying EHLO"
        await client.ehlo()
        if s.security == "starttls":
            if not client.supports_extension("starttls"):
                raise _Failure(TLS_ERROR, self.no_starttls())
            self.phase = "upgrading with STARTTLS"
            try:
                await client.starttls(
                    server_hostname=_tls_name(s.host), tls_context=self.tls_context
                )
            except aiosmtplib.SMTPResponseException as exc:
                raise _smtp_reply_failure(exc, TLS_ERROR, "the server refused STARTTLS") from exc
            self.phase = "saying EHLO after STARTTLS"
            await client.ehlo()

        if not client.supports_extension("auth"):
            if s.security == "none" and client.supports_extension("starttls"):
                raise _Failure(
                    TLS_ERROR,
                    f"{self.target} only allows login after STARTTLS (set secure: true)",
                )
            raise _Failure(PROTOCOL_ERROR, f"{self.target} does not offer SMTP AUTH")

        self.phase = "authenticating"
        reply = await self._authenticate(client)
        return f"SMTP login as {s.username} succeeded: {reply}", []

    async def _authenticate(self, client: aiosmtplib.SMTP) -> str:
        s = self.settings
        offered = client.server_auth_methods
        # Over an unencrypted connection CRAM-MD5 at least keeps the password off the wire.
        preference = _CLEARTEXT_AUTH_ORDER if s.security == "none" else _TLS_AUTH_ORDER
        mechanisms = [name for name in preference if name in offered]
        if not mechanisms:
            shown = " ".join(name.upper() for name in offered) or "none"
            raise _Failure(
                PROTOCOL_ERROR,
                f"{self.target} offers no password login mechanism (offers: {shown})",
            )
        failure: _Failure | None = None
        for name in mechanisms:
            try:
                if name == "plain":
                    response = await client.auth_plain(s.username, s.password)
                elif name == "login":
                    response = await client.auth_login(s.username, s.password)
                else:
                    response = await client.auth_crammd5(s.username, s.password)
            except aiosmtplib.SMTPAuthenticationError as exc:
                failure = self._auth_failure(exc)
                # 504: the server advertised a mechanism it does not implement. Only
                # then try the next one: each rejected login counts against the
                # account at most providers.
                if exc.code == 504:
                    continue
                raise failure from exc
            return _smtp_reply(response.code, response.message)
        assert failure is not None
        raise failure

    def _auth_failure(self, exc: aiosmtplib.SMTPAuthenticationError) -> _Failure:
        code = exc.code
        if code == 538:
            return _smtp_reply_failure(exc, TLS_ERROR, "the server requires encryption to log in")
        if 400 <= code < 500 or code in (500, 501, 502, 503, 504) or code < 100:
            return _smtp_reply_failure(exc, PROTOCOL_ERROR, "login could not be completed")
        return _smtp_reply_failure(exc, AUTH_FAILED, "login rejected")

    async def farewell(self) -> None:
        if self.client is not None and self.client.is_connected:
            await self.client.quit()

    def close(self) -> None:
        if self.client is not None:
            _abort(self.client.transport)
            self.client.close()
        super().close()


_BYE_RE: Final = re.compile(rb"^\* BYE ?(.*?)\r?$", re.MULTILINE | re.IGNORECASE)
_RESP_CODE_RE: Final = re.compile(r"^\[([A-Za-z-]+)")
_LIST_RE: Final = re.compile(
    r'^\((?P<flags>[^)]*)\) (?:NIL|"(?P<delim>(?:[^"\\]|\\.)*)") (?P<name>.*)$', re.S
)
_LITERAL_RE: Final = re.compile(r"^\{(\d+)\+?\}$")
_MUTF7_RE: Final = re.compile(r"&([A-Za-z0-9+,]*)-")


def decode_mailbox_name(name: str) -> str:
    """Decode IMAP's modified UTF-7 (RFC 3501 5.1.3): ``&AMk-l&AOk-ments`` -> ``Éléments``."""

    def replace(match: re.Match[str]) -> str:
        chunk = match.group(1)
        if not chunk:
            return "&"
        padded = chunk.replace(",", "/") + "=" * (-len(chunk) % 4)
        return base64.b64decode(padded).decode("utf-16-be")

    try:
        return _MUTF7_RE.sub(replace, name)
    except (binascii.Error, UnicodeDecodeError):
        return name


@dataclass(frozen=True)
class ListEntry:
    """One selectable folder of a LIST answer."""

    name: str
    """Decoded (modified UTF-7), INBOX spelled INBOX."""
    raw: str
    """Unquoted, as the server spelled it: what commands must send back."""
    flags: frozenset[str]
    delimiter: str | None


def list_entries(lines: Sequence[bytes | bytearray]) -> list[ListEntry]:
    """The folders of aioimaplib's LIST lines, in the server's order, each once,
    skipping the ones that hold no mail.

    Each line is ``(flags) "delimiter" name`` with ``* LIST`` stripped; a name sent
    as a literal arrives as the next line, whole. ``\\Noselect`` and
    ``\\NonExistent`` entries are hierarchy placeholders, not folders.
    """
    entries: list[ListEntry] = []
    seen: set[str] = set()
    index = 0
    while index < len(lines):
        line = bytes(lines[index]).decode("utf-8", "replace")
        index += 1
        match = _LIST_RE.match(line)
        if match is None:
            continue
        raw = match.group("name")
        if _LITERAL_RE.match(raw) and index < len(lines):
            raw = bytes(lines[index]).decode("utf-8", "replace")
            index += 1
        elif raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        flags = frozenset(match.group("flags").split())
        lowered = {flag.lower() for flag in flags}
        if "\\noselect" in lowered or "\\nonexistent" in lowered:
            continue
        name = decode_mailbox_name(raw)
        if name.upper() == "INBOX":
            name = raw = "INBOX"
        if name in seen:
            continue
        seen.add(name)
        entries.append(ListEntry(name, raw, flags, match.group("delim")))
    return entries


def parse_list_response(lines: Sequence[bytes | bytearray]) -> list[str]:
    """Folder names from aioimaplib's LIST lines, INBOX first (see `list_entries`)."""
    folders = [entry.name for entry in list_entries(lines)]
    if "INBOX" in folders:
        folders.remove("INBOX")
        folders.insert(0, "INBOX")
    return folders


class _ImapTap(asyncio.Protocol):
    """Stands between the transport and aioimaplib's protocol to notice what that
    one does not report: a closed connection (its pending commands would wait
    forever), a greeting that is not IMAP, and the text of a BYE."""

    def __init__(self, inner: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.broken: asyncio.Future[str] = loop.create_future()
        self.bye: str | None = None
        self._greeting = b""
        self._greeted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        for match in _BYE_RE.finditer(data):
            self.bye = match.group(1).decode("utf-8", "replace").strip()
        if not self._greeted:
            self._greeting += data
            if b"\n" in self._greeting:
                self._greeted = True
                first = self._greeting.split(b"\n", 1)[0].strip()
                if not first.upper().startswith((b"* OK", b"* PREAUTH")):
                    self._break(self._greeting_problem(first))
                    return
        self.inner.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)
        self._break("")

    def _break(self, reason: str) -> None:
        if not self.broken.done():
            self.broken.set_result(reason)

    @staticmethod
    def _greeting_problem(first: bytes) -> str:
        text = first.decode("utf-8", "replace")[:200]
        if re.match(r"^\d{3}[ -]", text):
            return f"the server greets like SMTP, not IMAP (wrong port?): {text}"
        if text.upper().startswith("* BYE"):
            return f"the server refused the session: {text[5:].strip()}"
        return f"the server's greeting is not IMAP: {text}"


class _ImapProbe(_Probe):
    protocol: ProbeProtocol = "imap"

    def __init__(self, settings: ImapSettings, **options: Any) -> None:
        super().__init__(settings, **options)
        self.tap: _ImapTap | None = None

    async def _step(self, awaitable: Awaitable[_T]) -> _T:
        """Await one IMAP command, or fail at once if the connection breaks meanwhile."""
        assert self.tap is not None
        broken = self.tap.broken
        task = asyncio.ensure_future(awaitable)
        try:
            waiters: set[asyncio.Future[Any]] = {task, broken}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
        if task.done() and not task.cancelled():
            return task.result()
        reason = broken.result()
        if reason:
            raise _Failure(
                PROTOCOL_ERROR, reason, temporary=reason.startswith("the server refused")
            )
        bye = f": {self.tap.bye}" if self.tap.bye else ""
        raise _Failure(
            PROTOCOL_ERROR,
            f"{self.target} closed the connection while {self.phase}{bye}",
            temporary=True,
        )

    async def verify(self) -> tuple[str, list[str]]:
        s = self.settings
        if any(ch in s.username + s.password for ch in "\0\r\n"):
            # IMAP LOGIN sends both as quoted strings, which cannot carry these.
            raise _Failure(AUTH_FAILED, "the username or password contains NUL, CR or LF")
        await self.connect()
        loop = asyncio.get_running_loop()
        implicit_tls = s.security == "ssl"
        inner = aioimaplib.IMAP4ClientProtocol(loop)
        tap = self.tap = _ImapTap(inner, loop)
        if implicit_tls:
            self.phase = "TLS handshake"
        await loop.create_connection(
            lambda: tap,
            sock=self.handed_off(),
            ssl=self.tls_context if implicit_tls else None,
            server_hostname=_tls_name(s.host) if implicit_tls else None,
            ssl_handshake_timeout=(self.remaining() + 1) if implicit_tls else None,
        )
        self.phase = "waiting for the greeting"
        await self._step(inner.wait(f"{aioimaplib.AUTH}|{aioimaplib.NONAUTH}"))
        if inner.state == aioimaplib.AUTH:
            raise _Failure(
                PROTOCOL_ERROR,
                "the server logged in without a password (PREAUTH), "
                "so the credentials were not checked",
            )

        if s.security == "starttls":
            await self._starttls(inner, tap, loop)

        capabilities = cast(set[str], inner.capabilities)
        if "LOGINDISABLED" in capabilities:
            raise _Failure(
                TLS_ERROR,
                f"{self.target} does not allow LOGIN on an unencrypted connection "
                "(set secure: true)",
            )

        self.phase = "logging in"
        secret = aioimaplib.quoted(s.password)
        login = aioimaplib.Command(
            "LOGIN", inner.new_tag(), aioimaplib.quoted(s.username), secret, loop=loop
        )
        # Sent by hand rather than with inner.login(): that one scrubs its debug log
        # of the raw password, which misses it once quoting escaped a quote or a
        # backslash, and it does not quote the username.
        response = await self._step(inner.execute(login, scrub=secret))
        if response.result != "OK":
            raise self._login_failure(response.result, _last_line(response.lines))
        inner.state = aioimaplib.AUTH

        self.phase = "listing folders"
        listing = await self._step(inner.simple_command("LIST", '""', '"*"'))
        if listing.result != "OK":
            raise _Failure(
                PROTOCOL_ERROR, f"LIST failed: {listing.result} {_last_line(listing.lines)}"
            )
        folders = parse_list_response(listing.lines[:-1])
        count = len(folders)
        return f"IMAP login as {s.username} succeeded; {count} folder{'s' * (count != 1)}", folders

    async def _starttls(self, inner: Any, tap: _ImapTap, loop: asyncio.AbstractEventLoop) -> None:
        s = self.settings
        if "STARTTLS" not in inner.capabilities:
            raise _Failure(TLS_ERROR, self.no_starttls())
        self.phase = "upgrading with STARTTLS"
        # aioimaplib 2.0.3 knows the STARTTLS command but has no method for it: send
        # the command through its protocol, then swap in a TLS transport under it.
        command = aioimaplib.Command("STARTTLS", inner.new_tag(), loop=loop)
        response = await self._step(inner.execute(command))
        if response.result != "OK":
            raise _Failure(
                TLS_ERROR,
                f"the server refused STARTTLS: {response.result} {_last_line(response.lines)}",
            )
        tls_transport = await loop.start_tls(
            inner.transport,
            tap,
            self.tls_context,
            server_hostname=_tls_name(s.host),
            ssl_handshake_timeout=self.remaining() + 1,
        )
        inner.transport = tls_transport
        # RFC 3501 6.2.1: capabilities from before the handshake must be forgotten.
        self.phase = "asking for capabilities after STARTTLS"
        await self._step(inner.capability())

    def _login_failure(self, result: str, text: str) -> _Failure:
        reply = f"{result} {text}".strip()
        if result != "NO":
            return _Failure(PROTOCOL_ERROR, f"login could not be completed: {reply}")
        match = _RESP_CODE_RE.match(text)
        response_code = match.group(1).upper() if match else ""
        if response_code == "PRIVACYREQUIRED":
            return _Failure(TLS_ERROR, f"the server requires encryption to log in: {reply}")
        if response_code in ("UNAVAILABLE", "INUSE", "LIMIT", "SERVERBUG"):
            return _Failure(PROTOCOL_ERROR, f"login failed for now: {reply}", temporary=True)
        return _Failure(AUTH_FAILED, f"login rejected: {reply}")

    async def farewell(self) -> None:
        if self.tap is not None and not self.tap.broken.done():
            await self._step(self.tap.inner.logout())

    def close(self) -> None:
        if self.tap is not None:
            _abort(self.tap.inner.transport)
        super().close()


def _abort(transport: asyncio.BaseTransport | None) -> None:
    # abort(), not close(): a closing TLS transport waits up to 30 s for the peer's
    # close_notify, holding a socket per probe; the verdict is already in.
    if isinstance(transport, asyncio.WriteTransport):
        transport.abort()
    elif transport is not None:
        transport.close()


def _last_line(lines: Sequence[bytes | bytearray]) -> str:
    if not lines:
        return ""
    return bytes(lines[-1]).decode("utf-8", "replace").strip()


async def probe_smtp(
    s: SmtpSettings,
    *,
    timeout: float = 15.0,  # noqa: ASYNC109 - a timeout is a verdict here, not an error
    tls_context: ssl.SSLContext | None = None,
    allow_private: bool = False,
    nameservers: Sequence[str] | None = None,
) -> ProbeResult:
    """Connect, EHLO, (STARTTLS,) AUTH and QUIT. Never sends a message.

    `timeout` bounds everything up to the verdict; QUIT gets up to two seconds
    more. `tls_context` defaults to `kit.tls.client_context()`, the system store.
    """
    probe = _SmtpProbe(
        s,
        timeout=timeout,
        tls_context=tls_context,
        allow_private=allow_private,
        nameservers=nameservers,
    )
    return await probe.run()


async def probe_imap(
    s: ImapSettings,
    *,
    timeout: float = 15.0,  # noqa: ASYNC109 - a timeout is a verdict here, not an error
    tls_context: ssl.SSLContext | None = None,
    allow_private: bool = False,
    nameservers: Sequence[str] | None = None,
) -> ProbeResult:
    """Connect, (STARTTLS,) LOGIN, LIST "" "*" and LOGOUT; `folders` holds the names."""
    probe = _ImapProbe(
        s,
        timeout=timeout,
        tls_context=tls_context,
        allow_private=allow_private,
        nameservers=nameservers,
    )
    return await probe.run()


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    """How probes connect, from the settings: plain data, so that the bulk login
    process (`mail.login_process`) can be handed it as JSON."""

    timeout: float = 15.0
    ca_file: str | None = None
    allow_private: bool = False
    nameservers: tuple[str, ...] = ()


async def probe_logins(
    smtp: SmtpSettings, imap: ImapSettings, options: ProbeOptions
) -> dict[str, dict[str, Any]]:
    """SMTP and IMAP logins at once: `{"smtp": result, "imap": result}` as dicts,
    no secrets."""
    keywords: dict[str, Any] = {
        "timeout": options.timeout,
        "tls_context": client_context(options.ca_file),
        "allow_private": options.allow_private,
        "nameservers": options.nameservers or None,
    }
    smtp_result, imap_result = await asyncio.gather(
        probe_smtp(smtp, **keywords), probe_imap(imap, **keywords)
    )
    return {"smtp": smtp_result.to_dict(), "imap": imap_result.to_dict()}
