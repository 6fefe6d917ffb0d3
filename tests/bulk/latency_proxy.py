"""A TCP proxy on loopback that adds network latency, for bulk-connect tests and the bench.

Loopback answers in microseconds, so a sequential client looks almost as fast as a
concurrent one there. Real providers are tens to hundreds of milliseconds away:
this proxy delays every chunk by half the round trip in each direction, keeping
the order of the bytes, so concurrency buys what it buys on the internet.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Iterator
from types import TracebackType
from typing import cast

__all__ = ["LatencyProxy", "latency_proxy_in_thread"]


class LatencyProxy:
    """Listens on `host`:`port` (picked by the OS) and forwards to `target_port`.

    Built on asyncio protocols, not streams: a chunk costs an append and at most one
    timer, so the proxy's own CPU (which shares the machine with what a bench
    measures) stays small: about a fifth of the streams version's per login.
    """

    def __init__(
        self,
        target_port: int,
        *,
        rtt_ms: float,
        target_host: str = "127.0.0.1",
        host: str = "127.0.0.1",
        drop_first: int = 0,
    ) -> None:
        """`drop_first` hangs up on that many connections at once, as a flaky or
        overloaded server does."""
        self.target_host = target_host
        self.target_port = target_port
        self.delay = max(0.0, rtt_ms) / 2000
        self.host = host
        self.port = 0
        self.drop_first = drop_first
        self.connections = 0
        self.active = 0
        self.peak = 0
        # Clients connected at once, from the accept to the client's hang-up (the
        # proxy's own sides close up to a delay later): what a per-host login cap
        # bounds, since a login's slot is freed once its client has hung up.
        self.clients = 0
        self.peak_clients = 0
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Link(self, loop).client, self.host, 0, backlog=4096
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for link in list(self._links):
            link.abort()
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> LatencyProxy:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _opened(self, link: _Link) -> None:
        self._links.add(link)
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.clients += 1
        self.peak_clients = max(self.peak_clients, self.clients)

    def _closed(self, link: _Link) -> None:
        self._links.discard(link)
        self.active -= 1


# What a direction's queue holds after its last chunk: the sender hung up, so hang
# up on the receiver once the chunks before have been delivered.
_HANG_UP = None


class _Side(asyncio.Protocol):
    """One of a link's two connections: what it reads goes to the other side."""

    def __init__(self, link: _Link) -> None:
        self.link = link
        self.transport: asyncio.Transport | None = None
        self.other: _Side
        # Chunks to write to this side: (when, bytes or _HANG_UP), in arrival order.
        self.outgoing: deque[tuple[float, bytes | None]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.hung_up = False  # it sent EOF or went away: nothing more comes from it
        self.finished = False  # the other side's hang-up was delivered: it is closing
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)
        self.link.made(self)

    def data_received(self, data: bytes) -> None:
        self.other.send(data)

    def eof_received(self) -> bool:
        self._hang_up()
        return True  # keep writing to it until the other side's bytes are out

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._hang_up()
        self.link.lost()

    def pause_writing(self) -> None:
        if self.other.transport is not None:
            self.other.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.other.transport is not None and not self.other.closed:
            self.other.transport.resume_reading()

    def _hang_up(self) -> None:
        if not self.hung_up:
            self.hung_up = True
            self.link.hung_up(self)
            self.other.send(_HANG_UP)

    def send(self, data: bytes | None) -> None:
        """Deliver `data` to this side one delay from now; a hang-up as soon as the
        chunks before it are delivered (the FIN is not what a login waits for)."""
        if self.finished:
            return
        now = self.link.loop.time()
        if data is _HANG_UP:
            due = self.outgoing[-1][0] if self.outgoing else now
        else:
            due = now + self.link.proxy.delay
        self.outgoing.append((due, data))
        if self.timer is None:
            self.deliver()

    def deliver(self) -> None:
        self.timer = None
        if self.transport is None:
            return  # not connected yet: made() delivers
        now = self.link.loop.time()
        while self.outgoing and self.outgoing[0][0] <= now:
            _, data = self.outgoing.popleft()
            if data is _HANG_UP:
                self.finished = True
                self.outgoing.clear()
                self.transport.close()  # after what is buffered
                return
            if not self.closed:
                self.transport.write(data)
        if self.outgoing:
            self.timer = self.link.loop.call_at(self.outgoing[0][0], self.deliver)


class _Link:
    """A client's connection and the proxy's own to the target."""

    def __init__(self, proxy: LatencyProxy, loop: asyncio.AbstractEventLoop) -> None:
        self.proxy = proxy
        self.loop = loop
        self.client = _Side(self)
        self.server = _Side(self)
        self.client.other, self.server.other = self.server, self.client
        self.connecting: asyncio.Task[object] | None = None
        self.counted = False

    def made(self, side: _Side) -> None:
        if side is self.server:
            side.deliver()  # what the client sent while we connected
            return
        proxy = self.proxy
        proxy.connections += 1
        assert side.transport is not None
        if proxy.connections <= proxy.drop_first:
            side.transport.close()
            return
        self.counted = True
        proxy._opened(self)
        # The connection itself costs a round trip, as a TCP handshake would.
        self.loop.call_later(proxy.delay * 2, self._connect)

    def _connect(self) -> None:
        if self.client.closed:
            self.lost()
            return
        self.connecting = self.loop.create_task(
            self.loop.create_connection(
                lambda: self.server, self.proxy.target_host, self.proxy.target_port
            )
        )
        self.connecting.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[object]) -> None:
        if task.cancelled() or task.exception() is not None:
            self.server.closed = True
            if self.client.transport is not None:
                self.client.transport.close()
            self.lost()

    def hung_up(self, side: _Side) -> None:
        if side is self.client and self.counted:
            self.proxy.clients -= 1

    def lost(self) -> None:
        """Once both sides are gone (or the target never answered), the link is."""
        server_gone = self.server.closed or self.server.transport is None
        if self.client.closed and server_gone and self.counted:
            self.counted = False
            self.proxy._closed(self)

    def abort(self) -> None:
        if self.connecting is not None:
            self.connecting.cancel()
        for side in (self.client, self.server):
            if side.timer is not None:
                side.timer.cancel()
            if side.transport is not None:
                side.transport.abort()


@contextlib.contextmanager
def latency_proxy_in_thread(
    target_port: int, *, rtt_ms: float, drop_first: int = 0
) -> Iterator[LatencyProxy]:
    """A proxy on its own event loop in a thread, for tests that block (subprocesses)."""
    loop = asyncio.new_event_loop()
    proxy = LatencyProxy(target_port, rtt_ms=rtt_ms, drop_first=drop_first)
    thread = threading.Thread(target=loop.run_forever, name="latency-proxy", daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(timeout=10)
    try:
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
