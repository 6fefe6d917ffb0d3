"""Raw TCP endpoints for failure tests: a server that never answers, and free ports."""

from __future__ import annotations

import asyncio
from types import TracebackType

from tests.servers.common import unused_tcp_port

__all__ = ["BlackholeServer", "unused_tcp_port"]

__all__ = ["BlackholeServer", "unused_tcp_port"]


class BlackholeServer:
    """Accepts on 127.0.0.1 and reads (and drops) whatever the client sends.

    Reading matters: a client that writes a TLS ClientHello or a command must not
    block on a full socket buffer, or a test would measure the wrong wait.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._swallow, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        # Let the handlers see EOF and end on their own: a handler still pending
        # when the loop shuts down gets cancelled, and asyncio logs that as an error.
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=2)
        await self._server.wait_closed()
        self._server = None

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
            task.add_done_callback(self._handlers.discard)
        self._writers.add(writer)
        try:
            while await reader.read(65536):
                pass
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def __aenter__(self) -> BlackholeServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
