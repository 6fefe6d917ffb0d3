"""Bulk logins in a process of their own, so they do not share an event loop (and an
interpreter lock) with the requests the server answers.

A bulk job logs in to hundreds of mailboxes at once: TLS handshakes, SMTP and IMAP
dialogues, DNS. Run on the server's event loop, that work held every request
behind it (a job's status poll waited its turn among 200 logins: p95 744 ms on
two cores). Here a child process (`python -m mailfleet.mail.login_process`) runs
the probes with an event loop of its own; the server hands it one mailbox at a
time over a pipe and gets the verdict back. What stays in the server is what
must: the login cap (which mailbox may start), recording, retries, durability.

The pipe carries JSON lines. The first line to the child is the `ProbeOptions`;
each next one is a request `{"id", "smtp", "imap"}` (the login settings, passwords
included: a pipe between two processes of the same user, never logged), answered
by `{"id", "outcome"}` (the results, never a secret) or `{"id", "error"}`.

If the child dies, every login it had in hand fails with `LoginProcessLost` (the
chunk's step fails and runs again, skipping what it recorded, as after a crash of
the whole process), and the next login starts a new child. The child ends when
its input closes: when the server closes it, or dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import signal
import sys
from typing import Any, Final

from mailfleet.kit import loops
from mailfleet.mail.probes import ImapSettings, ProbeOptions, SmtpSettings, probe_logins

log = logging.getLogger(__name__)

_LINE_LIMIT: Final = 1 << 20
_CLOSE_GRACE: Final = 5.0
_NICENESS: Final = 10

Outcome = dict[str, dict[str, Any]]


class LoginProcessLost(RuntimeError):
    """The login process ended (or failed) before it answered."""


class _Child:
    """One running child and the logins it has in hand."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pending: dict[int, asyncio.Future[Outcome]] = {}
        self.reader = asyncio.create_task(self._read())

    @property
    def alive(self) -> bool:
        return self.process.returncode is None and not self.reader.done()

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")

    async def _read(self) -> None:
        assert self.process.stdout is not None
        try:
            while line := await self.process.stdout.readline():
                answer = json.loads(line)
                future = self.pending.pop(answer["id"], None)
                if future is None or future.done():
                    continue  # its caller gave up (cancelled)
                if "error" in answer:
                    future.set_exception(LoginProcessLost(answer["error"]))
                else:
                    future.set_result(answer["outcome"])
        finally:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            status = await self.process.wait()
            lost = LoginProcessLost(f"the login process ended (status {status}) before answering")
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(lost)
            self.pending.clear()

    async def close(self) -> None:
        stdin = self.process.stdin
        if stdin is not None and not stdin.is_closing():
            stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), _CLOSE_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await asyncio.wait({self.reader}, timeout=_CLOSE_GRACE)


class LoginProcess:
    """The server's side: `probe` logs one mailbox in, in the child; the child is
    started at the first login and again after it died."""

    def __init__(self, options: ProbeOptions) -> None:
        self.options = options
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self._ids = itertools.count()

    async def _running(self) -> _Child:
        child = self._child
        if child is not None and child.alive:
            return child
        async with self._starting:
            if self._child is None or not self._child.alive:
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    __name__,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    limit=_LINE_LIMIT,
                )
                self._child = _Child(process)
                self._child.send(dataclasses.asdict(self.options))
                log.info("started the bulk login process (pid %s)", process.pid)
            return self._child

    async def probe(self, smtp: SmtpSettings, imap: ImapSettings) -> Outcome:
        child = await self._running()
        request_id = next(self._ids)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        child.pending[request_id] = future
        try:
            logins = {"smtp": dataclasses.asdict(smtp), "imap": dataclasses.asdict(imap)}
            child.send({"id": request_id, **logins})
            return await future
        finally:
            child.pending.pop(request_id, None)

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one runs."""
        child = self._child
        return child.process.pid if child is not None and child.alive else None

    async def close(self) -> None:
        if self._child is not None:
            await self._child.close()
            self._child = None

    def terminate(self) -> None:
        """End the child without waiting (for when its event loop is gone)."""
        child, self._child = self._child, None
        if child is not None and child.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                child.process.terminate()


_shared: tuple[asyncio.AbstractEventLoop, LoginProcess] | None = None


def shared(options: ProbeOptions) -> LoginProcess:
    """This process's login process, for this event loop and these options."""
    global _shared
    loop = asyncio.get_running_loop()
    if _shared is None or _shared[0] is not loop or _shared[1].options != options:
        _abandon()
        _shared = (loop, LoginProcess(options))
    return _shared[1]


def current() -> LoginProcess | None:
    """This process's login process, if a bulk job has started one."""
    return _shared[1] if _shared is not None else None


def _abandon() -> None:
    """Stop a login process left by an earlier event loop (tests start several) or
    made for other options: without its loop it cannot be closed, only ended."""
    global _shared
    if _shared is not None:
        _shared[1].terminate()
    _shared = None


async def close_shared() -> None:
    """End this process's login process (at shutdown)."""
    global _shared
    if _shared is not None and _shared[0] is asyncio.get_running_loop():
        process, _shared = _shared[1], None
        await process.close()
    else:
        _abandon()


# The child.


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_LINE_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    # Answers go to the original standard output; anything else printing there
    # (a library's stray print) goes to standard error instead of into the pipe.
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, answers)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    options_line = await reader.readline()
    if not options_line:
        return
    fields = json.loads(options_line)
    options = ProbeOptions(**{**fields, "nameservers": tuple(fields["nameservers"])})
    running: set[asyncio.Task[None]] = set()

    async def answer(request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"id": request["id"]}
        try:
            smtp = SmtpSettings(**request["smtp"])
            imap = ImapSettings(**request["imap"])
            reply["outcome"] = await probe_logins(smtp, imap, options)
        except Exception as error:  # a probe reports failures as verdicts; this is a bug
            log.exception("bulk login %s failed", request["id"])
            reply["error"] = f"the login process failed: {type(error).__name__}"
        writer.write(json.dumps(reply).encode() + b"\n")
        await writer.drain()

    while line := await reader.readline():
        task = asyncio.create_task(answer(json.loads(line)))
        running.add(task)
        task.add_done_callback(running.discard)
    # Input closed: the server is done with us (or gone). Logins in flight are dropped.
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)


def main() -> None:
    # Ctrl-C reaches the whole process group; the server decides when this ends
    # (it closes our input at shutdown).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Bulk logins are background work: when the cores are busy, the server's
    # requests (a job's status polls among them) go first.
    os.nice(_NICENESS)
    logging.basicConfig(
        level=os.environ.get("MAILFLEET_LOG_LEVEL", "INFO").upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s login-process %(name)s %(message)s",
    )
    loops.run(_serve())


if __name__ == "__main__":
    main()
