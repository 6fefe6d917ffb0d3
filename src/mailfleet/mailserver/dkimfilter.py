"""DKIM signing as a Postfix after-queue content filter, inside `mailfleet mailserver run`.

Postfix hands every message submitted on 587/465 to this SMTP listener on loopback;
it signs with the sender domain's active key, read from the database (and decrypted
with the keyring) for that message, and hands the signed message back to Postfix's
re-injection listener. Only then does it answer 250, so Postfix keeps the message
queued (and retries) while the filter or the re-injection is down: nothing leaves
unsigned because of an outage, and no private key is ever written to a file.
"""

from __future__ import annotations

import asyncio
import logging
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from email.utils import getaddresses
from typing import Any

import aiosmtplib
import dkim  # type: ignore[import-untyped]
from aiosmtpd.smtp import SMTP, Envelope, Session

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.mailserver.service import SigningKey, signing_key

log = logging.getLogger(__name__)

# What is signed: the headers a receiver shows or relies on. Listing From twice
# ("oversigning") stops a second From from being added after signing.
SIGNED_HEADERS = [
    b"from",
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"in-reply-to",
    b"references",
]


def from_domain(message: bytes, mail_from: str) -> str | None:
    """The domain of the From header (what DMARC aligns with), else the envelope sender's."""
    headers = BytesHeaderParser(policy=default_policy).parsebytes(message)
    found = getaddresses([str(value) for value in headers.get_all("from", [])])
    for _, address in [*found, ("", mail_from)]:
        if "@" in address:
            return address.rsplit("@", 1)[1].strip().rstrip(".>").lower() or None
    return None


def sign_message(message: bytes, key: SigningKey) -> bytes:
    """The message with a DKIM-Signature header in front (relaxed/relaxed, rsa-sha256)."""
    signature: bytes = dkim.sign(
        message,
        key.selector.encode(),
        key.domain.encode(),
        key.private_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=SIGNED_HEADERS,
    )
    return signature + message


class DkimSigningHandler:
    def __init__(self, database: Database, keyring: Keyring, reinject_port: int) -> None:
        self.database = database
        self.keyring = keyring
        self.reinject_port = reinject_port

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or envelope.content or b""
        message = content if isinstance(content, bytes) else content.encode()
        sender = envelope.mail_from or ""
        try:
            domain = from_domain(message, sender)
            key = None
            if domain is not None:
                async with self.database.transaction() as db_session:
                    key = await signing_key(db_session, self.keyring, domain)
            if key is not None:
                message = await asyncio.to_thread(sign_message, message, key)
            else:
                log.info("no active DKIM key for %s; passing the message on unsigned", domain)
            await aiosmtplib.send(
                message,
                sender=sender,
                recipients=list(envelope.rcpt_tos),
                hostname="127.0.0.1",
                port=self.reinject_port,
                start_tls=False,
                use_tls=False,
                timeout=60,
            )
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                return f"{exc.code} {exc.message}"
            log.warning("re-injection deferred the message: %s %s", exc.code, exc.message)
            return "451 4.3.0 Re-injection failed; try again later"
        except Exception:
            # Postfix keeps the message queued and retries: never lost, never unsigned.
            log.exception("DKIM filter could not sign or re-inject a message")
            return "451 4.3.0 Signing failed; try again later"
        return "250 2.0.0 Signed and queued"


async def start_filter(
    database: Database, keyring: Keyring, port: int, reinject_port: int
) -> asyncio.Server:
    handler = DkimSigningHandler(database, keyring, reinject_port)
    loop = asyncio.get_running_loop()

    def factory() -> Any:
        return SMTP(handler, data_size_limit=40 * 1024 * 1024, hostname="mailfleet-dkim")

    return await loop.create_server(factory, host="127.0.0.1", port=port)
