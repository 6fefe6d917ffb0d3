"""Send messages from a mailbox over its own SMTP server (aiosmtplib).

    async with SmtpSender(settings, options) as sender:
        await sender.send(message, recipients=["someone@example.com"])

Opening logs in as a connection test does (network guard, TLS, AUTH); a refusal
raises `MailError` with the server's reply, never the password.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from mailfleet.mail.probes import PROTOCOL_ERROR, SmtpSettings, _SmtpProbe
from mailfleet.mail.sessions import LoggedInSession, MailError, open_smtp_probe, scrubbed

__all__ = ["SmtpSender"]


class SmtpSender(LoggedInSession[SmtpSettings, _SmtpProbe]):
    async def _open(self) -> _SmtpProbe:
        return await open_smtp_probe(self.settings, self.options)

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
