"""One warmup round for N warming mailboxes against local mail servers, and a bare
asyncio loop doing the same SMTP and IMAP work, measured in one run.

    .venv/bin/python bench/warmup.py --n 1000 --concurrency 50

It starts Dovecot (IMAP + LMTP, tests/servers/mailnet.py) and a submission SMTP
server that delivers each message over LMTP, in a process of its own. Then:

  (a) Mailfleet: the app and its job engine in this process on a fresh SQLite
      data dir (or --database-url), N mailboxes with warmup on (one message a day
      each), and one `warmup_round` workflow at the end of their send window: it
      plans N messages, sends them (SMTP login + send per sender) and reads every
      receiver's INBOX and Junk over IMAP (login, LIST, SEARCH, FETCH, flag);
  (b) the bare loop: aiosmtplib and aioimaplib under an asyncio.Semaphore of the
      same concurrency, in a process of its own, doing the same sends and the
      same per-receiver folder reads for N other mailboxes, nothing around them.

It prints mailboxes per second (one send and one folder scan each), the ratio
a/b, CPU seconds per mailbox of each, and the peak RSS (VmHWM) of the Mailfleet
process. Everything stays on loopback. Needs root and Debian's dovecot-imapd,
dovecot-lmtpd and dovecot-sieve.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers.mailnet import SieveDovecot, SubmissionServer  # noqa: E402

HEADER = "X-Mailfleet-Warmup"


def _run_submission(
    dovecot_port: int, lmtp_port: int, users: dict[str, str], pipe: Connection
) -> None:
    # A stand-in with only what SubmissionServer reads from its Dovecot.
    class Lmtp:
        host = "127.0.0.1"

    Lmtp.lmtp_port = lmtp_port  # type: ignore[attr-defined]
    Lmtp.users = users  # type: ignore[attr-defined]
    server = SubmissionServer(Lmtp())  # type: ignore[arg-type]
    server.start()
    pipe.send(server.port)
    pipe.recv()
    pipe.send(len(server.deliveries))
    server.stop()


class SubmissionProcess:
    def __init__(self, dovecot: SieveDovecot) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_run_submission,
            args=(dovecot.port, dovecot.lmtp_port, dict(dovecot.users), child),
            daemon=True,
        )
        self._process.start()
        self.port: int = self._pipe.recv()

    def stop(self) -> int:
        self._pipe.send("stop")
        delivered: int = self._pipe.recv()
        self._process.join(timeout=10)
        return delivered


def users_for(count: int, label: str) -> list[tuple[str, str]]:
    tag = secrets.token_hex(3)
    domains = ("alpha.bench", "beta.bench")
    return [(f"{label}{tag}-{i}@{domains[i % 2]}", f"pw-{tag}-{i}") for i in range(count)]


# (b) The bare loop.


def _run_bare(
    users: list[tuple[str, str]], smtp_port: int, imap_port: int, concurrency: int, pipe: Connection
) -> None:
    import aioimaplib
    import aiosmtplib

    async def send(index: int, slots: asyncio.Semaphore) -> None:
        email, password = users[index]
        receiver = users[(index + 1) % len(users)][0]
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = email, receiver, "Hello"
        message[HEADER] = f"bare{index}"
        message.set_content(f"Hello there.\n\nRef: bare{index}\n")
        async with slots:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, start_tls=False)
            await smtp.connect()
            await smtp.login(email, password)
            await smtp.send_message(message)
            await smtp.quit()

    async def scan(index: int, slots: asyncio.Semaphore) -> int:
        email, password = users[index]
        async with slots:
            imap = aioimaplib.IMAP4(host="127.0.0.1", port=imap_port)
            await imap.wait_hello_from_server()
            await imap.login(email, password)
            await imap.list('""', '"*"')
            found = 0
            for folder in ("INBOX", "Junk"):
                await imap.select(folder)
                result = await imap.uid_search("HEADER", HEADER, '""', charset=None)
                uids = result.lines[0].decode().split() if result.lines else []
                uids = [uid for uid in uids if uid.isdigit()]
                if uids:
                    await imap.uid(
                        "fetch", ",".join(uids), f"(BODY.PEEK[HEADER.FIELDS ({HEADER})])"
                    )
                    await imap.uid("store", ",".join(uids), "+FLAGS.SILENT", "(\\Seen)")
                    found += len(uids)
            await imap.logout()
            return found

    async def main() -> tuple[float, float, float, int]:
        slots = asyncio.Semaphore(concurrency)
        cpu = time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(send(i, slots) for i in range(len(users))))
        sent_at = time.perf_counter()
        found = await asyncio.gather(*(scan(i, slots) for i in range(len(users))))
        return (
            sent_at - started,
            time.perf_counter() - sent_at,
            time.process_time() - cpu,
            sum(found),
        )

    pipe.send(asyncio.run(main()))


def measure_bare(
    users: list[tuple[str, str]], smtp_port: int, imap_port: int, concurrency: int
) -> tuple[float, float, float, int]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=_run_bare, args=(users, smtp_port, imap_port, concurrency, child)
    )
    process.start()
    result: tuple[float, float, float, int] = parent.recv()
    process.join(timeout=30)
    return result


# (a) Mailfleet.


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def measure_mailfleet(
    users: list[tuple[str, str]],
    smtp_port: int,
    imap_port: int,
    concurrency: int,
    database_url: str | None,
) -> dict[str, Any]:
    from sqlalchemy import func, select

    from mailfleet import jobs
    from mailfleet.app import create_app
    from mailfleet.mailboxes import service as mailboxes
    from mailfleet.mailboxes.schemas import MailboxCreate
    from mailfleet.models import WarmupMessage
    from mailfleet.warmup import service as warmup
    from mailfleet.warmup.schemas import WarmupSettingsIn
    from mailfleet.warmup.workflows import warmup_round
    from tests.conftest import make_account, make_test_settings

    data_dir = Path(tempfile.mkdtemp(prefix="mailfleet-bench-warmup-"))
    settings = make_test_settings(
        data_dir,
        database_url,
        warmup_interval=0,
        warmup_concurrency=concurrency,
        log_level="WARNING",
    )
    app = create_app(settings, start_jobs=False)
    try:
        async with app.router.lifespan_context(app):
            await jobs.launch(settings)
            try:
                database = app.state.database
                keyring = app.state.keyring
                account = await make_account(database, "bench@warmup.bench")
                async with database.transaction() as session:
                    for email, password in users:
                        body = MailboxCreate.model_validate(
                            {
                                "email": email,
                                "smtp": {
                                    "host": "127.0.0.1",
                                    "port": smtp_port,
                                    "secure": False,
                                    "password": password,
                                },
                                "imap": {
                                    "host": "127.0.0.1",
                                    "port": imap_port,
                                    "secure": False,
                                    "password": password,
                                },
                            }
                        )
                        mailbox = await mailboxes.create_mailbox(
                            session, keyring, account.workspace_id, body, verify=False
                        )
                        row, mailbox = await warmup.get_settings(
                            session, account.workspace_id, mailbox.id
                        )
                        await warmup.update_settings(
                            session,
                            row,
                            mailbox,
                            WarmupSettingsIn.model_validate(
                                {
                                    "enabled": True,
                                    "startPerDay": 1,
                                    "replyRate": 0,
                                    "sendWindow": {"start": "00:00", "end": "23:59"},
                                }
                            ),
                        )
                at = datetime.combine(datetime.now(UTC).date(), datetime.min.time(), UTC)
                at = at.replace(hour=23, minute=59)
                cpu = time.process_time()
                started = time.perf_counter()
                result = await warmup_round(at.isoformat())
                wall = time.perf_counter() - started
                cpu = time.process_time() - cpu
                async with database.transaction() as session:
                    seen = await session.scalar(
                        select(func.count()).where(WarmupMessage.seen_at.is_not(None))
                    )
            finally:
                jobs.shutdown()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return {"wall": wall, "cpu": cpu, "round": result, "seen": seen, "rss": peak_rss_mib()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="warming mailboxes")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: the Dovecot test server switches users")

    ours, bare = users_for(args.n, "w"), users_for(args.n, "b")
    with SieveDovecot(dict(ours + bare)) as dovecot:
        submission = SubmissionProcess(dovecot)
        try:
            print(f"servers up: submission :{submission.port}, imap :{dovecot.port}", flush=True)
            a = asyncio.run(
                measure_mailfleet(
                    ours, submission.port, dovecot.port, args.concurrency, args.database_url
                )
            )
            send_s, scan_s, bare_cpu, bare_found = measure_bare(
                bare, submission.port, dovecot.port, args.concurrency
            )
        finally:
            delivered = submission.stop()

    n = args.n
    bare_wall = send_s + scan_s
    print(f"\n{n} warming mailboxes, concurrency {args.concurrency}, one round")
    print(
        f"(a) mailfleet round : {a['wall']:.1f} s  {n / a['wall']:.0f} mailboxes/s "
        f"(sent {a['round']['sent']}, found {a['seen']})"
    )
    print(
        f"(b) bare asyncio    : {bare_wall:.1f} s  {n / bare_wall:.0f} mailboxes/s "
        f"(sends {n / send_s:.0f}/s, scans {n / scan_s:.0f}/s, found {bare_found})"
    )
    print(f"ratio a/b           : {(n / a['wall']) / (n / bare_wall):.2f}")
    print(
        f"cpu per mailbox     : mailfleet {1000 * a['cpu'] / n:.1f} ms, "
        f"bare {1000 * bare_cpu / n:.1f} ms"
    )
    print(f"mailfleet peak RSS  : {a['rss']:.0f} MiB (VmHWM, this process)")
    print(f"submission accepted : {delivered} messages")


if __name__ == "__main__":
    main()
