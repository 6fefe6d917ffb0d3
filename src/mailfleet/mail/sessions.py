"""Logged-in SMTP and IMAP sessions, opened the way the probes log in.

A session passes the same network guard, TLS context and login code as a
connection test (mail/probes.py), so a mailbox that verified is reached the same
way when it sends (mail/sending.py) or reads its folders (mail/folders.py). A
failure to open one raises `MailError` with the probe's code and scrubbed message.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from mailfleet.kit.tls import client_context
from mailfleet.mail.probes import (
    AUTH_FAILED,
    ImapSettings,
    ProbeResult,
    SmtpSettings,
    _ImapProbe,
    _Probe,
    _SmtpProbe,
)

if TYPE_CHECKING:
    from mailfleet.config import Settings

__all__ = [
    "ConnectOptions",
    "LoggedInSession",
    "MailError",
    "connect_options",
    "open_imap_probe",
    "open_smtp_probe",
]


@dataclass(frozen=True)
class ConnectOptions:
    """How to reach mail servers: the settings every outbound mail connection shares."""

    timeout: float = 15.0
    tls_context: ssl.SSLContext | None = None
    allow_private: bool = False
    nameservers: Sequence[str] | None = None

    def as_kwargs(self) -> dict[str, Any]:
        return {
            "timeout": self.timeout,
            "tls_context": self.tls_context,
            "allow_private": self.allow_private,
            "nameservers": self.nameservers,
        }


def connect_options(settings: Settings) -> ConnectOptions:
    """The options MAILFLEET_ settings give every mail session a workflow opens."""
    return ConnectOptions(
        timeout=settings.mail_timeout,
        tls_context=client_context(settings.tls_ca_file),
        allow_private=settings.allow_private_networks,
        nameservers=settings.dns_nameservers or None,
    )


class MailError(Exception):
    """A mail operation failed: `code` as the probes name failures, a scrubbed message."""

    def __init__(self, code: str, message: str, *, temporary: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.temporary = temporary

    @property
    def auth_failed(self) -> bool:
        return self.code == AUTH_FAILED

    @classmethod
    def from_result(cls, result: ProbeResult) -> MailError:
        return cls(result.code or "PROTOCOL_ERROR", result.message, temporary=result.transient)


async def _login(probe: _Probe) -> None:
    started = time.monotonic()
    probe._deadline = started + probe.timeout
    try:
        async with asyncio.timeout(probe.timeout):
            await probe.verify()
    except Exception as exc:
        failure = probe.classify(exc)
        probe.close()
        raise MailError.from_result(
            probe.result(started, failure.message, failure=failure)
        ) from None


async def open_smtp_probe(settings: SmtpSettings, options: ConnectOptions) -> _SmtpProbe:
    """Connect, EHLO, (STARTTLS,) AUTH: the probe holds the logged-in client."""
    probe = _SmtpProbe(settings, **options.as_kwargs())
    await _login(probe)
    return probe


async def open_imap_probe(settings: ImapSettings, options: ConnectOptions) -> _ImapProbe:
    """Connect, (STARTTLS,) LOGIN: the probe holds the authenticated protocol."""
    probe = _ImapProbe(settings, **options.as_kwargs())
    await _login(probe)
    return probe


def scrubbed(probe: _Probe, message: str) -> str:
    """`message` with the session's password in any form replaced, and clipped."""
    return probe.result(time.monotonic(), message).message


SettingsT = TypeVar("SettingsT", SmtpSettings, ImapSettings)
ProbeT = TypeVar("ProbeT", _SmtpProbe, _ImapProbe)


class LoggedInSession(Generic[SettingsT, ProbeT]):
    """A logged-in session over a probe, as `async with`: entering logs in (or
    raises `MailError`), leaving says goodbye (QUIT, LOGOUT) and closes, whatever
    happened inside. Subclasses open their probe and use `self._probe`."""

    def __init__(self, settings: SettingsT, options: ConnectOptions) -> None:
        self.settings: SettingsT = settings
        self.options = options
        self._probe: ProbeT | None = None

    async def _open(self) -> ProbeT:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        self._probe = await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        probe, self._probe = self._probe, None
        if probe is None:
            return
        try:
            await probe.farewell()
        except Exception:  # noqa: S110 - QUIT and LOGOUT are courtesies; the work is done
            pass
        finally:
            probe.close()
