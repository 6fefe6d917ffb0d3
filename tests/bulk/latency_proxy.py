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
from collections.abc import Callable, Iterator
from types import TracebackType

__all__ = ["LatencyProxy", "latency_proxy_in_thread"]


class LatencyProxy:
    """Listens on `host`:`port` (picked by the OS) and forwards to `target_port`."""

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
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=2)
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

    async def _serve(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        if self.connections <= self.drop_first:
            client_writer.close()
            return
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.active += 1
        self.peak = max(self.peak, self.active)
        self.clients += 1
        self.peak_clients = max(self.peak_clients, self.clients)
        client_gone = False

        def hung_up() -> None:
            nonlocal client_gone
            if not client_gone:
                client_gone = True
                self.clients -= 1

        try:
            # The connection itself costs a round trip, as a TCP handshake would.
            await asyncio.sleep(self.delay * 2)
            try:
                server_reader, server_writer = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                return
            try:
                await asyncio.gather(
                    self._pump(client_reader, server_writer, on_eof=hung_up),
                    self._pump(server_reader, client_writer),
                )
            finally:
                server_writer.close()
        finally:
            hung_up()
            self.active -= 1
            client_writer.close()

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_eof: Callable[[], None] | None = None,
    ) -> None:
        """Copy one direction, each chunk delivered `delay` seconds after it arrived;
        `on_eof` is called as soon as the reading side has hung up."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, data = item
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        delivery = asyncio.create_task(deliver())
        try:
            while data := await reader.read(65536):
                queue.put_nowait((loop.time() + self.delay, data))
        except (ConnectionError, OSError):
            pass
        finally:
            if on_eof is not None:
                on_eof()
            queue.put_nowait(None)
            with contextlib.suppress(ConnectionError, OSError):
                await delivery
            # The peer hung up: hang up on the other side too, once its bytes are out.
            writer.close()


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
