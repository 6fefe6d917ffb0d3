"""An authoritative DNS server on loopback for tests, built on dnslib.

`LocalDnsServer` answers from an in-memory zone that tests edit while it runs
(`set_records`, `clear`), over UDP and TCP on one port, like a real nameserver:
CNAMEs inside the zone are chased, NXDOMAIN and NODATA are told apart, and UDP
answers too large for the client are truncated so the client retries over TCP.
Names can be made to time out, SERVFAIL or be refused, or answer late.

`SilentDnsServer` binds UDP and TCP and never answers anything, for timeouts.

Both run in background threads, so they work with any event loop and from sync code.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal

from dnslib import (  # type: ignore[import-untyped]
    AAAA,
    CNAME,
    MX,
    NS,
    PTR,
    QTYPE,
    RCODE,
    RR,
    TXT,
    A,
    DNSRecord,
)
from dnslib.server import (  # type: ignore[import-untyped]
    BaseResolver,
    DNSHandler,
    DNSLogger,
    DNSServer,
)

__all__ = ["DnsFailure", "LocalDnsServer", "SilentDnsServer"]

DnsFailure = Literal["timeout", "servfail", "refused"]
"""How a name misbehaves: no answer at all, SERVFAIL, or REFUSED."""

RecordValue = str | Sequence[str]
"""One record in text form. TXT takes a list for several character-strings."""

_MAX_CNAME_CHAIN = 8
_CLASSIC_UDP_LIMIT = 512


def _normalize(name: str) -> str:
    return name.strip().rstrip(".").lower()


def _txt_strings(value: RecordValue) -> list[bytes]:
    # Zone tools split long TXT values into 255-byte strings; do the same so tests
    # can publish a 2048-bit DKIM key as one value.
    parts = [value] if isinstance(value, str) else list(value)
    strings: list[bytes] = []
    for part in parts:
        data = part.encode()
        strings.extend(data[i : i + 255] for i in range(0, len(data), 255))
        if not data:
            strings.append(b"")
    return strings


def _rdata(rtype: str, value: RecordValue) -> Any:
    if rtype == "TXT":
        return TXT(_txt_strings(value))
    if not isinstance(value, str):
        raise ValueError(f"{rtype} values are strings, got {value!r}")
    if rtype == "A":
        return A(value)
    if rtype == "AAAA":
        return AAAA(value)
    if rtype == "MX":
        preference, _, exchange = value.partition(" ")
        return MX(exchange.strip() or ".", int(preference))
    if rtype == "CNAME":
        return CNAME(value)
    if rtype == "NS":
        return NS(value)
    if rtype == "PTR":
        return PTR(value)
    raise ValueError(f"unsupported record type {rtype}")


class _Drop(Exception):
    """Raised by the resolver when a query must go unanswered."""


class _ZoneResolver(BaseResolver):  # type: ignore[misc]
    def __init__(self, server: LocalDnsServer) -> None:
        self._server = server

    def resolve(self, request: Any, handler: Any) -> Any:
        qname = _normalize(str(request.q.qname))
        qtype = QTYPE[request.q.qtype]
        server = self._server
        with server.lock:
            server.queries.append((qname, qtype, handler.protocol))
            failure = server.failures.get(qname)
            delay = server.delays.get(qname, 0.0)
            if server.unresponsive:
                failure = "timeout"
        if delay:
            time.sleep(delay)
        if failure == "timeout":
            raise _Drop
        reply = request.reply()
        if failure is not None:
            reply.header.rcode = RCODE.SERVFAIL if failure == "servfail" else RCODE.REFUSED
            return reply
        with server.lock:
            self._answer(reply, qname, qtype)
        return reply

    def _answer(self, reply: Any, qname: str, qtype: str) -> None:
        zone = self._server.zone
        name = qname
        for _ in range(_MAX_CNAME_CHAIN):
            rrsets = zone.get(name, {})
            if qtype != "CNAME" and "CNAME" in rrsets:
                ttl, values = rrsets["CNAME"]
                reply.add_answer(RR(name, QTYPE.CNAME, rdata=values[0], ttl=ttl))
                name = _normalize(str(values[0].label))
                continue
            for rtype, (ttl, values) in rrsets.items():
                if qtype in (rtype, "ANY"):
                    for rdata in values:
                        reply.add_answer(RR(name, getattr(QTYPE, rtype), rdata=rdata, ttl=ttl))
            # An empty non-terminal (a name with only names below it) exists: NODATA.
            exists = bool(rrsets) or any(other.endswith("." + name) for other in zone)
            if not exists:
                reply.header.rcode = RCODE.NXDOMAIN
            return


class _Handler(DNSHandler):  # type: ignore[misc]
    def handle(self) -> None:
        with contextlib.suppress(_Drop):
            super().handle()

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        packed: bytes = reply.pack()
        if self.protocol == "udp":
            limit = _CLASSIC_UDP_LIMIT
            for rr in request.ar:
                if rr.rtype == QTYPE.OPT:
                    limit = max(limit, rr.rclass)
            if self.server.resolver_owner.tcp_only or len(packed) > limit:
                # dnslib's reply.truncate() drops the question too, and clients
                # discard an answer whose question does not match theirs.
                truncated = request.reply()
                truncated.header.rcode = reply.header.rcode
                truncated.header.tc = 1
                packed = truncated.pack()
        return packed


class _QuietLogger(DNSLogger):  # type: ignore[misc]
    def __init__(self, sink: list[str]) -> None:
        super().__init__(log="error", prefix=False, logf=sink.append)


class LocalDnsServer:
    """An authoritative nameserver for whatever names tests put in its zone.

    Usage: `with LocalDnsServer() as server:`, then
    `server.set_records("example.test", "MX", ["10 mx.example.test"])` and point a
    resolver at it: `make_resolver([server.nameserver])`.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.lock = threading.Lock()
        # name -> rtype -> (ttl, rdata objects)
        self.zone: dict[str, dict[str, tuple[int, list[Any]]]] = {}
        self.failures: dict[str, DnsFailure] = {}
        self.delays: dict[str, float] = {}
        self.unresponsive = False
        self.tcp_only = False
        self.queries: list[tuple[str, str, str]] = []
        self.errors: list[str] = []
        self._servers: list[Any] = []

    @property
    def nameserver(self) -> str:
        """The address in the form `make_resolver` takes: "ip:port" or "[v6]:port"."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> None:
        if self._servers:
            return
        resolver = _ZoneResolver(self)
        logger = _QuietLogger(self.errors)
        last_error: OSError | None = None
        # UDP takes a free port; TCP then needs the same one, which someone may
        # already hold, so try a few ports.
        for _ in range(20):
            udp = DNSServer(resolver, address=self.host, port=0, logger=logger, handler=_Handler)
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    resolver,
                    address=self.host,
                    port=port,
                    tcp=True,
                    logger=logger,
                    handler=_Handler,
                )
            except OSError as exc:
                udp.server.server_close()
                last_error = exc
                continue
            break
        else:
            raise RuntimeError(f"no port free for both UDP and TCP: {last_error}")
        for server in (udp, tcp):
            server.server.resolver_owner = self
            # dnslib's start_thread polls for shutdown every 0.5 s; stopping fast
            # matters when every test package starts its own server.
            server.thread = threading.Thread(
                target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            server.thread.start()
        self._servers = [udp, tcp]
        self.port = port

    def stop(self) -> None:
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
            server.thread.join(timeout=5)
        self._servers = []

    def __enter__(self) -> LocalDnsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def set_records(
        self, name: str, rtype: str, values: Sequence[RecordValue], ttl: int = 300
    ) -> None:
        """Replace the `rtype` records at `name`; an empty `values` removes them.

        Values are text: "192.0.2.1" (A), "10 mx.example.test" (MX), "target.test"
        (CNAME, NS, PTR), "v=spf1 -all" or ["part one", "part two"] (TXT).
        """
        key, rtype = _normalize(name), rtype.upper()
        rdata = [_rdata(rtype, value) for value in values]
        with self.lock:
            rrsets = self.zone.setdefault(key, {})
            if rdata:
                rrsets[rtype] = (ttl, rdata)
            else:
                rrsets.pop(rtype, None)
            if not rrsets:
                del self.zone[key]

    def add_record(self, name: str, rtype: str, value: RecordValue, ttl: int = 300) -> None:
        """Add one record next to those already at `name`."""
        key, rtype = _normalize(name), rtype.upper()
        rdata = _rdata(rtype, value)
        with self.lock:
            _, existing = self.zone.setdefault(key, {}).get(rtype, (ttl, []))
            self.zone[key][rtype] = (ttl, [*existing, rdata])

    def remove(self, name: str, rtype: str | None = None) -> None:
        """Remove one type, or every record, at `name`."""
        key = _normalize(name)
        with self.lock:
            if rtype is None:
                self.zone.pop(key, None)
            elif key in self.zone:
                self.zone[key].pop(rtype.upper(), None)
                if not self.zone[key]:
                    del self.zone[key]

    def set_failure(self, name: str, failure: DnsFailure | None) -> None:
        """Make every query for `name` fail that way (None restores normal answers)."""
        with self.lock:
            if failure is None:
                self.failures.pop(_normalize(name), None)
            else:
                self.failures[_normalize(name)] = failure

    def set_delay(self, name: str, seconds: float) -> None:
        """Answer queries for `name` only after `seconds`."""
        with self.lock:
            self.delays[_normalize(name)] = seconds

    def clear(self) -> None:
        """Forget every record, failure, delay and logged query."""
        with self.lock:
            self.zone.clear()
            self.failures.clear()
            self.delays.clear()
            self.queries.clear()
            self.errors.clear()
            self.unresponsive = False
            self.tcp_only = False

    def queried(self, name: str, rtype: str | None = None) -> int:
        """How many queries for `name` (and `rtype`) arrived since the last clear."""
        key = _normalize(name)
        with self.lock:
            return sum(
                1 for qname, qtype, _ in self.queries if qname == key and rtype in (None, qtype)
            )


class SilentDnsServer:
    """A nameserver address that never answers, over UDP or TCP.

    UDP datagrams sit unread in the socket buffer; TCP connections complete in the
    kernel's backlog and are never served. Clients can only time out.
    """

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._sockets: list[socket.socket] = []

    @property
    def nameserver(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(20):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(family, socket.SOCK_STREAM)
            try:
                tcp.bind((self.host, port))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(64)
            self._sockets = [udp, tcp]
            self.port = port
            return
        raise RuntimeError("no port free for both UDP and TCP")

    def stop(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def __enter__(self) -> SilentDnsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
