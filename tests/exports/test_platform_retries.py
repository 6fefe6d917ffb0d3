"""The platform retry policy against a real loopback server that takes requests
and never answers, and against a port where nothing listens."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from mailfleet.platforms.http import HttpPolicy, PlatformClient, PlatformUnreachable
from tests.servers.common import unused_tcp_port

POLICY = HttpPolicy(
    allow_private=True,
    nameservers=None,
    tls_ca_file=None,
    timeout=0.5,
    max_attempts=3,
    retry_delay=0.01,
    max_retry_delay=0.05,
    concurrency=1,
)


@dataclass
class SilentServer:
    """Reads each request's head and never answers: a platform that took the
    request and then hung (the client cannot tell whether it acted on it)."""

    port: int = 0
    heads: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            self.heads.append(await reader.readuntil(b"\r\n\r\n"))
            await reader.read()  # until the client gives up and closes
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def silent() -> AsyncIterator[SilentServer]:
    server = SilentServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server
        listener.close()


async def test_a_post_that_timed_out_is_not_sent_again(silent: SilentServer) -> None:
    async with PlatformClient(f"http://127.0.0.1:{silent.port}", POLICY) as client:
        with pytest.raises(PlatformUnreachable) as caught:
            await client.request("POST", "/api/v2/accounts", json_body={"email": "a@b.test"})
    assert caught.value.code == "TIMEOUT"
    assert caught.value.sent is True
    assert caught.value.attempts == 1
    assert "not sent again" in caught.value.message
    assert len(silent.heads) == 1, "one POST: a second could create a second account"


async def test_a_get_that_timed_out_is_tried_again(silent: SilentServer) -> None:
    async with PlatformClient(f"http://127.0.0.1:{silent.port}", POLICY) as client:
        with pytest.raises(PlatformUnreachable) as caught:
            await client.request("GET", "/api/v2/accounts")
    assert caught.value.code == "TIMEOUT"
    assert caught.value.attempts == 3
    assert len(silent.heads) == 3


async def test_a_post_with_an_idempotency_key_is_tried_again(silent: SilentServer) -> None:
    async with PlatformClient(f"http://127.0.0.1:{silent.port}", POLICY) as client:
        with pytest.raises(PlatformUnreachable) as caught:
            await client.request(
                "POST", "/v1/mailboxes", json_body={"email": "a@b.test"}, idempotency_key="k-1"
            )
    assert caught.value.attempts == 3
    assert len(silent.heads) == 3
    assert all(b"\r\nidempotency-key: k-1\r\n" in head.lower() for head in silent.heads)


async def test_a_post_that_never_connected_is_tried_again() -> None:
    """Refused connections: nothing was sent, so even a POST is sent again."""
    port = unused_tcp_port()
    async with PlatformClient(f"http://127.0.0.1:{port}", POLICY) as client:
        with pytest.raises(PlatformUnreachable) as caught:
            await client.request("POST", "/api/v2/accounts", json_body={"email": "a@b.test"})
    assert caught.value.code == "CONNECTION_FAILED"
    assert caught.value.sent is False
    assert caught.value.attempts == 3
