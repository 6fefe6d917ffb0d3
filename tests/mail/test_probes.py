"""Probes against real SMTP (aiosmtpd) and IMAP (Dovecot) servers on loopback."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest

from mailfleet.mail.probes import (
    ImapSettings,
    ProbeResult,
    Security,
    SmtpSettings,
    decode_mailbox_name,
    parse_list_response,
    probe_imap,
    probe_smtp,
    security_for,
)
from tests.servers.blackhole import BlackholeServer
from tests.servers.dovecot import DEFAULT_FOLDERS, DovecotServer
from tests.servers.smtp import SmtpServer
from tests.servers.tls import LoopbackTLS

from .conftest import Credentials

HOST = "127.0.0.1"


def smtp_for(server: SmtpServer, creds: Credentials, security: Security) -> SmtpSettings:
    server.users[creds.username] = creds.password
    return SmtpSettings(server.host, server.port, security, creds.username, creds.password)


def imap_for(
    server: DovecotServer, creds: Credentials, security: Security, *, port: int | None = None
) -> ImapSettings:
    server.add_user(creds.username, creds.password)
    if port is None:
        port = server.ssl_port if security == "ssl" else server.port
    assert port is not None
    return ImapSettings(server.host, port, security, creds.username, creds.password)


def assert_no_secret(result: ProbeResult, password: str) -> None:
    assert password not in result.message
    assert password not in json.dumps(result.to_dict())


# --- pure helpers -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("port", "secure", "expected"),
    [
        (465, True, "ssl"),
        (993, True, "ssl"),
        (587, True, "starttls"),
        (143, True, "starttls"),
        (25, True, "starttls"),
        (465, False, "none"),
        (587, False, "none"),
    ],
)
def test_security_for_maps_the_api_secure_flag(port: int, secure: bool, expected: str) -> None:
    assert security_for(port, secure) == expected


def test_settings_hide_the_password_and_refuse_bad_values() -> None:
    settings = SmtpSettings("smtp.example.com", 587, "starttls", "a@example.com", "hunter2")
    assert "hunter2" not in repr(settings)
    with pytest.raises(ValueError, match="port"):
        SmtpSettings("smtp.example.com", 0, "starttls", "a", "b")
    with pytest.raises(ValueError, match="security"):
        ImapSettings("imap.example.com", 993, "tls", "a", "b")  # type: ignore[arg-type]


def test_result_to_dict_is_camel_case_json() -> None:
    result = ProbeResult("imap", True, None, "ok", 12, folders=["INBOX"])
    assert result.to_dict() == {
        "protocol": "imap",
        "ok": True,
        "code": None,
        "message": "ok",
        "latencyMs": 12,
        "folders": ["INBOX"],
        "replyCode": None,
        "transient": False,
    }
    json.dumps(result.to_dict())


@pytest.mark.parametrize(
    ("code", "reply_code", "temporary", "transient"),
    [
        ("TIMEOUT", None, False, True),
        ("CONNECTION_REFUSED", None, False, True),
        ("PROTOCOL_ERROR", 421, True, True),
        ("AUTH_FAILED", 535, False, False),
        ("TLS_ERROR", None, False, False),
        ("FORBIDDEN_TARGET", None, False, False),
    ],
)
def test_transient_failures(
    code: str, reply_code: int | None, temporary: bool, transient: bool
) -> None:
    result = ProbeResult("smtp", False, code, "x", 1, reply_code=reply_code, temporary=temporary)  # type: ignore[arg-type]
    assert result.transient is transient


def test_list_parsing_handles_quoting_literals_mutf7_and_placeholders() -> None:
    lines: list[bytes | bytearray] = [
        b'(\\HasNoChildren) "/" INBOX',
        b'(\\HasNoChildren \\Sent) "/" "Sent Items"',
        b'(\\Noselect \\HasChildren) "/" "[Gmail]"',
        b'(\\HasNoChildren) "/" "[Gmail]/All \\"Mail\\""',
        b'(\\HasNoChildren) "." {11}',
        bytearray(b"Odd\r\nFolder"),
        b'(\\HasNoChildren) NIL "&AMk-l&AOk-ments envoy&AOk-s"',
        b'(\\HasNoChildren) "/" "A &- B"',
    ]
    assert parse_list_response(lines) == [
        "INBOX",
        "Sent Items",
        '[Gmail]/All "Mail"',
        "Odd\r\nFolder",
        "Éléments envoyés",
        "A & B",
    ]
    assert decode_mailbox_name("&Jjo-!") == "☺!"
    assert decode_mailbox_name("bad&@@@-") == "bad&@@@-"


# --- SMTP ---------------------------------------------------------------------------


async def test_smtp_plain_login_succeeds(smtp_plain: SmtpServer, credentials: Credentials) -> None:
    result = await probe_smtp(smtp_for(smtp_plain, credentials, "none"), allow_private=True)
    assert result.ok, result
    assert result.code is None
    assert "235" in result.message
    assert result.folders == []
    assert_no_secret(result, credentials.password)


async def test_smtp_starttls_login_succeeds(
    smtp_starttls: SmtpServer, loopback_tls: LoopbackTLS, credentials: Credentials
) -> None:
    result = await probe_smtp(
        smtp_for(smtp_starttls, credentials, "starttls"),
        tls_context=loopback_tls.client_context(),
        allow_private=True,
    )
    assert result.ok, result


async def test_smtp_implicit_tls_login_succeeds(
    smtp_ssl: SmtpServer, loopback_tls: LoopbackTLS, credentials: Credentials
) -> None:
    result = await probe_smtp(
        smtp_for(smtp_ssl, credentials, "ssl"),
        tls_context=loopback_tls.client_context(),
        allow_private=True,
    )
    assert result.ok, result
    assert result.latency_ms >= 0


async def test_smtp_wrong_password_is_auth_failed_with_the_server_reply(
    smtp_starttls: SmtpServer, loopback_tls: LoopbackTLS, credentials: Credentials
) -> None:
    settings = smtp_for(smtp_starttls, credentials, "starttls")
    smtp_starttls.users[credentials.username] = "something else"
    quits = smtp_starttls.quits
    result = await probe_smtp(
        settings, tls_context=loopback_tls.client_context(), allow_private=True
    )
    assert result.code == "AUTH_FAILED"
    # A rejected login still ends with QUIT; the probe waited for its reply, so the
    # server has counted it by now.
    assert smtp_starttls.quits == quits + 1
    assert "535 5.7.8 Authentication credentials invalid" in result.message
    assert result.reply_code == 535
    assert not result.transient
    assert_no_secret(result, credentials.password)
    # One rejected login per probe: providers lock accounts after a few.
    attempts = [user for _, user in smtp_starttls.auth_attempts if user == credentials.username]
    assert len(attempts) == 1


async def test_smtp_unknown_user_is_auth_failed(smtp_plain: SmtpServer) -> None:
    settings = SmtpSettings(HOST, smtp_plain.port, "none", "nobody@mailfleet.test", "pw")
    result = await probe_smtp(settings, allow_private=True)
    assert result.code == "AUTH_FAILED"


async def test_smtp_connection_refused(closed_port: int, credentials: Credentials) -> None:
    settings = SmtpSettings(HOST, closed_port, "none", credentials.username, credentials.password)
    result = await probe_smtp(settings, allow_private=True)
    assert result.code == "CONNECTION_REFUSED"
    assert result.transient
    assert str(closed_port) in result.message


async def test_smtp_silent_server_times_out(
    blackhole: BlackholeServer, credentials: Credentials
) -> None:
    settings = SmtpSettings(HOST, blackhole.port, "none", credentials.username, "pw")
    result = await probe_smtp(settings, timeout=0.5, allow_private=True)
    assert result.code == "TIMEOUT"
    assert result.transient
    assert "greeting" in result.message
    assert 400 <= result.latency_ms < 3000


async def test_smtp_implicit_tls_against_a_plaintext_port_is_tls_error(
    smtp_plain: SmtpServer, loopback_tls: LoopbackTLS, credentials: Credentials
) -> None:
    result = await probe_smtp(
        smtp_for(smtp_plain, credentials, "ssl"),
        tls_context=loopback_tls.client_context(),
        allow_private=True,
        timeout=5,
    )
    assert result.code == "TLS_ERROR", result
    assert result.message.endswith(
        "(this port does not speak TLS from the first byte; for STARTTLS use port 587 "
        "with secure: true)"
    ), result.message


async def test_smtp_untrusted_certificate_is_tls_error(
    smtp_ssl: SmtpServer, credentials: Credentials
) -> None:
    # No tls_context: the system trust store, which does not know the test CA.
    result = await probe_smtp(smtp_for(smtp_ssl, credentials, "ssl"), allow_private=True)
    assert result.code == "TLS_ERROR"
    assert "certificate" in result.message


async def test_smtp_untrusted_certificate_after_starttls_is_tls_error(
    smtp_starttls: SmtpServer, credentials: Credentials
) -> None:
    result = await probe_smtp(smtp_for(smtp_starttls, credentials, "starttls"), allow_private=True)
    assert result.code == "TLS_ERROR"
    assert "certificate" in result.message


async def test_smtp_starttls_required_but_not_offered_is_tls_error(
    smtp_plain: SmtpServer, credentials: Credentials
) -> None:
    result = await probe_smtp(smtp_for(smtp_plain, credentials, "starttls"), allow_private=True)
    assert result.code == "TLS_ERROR"
    # The hint speaks the API's terms (secure and the port), not "try ssl".
    assert result.message.endswith(
        "does not offer STARTTLS (for TLS from the first byte use port 465 with "
        "secure: true; secure: false logs in unencrypted)"
    ), result.message


async def test_smtp_plaintext_login_on_a_starttls_only_server_is_tls_error(
    smtp_starttls: SmtpServer, credentials: Credentials
) -> None:
    result = await probe_smtp(smtp_for(smtp_starttls, credentials, "none"), allow_private=True)
    assert result.code == "TLS_ERROR"
    assert result.message.endswith("only allows login after STARTTLS (set secure: true)")


async def test_smtp_password_echoed_by_the_server_is_scrubbed(credentials: Credentials) -> None:
    def echo(username: str, password: str) -> str:
        return f"535 5.7.8 {username} tried {password!s} and that is wrong"

    with SmtpServer(failure_reply=echo) as server:
        settings = SmtpSettings(
            HOST, server.port, "none", credentials.username, credentials.password
        )
        server.users[credentials.username] = "the real one"
        result = await probe_smtp(settings, allow_private=True)
    assert result.code == "AUTH_FAILED"
    assert credentials.username in result.message
    assert "********" in result.message
    assert_no_secret(result, credentials.password)


async def test_smtp_short_password_is_scrubbed_where_it_stands_alone(
    credentials: Credentials,
) -> None:
    def echo(username: str, password: str) -> str:
        return f"535 5.7.8 expected a password, not {password}"

    with SmtpServer(failure_reply=echo) as server:
        settings = SmtpSettings(HOST, server.port, "none", credentials.username, "ex")
        result = await probe_smtp(settings, allow_private=True)
    assert result.message.endswith("535 5.7.8 expected a password, not ********")


async def test_smtp_temporary_auth_failure_is_transient(credentials: Credentials) -> None:
    def busy(username: str, password: str) -> str:
        return "454 4.7.0 Temporary authentication failure"

    with SmtpServer(failure_reply=busy) as server:
        server.users[credentials.username] = credentials.password
        settings = SmtpSettings(HOST, server.port, "none", credentials.username, "wrong")
        result = await probe_smtp(settings, allow_private=True)
    assert result.code == "PROTOCOL_ERROR"
    assert result.reply_code == 454
    assert result.transient
    assert "454 4.7.0 Temporary authentication failure" in result.message


async def test_smtp_certificate_for_another_name_is_tls_error(
    tmp_path: Path, credentials: Credentials
) -> None:
    other = LoopbackTLS.create(tmp_path, names=("mail.elsewhere.test",))
    with SmtpServer(mode="ssl", tls=other) as server:
        result = await probe_smtp(
            smtp_for(server, credentials, "ssl"),
            tls_context=other.client_context(),
            allow_private=True,
        )
    assert result.code == "TLS_ERROR"
    assert "mismatch" in result.message.lower()
    assert "127.0.0.1" in result.message


async def test_smtp_probe_of_an_imap_port_is_protocol_error(
    dovecot: DovecotServer, credentials: Credentials
) -> None:
    settings = SmtpSettings(HOST, dovecot.port, "none", credentials.username, "pw")
    result = await probe_smtp(settings, allow_private=True, timeout=5)
    assert result.code == "PROTOCOL_ERROR", result
    assert "does not speak SMTP" in result.message
    assert "Dovecot" in result.message


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
async def test_smtp_loopback_is_forbidden_without_allow_private(
    host: str, smtp_plain: SmtpServer, credentials: Credentials
) -> None:
    settings = SmtpSettings(host, smtp_plain.port, "none", credentials.username, "pw")
    result = await probe_smtp(settings)
    assert result.code == "FORBIDDEN_TARGET"
    assert not result.transient
    assert all(user != credentials.username for _, user in smtp_plain.auth_attempts)


async def test_smtp_invalid_host_name_is_host_not_found(credentials: Credentials) -> None:
    settings = SmtpSettings("bad host..name", 587, "starttls", credentials.username, "pw")
    result = await probe_smtp(settings, allow_private=True)
    assert result.code == "HOST_NOT_FOUND"


# --- IMAP ---------------------------------------------------------------------------


async def test_imap_plain_login_lists_folders(
    dovecot: DovecotServer, credentials: Credentials
) -> None:
    result = await probe_imap(imap_for(dovecot, credentials, "none"), allow_private=True)
    assert result.ok, result
    assert result.protocol == "imap"
    assert sorted(result.folders) == sorted(DEFAULT_FOLDERS)
    assert result.folders[0] == "INBOX"
    assert_no_secret(result, credentials.password)


async def test_imap_starttls_login_succeeds(
    dovecot: DovecotServer, loopback_tls: LoopbackTLS, credentials: Credentials
) -> None:
    result = await probe_imap(
        imap_for(dovecot, credentials, "starttls"),
        tls_context=loopback_tls.client_context(),
        allow_private=True,
    )
    assert result.ok, result
    assert "INBOX" in result.folders


async def test_imap_implicit_tls_login_succeeds(
    dovecot: DovecotServer, loopback_tls: LoopbackTLS, credentials: Credentials
) -> None:
    result = await probe_imap(
        imap_for(dovecot, credentials, "ssl"),
        tls_context=loopback_tls.client_context(),
        allow_private=True,
    )
    assert result.ok, result
    assert "Éléments envoyés" in result.folders


async def test_imap_wrong_password_is_auth_failed(
    dovecot: DovecotServer, credentials: Credentials
) -> None:
    dovecot.add_user(credentials.username, "the real one")
    settings = ImapSettings(HOST, dovecot.port, "none", credentials.username, credentials.password)
    result = await probe_imap(settings, allow_private=True)
    assert result.code == "AUTH_FAILED"
    assert "[AUTHENTICATIONFAILED] Authentication failed." in result.message
    assert not result.transient
    assert_no_secret(result, credentials.password)
    # A rejected login still ends with LOGOUT: Dovecot tells it ("Aborted login by
    # logging out") from a hang-up ("Connection closed") in its session-end line.
    line = await dovecot_session_end(dovecot, f"user=<{credentials.username}>")
    assert "Aborted login by logging out" in line, line


async def test_imap_connection_refused(closed_port: int) -> None:
    settings = ImapSettings(HOST, closed_port, "ssl", "someone", "pw")
    result = await probe_imap(settings, allow_private=True)
    assert result.code == "CONNECTION_REFUSED"


async def test_imap_silent_server_times_out(blackhole: BlackholeServer) -> None:
    settings = ImapSettings(HOST, blackhole.port, "ssl", "someone", "pw")
    result = await probe_imap(settings, timeout=0.5, allow_private=True)
    assert result.code == "TIMEOUT"
    assert "TLS handshake" in result.message
    assert result.latency_ms < 3000


async def test_imap_implicit_tls_against_a_plaintext_port_is_tls_error(
    dovecot: DovecotServer, loopback_tls: LoopbackTLS, credentials: Credentials
) -> None:
    settings = imap_for(dovecot, credentials, "ssl", port=dovecot.port)
    result = await probe_imap(
        settings, tls_context=loopback_tls.client_context(), allow_private=True, timeout=5
    )
    assert result.code == "TLS_ERROR", result
    assert result.message.endswith(
        "(this port does not speak TLS from the first byte; for STARTTLS use port 143 "
        "with secure: true)"
    ), result.message


async def test_imap_untrusted_certificate_is_tls_error(
    dovecot: DovecotServer, credentials: Credentials
) -> None:
    result = await probe_imap(imap_for(dovecot, credentials, "ssl"), allow_private=True)
    assert result.code == "TLS_ERROR"
    assert "certificate" in result.message


async def test_imap_untrusted_certificate_after_starttls_is_tls_error(
    dovecot: DovecotServer, credentials: Credentials
) -> None:
    result = await probe_imap(imap_for(dovecot, credentials, "starttls"), allow_private=True)
    assert result.code == "TLS_ERROR"
    assert "certificate" in result.message


async def test_imap_probe_of_an_smtp_port_is_protocol_error(smtp_plain: SmtpServer) -> None:
    settings = ImapSettings(HOST, smtp_plain.port, "none", "someone", "pw")
    result = await probe_imap(settings, allow_private=True, timeout=5)
    assert result.code == "PROTOCOL_ERROR"
    assert "SMTP" in result.message
    assert result.latency_ms < 3000


async def test_imap_plaintext_probe_of_an_implicit_tls_port_times_out_with_a_hint(
    dovecot: DovecotServer, credentials: Credentials
) -> None:
    assert dovecot.ssl_port is not None
    settings = imap_for(dovecot, credentials, "none", port=dovecot.ssl_port)
    result = await probe_imap(settings, allow_private=True, timeout=0.5)
    assert result.code == "TIMEOUT"
    assert result.message.endswith(
        "(a port that expects TLS from the first byte stays silent; for that use port 993 "
        "with secure: true)"
    ), result.message


async def dovecot_session_end(dovecot: DovecotServer, marker: str) -> str:
    """The log line Dovecot writes when that session ends; it writes it a moment
    after the client went, so wait for it (up to about 10 s)."""
    for _ in range(200):
        for line in dovecot.log_path.read_text(errors="replace").splitlines():
            if marker in line and "Disconnected" in line:
                return line
        await asyncio.sleep(0.05)
    raise AssertionError(f"no session end for {marker} in:\n{dovecot.log_tail()}")


async def test_imap_loopback_is_forbidden_without_allow_private(dovecot: DovecotServer) -> None:
    settings = ImapSettings("localhost", dovecot.port, "none", "someone", "pw")
    result = await probe_imap(settings)
    assert result.code == "FORBIDDEN_TARGET"


async def test_imap_non_ascii_password(dovecot: DovecotServer, credentials: Credentials) -> None:
    creds = Credentials(credentials.username, "pässwörd-€-" + credentials.password[-12:])
    result = await probe_imap(imap_for(dovecot, creds, "none"), allow_private=True)
    assert result.ok, result


async def test_imap_works_among_thousands_of_users(dovecot: DovecotServer) -> None:
    dovecot.add_users({f"bulk-{n}@mailfleet.test": f"pw-{n}" for n in range(2000)})
    for n in (0, 1999):
        settings = ImapSettings(HOST, dovecot.port, "none", f"bulk-{n}@mailfleet.test", f"pw-{n}")
        result = await probe_imap(settings, allow_private=True)
        assert result.ok, result


# --- secrets across every failure ---------------------------------------------------


async def test_no_failure_message_contains_the_password(
    smtp_plain: SmtpServer,
    smtp_starttls: SmtpServer,
    dovecot: DovecotServer,
    blackhole: BlackholeServer,
    closed_port: int,
    credentials: Credentials,
) -> None:
    pw = credentials.password
    user = credentials.username
    smtp_plain.users[user] = "other"
    dovecot.add_user(user, "other")
    results = [
        await probe_smtp(SmtpSettings(HOST, smtp_plain.port, "none", user, pw), allow_private=True),
        await probe_smtp(SmtpSettings(HOST, smtp_plain.port, "ssl", user, pw), allow_private=True),
        await probe_smtp(
            SmtpSettings(HOST, smtp_starttls.port, "starttls", user, pw), allow_private=True
        ),
        await probe_smtp(SmtpSettings(HOST, closed_port, "none", user, pw), allow_private=True),
        await probe_smtp(
            SmtpSettings(HOST, blackhole.port, "none", user, pw), timeout=0.3, allow_private=True
        ),
        await probe_smtp(SmtpSettings(HOST, smtp_plain.port, "none", user, pw)),
        await probe_imap(ImapSettings(HOST, dovecot.port, "none", user, pw), allow_private=True),
        await probe_imap(ImapSettings(HOST, dovecot.port, "ssl", user, pw), allow_private=True),
        await probe_imap(
            ImapSettings(HOST, blackhole.port, "none", user, pw), timeout=0.3, allow_private=True
        ),
        await probe_imap(ImapSettings(HOST, smtp_plain.port, "none", user, pw), allow_private=True),
    ]
    assert all(not result.ok for result in results)
    for result in results:
        assert_no_secret(result, pw)


@pytest.mark.parametrize("context", [None, ssl.create_default_context()])
async def test_default_and_explicit_contexts_both_verify(
    context: ssl.SSLContext | None, smtp_ssl: SmtpServer, credentials: Credentials
) -> None:
    result = await probe_smtp(
        smtp_for(smtp_ssl, credentials, "ssl"), tls_context=context, allow_private=True
    )
    assert result.code == "TLS_ERROR"
