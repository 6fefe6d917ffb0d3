"""MAILFLEET_TLS_CA_FILE adds a CA to the system trust store; it never replaces it.

"The system store" is simulated with OpenSSL's SSL_CERT_FILE/SSL_CERT_DIR: a
throwaway "public" CA stands in for the CAs Gmail or Microsoft 365 chain to, and
another throwaway CA is the operator's private one, given as the extra file. Every
outbound client must trust both at once.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailfleet.bulk.workflows import probe_mailbox
from mailfleet.config import Settings
from mailfleet.kit import tls
from mailfleet.mail import login_process
from mailfleet.mail.probes import ImapSettings, SmtpSettings
from mailfleet.mailboxes.service import MailboxCredentials, probe_credentials
from mailfleet.webhooks.sender import send_webhook
from tests.servers.common import unused_tcp_port
from tests.servers.http_receiver import HttpReceiver
from tests.servers.smtp import SmtpServer
from tests.servers.tls import LoopbackTLS

SRC = Path(__file__).resolve().parents[2] / "src" / "mailfleet"


@pytest.fixture
def public_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackTLS]:
    """A CA the system trust store holds (and nothing else does)."""
    public = LoopbackTLS.create(tmp_path / "public")
    empty = tmp_path / "no-system-certs"
    empty.mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(public.ca_pem))
    monkeypatch.setenv("SSL_CERT_DIR", str(empty))
    tls._cached.cache_clear()
    yield public
    tls._cached.cache_clear()


@pytest.fixture
def private_ca(tmp_path: Path) -> LoopbackTLS:
    return LoopbackTLS.create(tmp_path / "private")


def settings_trusting(ca: LoopbackTLS, tmp_path: Path) -> Settings:
    return Settings(
        env="test",
        data_dir=tmp_path / "data",
        tls_ca_file=ca.ca_pem,
        allow_private_networks=True,
        mail_timeout=5.0,
    )


async def handshake(context_ca: LoopbackTLS, server: LoopbackTLS) -> None:
    """A TLS handshake with `server`'s certificate, the client trusting
    client_context(context_ca's file)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server.server_context())
    port = listener.sockets[0].getsockname()[1]
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=tls.client_context(context_ca.ca_pem)
        )
        writer.close()
    finally:
        listener.close()
        await listener.wait_closed()


async def test_the_extra_ca_file_is_trusted_beside_the_system_store(
    public_ca: LoopbackTLS, private_ca: LoopbackTLS
) -> None:
    await handshake(private_ca, private_ca)
    await handshake(private_ca, public_ca)


async def test_a_ca_nobody_trusts_is_still_refused(
    public_ca: LoopbackTLS, private_ca: LoopbackTLS, tmp_path: Path
) -> None:
    stranger = LoopbackTLS.create(tmp_path / "stranger")
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(private_ca, stranger)


def test_one_context_per_ca_file(private_ca: LoopbackTLS, tmp_path: Path) -> None:
    assert tls.client_context(private_ca.ca_pem) is tls.client_context(str(private_ca.ca_pem))
    assert tls.client_context() is tls.client_context(None)
    assert tls.client_context() is not tls.client_context(private_ca.ca_pem)


@pytest.mark.parametrize(
    "probe", [probe_credentials, probe_mailbox], ids=["mailbox", "bulk login process"]
)
async def test_mailbox_logins_reach_a_public_server_with_a_private_ca_set(
    public_ca: LoopbackTLS, private_ca: LoopbackTLS, tmp_path: Path, probe: object
) -> None:
    """The defect deleted mailboxes: a Gmail-like server (public CA) failed TLS_ERROR
    once an operator had added a private CA. A bulk job logs in from its login
    process (a child of its own, started here for these settings), which must trust
    the same."""
    with SmtpServer({"me@example.test": "pw"}, mode="ssl", tls=public_ca) as smtp:
        credentials = MailboxCredentials(
            smtp=SmtpSettings("127.0.0.1", smtp.port, "ssl", "me@example.test", "pw"),
            # Nothing listens: only the SMTP verdict matters here.
            imap=ImapSettings("127.0.0.1", unused_tcp_port("127.0.0.1"), "none", "x", "x"),
        )
        try:
            result = await probe(credentials, settings_trusting(private_ca, tmp_path))  # type: ignore[operator]
            if probe is probe_mailbox:  # it logged in from the child
                child = login_process.current()
                assert child is not None
                assert child.pid is not None
        finally:
            await login_process.close_shared()
    assert result["smtp"]["ok"] is True, result["smtp"]


async def test_webhooks_reach_a_public_receiver_with_a_private_ca_set(
    public_ca: LoopbackTLS, private_ca: LoopbackTLS, tmp_path: Path
) -> None:
    with HttpReceiver(tls=public_ca.server_context()) as receiver:
        result = await send_webhook(
            receiver.url(),
            "whsec_" + "A" * 32,
            "msg_1",
            "{}",
            settings_trusting(private_ca, tmp_path),
        )
    assert result.error is None, result.error
    assert len(receiver.received()) == 1


def test_every_outbound_tls_context_comes_from_the_one_factory() -> None:
    """A context built elsewhere would bring the replace-the-store defect back."""
    builders = re.compile(r"create_default_context|SSLContext\(|load_verify_locations")
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path != SRC / "kit" / "tls.py" and builders.search(path.read_text())
    ]
    assert offenders == []
