"""Send messages from a mailbox over its own SMTP server (aiosmtplib).

    async with SmtpSender(settings, options) as sender:
        await sender.send(message, recipients=["someone@example.com"])

Opening logs in as a connection test does (network guard, TLS, AUTH); a refusal
raises `MailError` with the server's reply, never the password.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage
from types import TracebackType

import aiosmtplib

from mailfleet.mail.probes import PROTOCOL_ERROR, SmtpSettings, _SmtpProbe
from mailfleet.mail.sessions import ConnectOptions, MailError, open_smtp_probe, scrubbed

__all__ = ["SmtpSender"]


class SmtpSender:
    def __init__(self, settings: SmtpSettings, options: ConnectOptions) -> None:
        self.settings = settings
        self.options = options
        self._probe: _SmtpProbe | None = None

    async def __aenter__(self) -> SmtpSender:
        self._probe = await open_smtp_probe(self.settings, self.options)
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
        except Exception:  # noqa: S110 - QUIT is a courtesy; the messages are sent
            pass
        finally:
            probe.close()

    async def send(
        self, message: EmailMessage, *, recipients: Sequence[str], sender: str | None = None
    ) -> str:
        """Submit one message; returns the server's reply. Raises `MailError`:
        `temporary` for a 4xx or a dropped connection, otherwise permanent."""
        probe = self._probe
        if probe is None or probe.client is None:
            raise RuntimeError("SmtpSender used outside its `async with`")
        try:
            errors, reply = await probe.client.send_message(
                message, sender=sender, recipients=list(recipients)
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise MailError(
                PROTOCOL_ERROR,
                scrubbed(probe, f"the server refused the message: {exc.code} {exc.message}"),
                temporary=400 <= exc.code < 500,
            ) from None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise MailError(
                PROTOCOL_ERROR, scrubbed(probe, f"sending failed: {exc}"), temporary=True
            ) from None
        if errors:
            refused = ", ".join(f"{rcpt}: {code} {text}" for rcpt, (code, text) in errors.items())
            raise MailError(PROTOCOL_ERROR, scrubbed(probe, f"recipients refused: {refused}"))
        return reply
