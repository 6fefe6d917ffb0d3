"""A placement test of N senders x M seeds against local mail servers, and a bare
asyncio loop sending the same messages and reading the same folders, in one run.

    .venv/bin/python bench/placement.py --senders 10 --seeds 50

It starts Dovecot (IMAP + LMTP, tests/servers/mailnet.py), a submission SMTP server
that delivers each message over LMTP before it answers (in a process of its own),
and an empty test DNS server (the seeds' MX look-ups stay on loopback). Then:

  (a) Mailfleet: the app and its job engine in this process on a fresh SQLite data
      dir (or --database-url); N senders and M seeds; one placement test through
      the service, run by its DBOS workflow from the queue (`together`: every
      sender at once, MAILFLEET_PLACEMENT_CONCURRENCY = --concurrency). Timed from
      the test's last send (`sentAt`, when every send step had ended) to its
      `completedAt`: reading every seed's folders, storing each result with its
      Authentication-Results, deleting the messages, completing the test;
  (b) the bare loop: aiosmtplib and aioimaplib under an asyncio.Semaphore of the
      same concurrency, in a process of its own: the same N x M messages from the
      same senders to the same seeds, then each seed's INBOX and Junk read (SEARCH
      by the test's code, FETCH the tracking and Authentication-Results headers
      and INTERNALDATE, delete what was found) until every message is found. Timed
      from its last send to the last message found.

It prints both times, the ratio a/b, and the send phases for context. Everything
stays on loopback. Needs root and Debian's dovecot-imapd, dovecot-lmtpd and
dovecot-sieve.
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
from email.message import EmailMessage
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.warmup import SubmissionProcess  # noqa: E402
from tests.servers.dnsserver import LocalDnsServer  # noqa: E402
from tests.servers.mailnet import SieveDovecot  # noqa: E402

HEADER = "X-Mailfleet-Placement"
AUTH = "Authentication-Results"


def users_for(count: int, label: str) -> list[tuple[str, str]]:
    tag = secrets.token_hex(3)
    return [(f"{label}{tag}-{i}@{label}.bench", f"pw-{tag}-{i}") for i in range(count)]


# (b) The bare loop.


def _run_bare(
    senders: list[tuple[str, str]],
    seeds: list[tuple[str, str]],
    smtp_port: int,
    imap_port: int,
    concurrency: int,
    pipe: Connection,
) -> None:
    import aioimaplib
    import aiosmtplib

    code = "bare" + secrets.token_hex(4)

    async def send(index: int, slots: asyncio.Semaphore) -> None:
        email, password = senders[index]
        async with slots:
            smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=smtp_port, start_tls=False)
            await smtp.connect()
            await smtp.login(email, password)
            for seed_index, (seed, _) in enumerate(seeds):
                message = EmailMessage()
                message["From"], message["To"], message["Subject"] = email, seed, "Hello"
                message[HEADER] = f"{code}-{index}-{seed_index}"
                message.set_content(f"Hello there.\n\nPlacement test {code}\n")
                await smtp.send_message(message)
            await smtp.quit()

    async def read(index: int, slots: asyncio.Semaphore) -> float:
        email, password = seeds[index]
        expected = {f"{code}-{s}-{index}" for s in range(len(senders))}
        async with slots:
            imap = aioimaplib.IMAP4(host="127.0.0.1", port=imap_port)
            await imap.wait_hello_from_server()
            await imap.login(email, password)
            await imap.list('""', '"*"')
            while expected:
                for folder in ("INBOX", "Junk"):
                    await imap.select(folder)
                    result = await imap.uid_search("HEADER", HEADER, code, charset=None)
                    uids = [u for u in result.lines[0].decode().split() if u.isdigit()]
                    if not uids:
                        continue
                    fetched = await imap.uid(
                        "fetch",
                        ",".join(uids),
                        f"(INTERNALDATE BODY.PEEK[HEADER.FIELDS ({HEADER} {AUTH})])",
                    )
                    for line in fetched.lines:
                        if isinstance(line, bytearray):
                            for header in bytes(line).decode().splitlines():
                                if header.lower().startswith(HEADER.lower() + ":"):
                                    expected.discard(header.split(":", 1)[1].strip())
                    await imap.uid("store", ",".join(uids), "+FLAGS.SILENT", "(\\Deleted)")
                    await imap.expunge()
            await imap.logout()
        return time.perf_counter()

    async def main() -> tuple[float, float]:
        slots = asyncio.Semaphore(concurrency)
        started = time.perf_counter()
        await asyncio.gather(*(send(i, slots) for i in range(len(senders))))
        last_send = time.perf_counter()
        done = await asyncio.gather(*(read(i, slots) for i in range(len(seeds))))
        return last_send - started, max(done) - last_send

    pipe.send(asyncio.run(main()))


def measure_bare(
    senders: list[tuple[str, str]],
    seeds: list[tuple[str, str]],
    smtp_port: int,
    imap_port: int,
    concurrency: int,
) -> tuple[float, float]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(
        target=_run_bare, args=(senders, seeds, smtp_port, imap_port, concurrency, child)
    )
    process.start()
    result: tuple[float, float] = parent.recv()
    process.join(timeout=30)
    return result


# (a) Mailfleet.


async def measure_mailfleet(
    senders: list[tuple[str, str]],
    seeds: list[tuple[str, str]],
    smtp_port: int,
    imap_port: int,
    concurrency: int,
    nameserver: str,
    database_url: str | None,
) -> dict[str, Any]:
    from dbos import DBOS

    from mailfleet import jobs
    from mailfleet.app import create_app
    from mailfleet.mail.discovery import Discoverer
    from mailfleet.mailboxes import service as mailboxes
    from mailfleet.mailboxes.schemas import MailboxCreate
    from mailfleet.models import PlacementTest
    from mailfleet.placement import service as placement
    from mailfleet.placement.schemas import PlacementTestIn
    from tests.conftest import make_account, make_test_settings

    data_dir = Path(tempfile.mkdtemp(prefix="mailfleet-bench-placement-"))
    settings = make_test_settings(
        data_dir,
        database_url,
        warmup_interval=0,
        placement_concurrency=concurrency,
        dns_nameservers=[nameserver],
        log_level="WARNING",
    )
    discoverer = Discoverer(nameservers=[nameserver], allow_private=True, ispdb_base_url=None)
    app = create_app(settings, start_jobs=False)
    try:
        async with app.router.lifespan_context(app):
            await jobs.launch(settings)
            try:
                database = app.state.database
                keyring = app.state.keyring
                account = await make_account(database, "bench@placement.bench")
                ids: dict[str, str] = {}
                async with database.transaction() as session:
                    for email, password in senders + seeds:
                        server = {"host": "127.0.0.1", "secure": False, "password": password}
                        body = MailboxCreate.model_validate(
                            {
                                "email": email,
                                "smtp": {**server, "port": smtp_port},
                                "imap": {**server, "port": imap_port},
                            }
                        )
                        mailbox = await mailboxes.create_mailbox(
                            session, keyring, account.workspace_id, body, verify=False
                        )
                        ids[email] = mailbox.id
                request = PlacementTestIn.model_validate(
                    {
                        "name": "bench",
                        "fromMailboxIds": [ids[e] for e, _ in senders],
                        "seedMailboxIds": [ids[e] for e, _ in seeds],
                        "subject": "Hello",
                        "text": "Hello there.",
                        "deliveryMode": "together",
                    }
                )
                started = time.perf_counter()
                async with database.transaction() as session:
                    test = await placement.create_test(
                        session, discoverer, account.workspace_id, request
                    )
                    test_id = test.id
                while True:
                    async with database.transaction() as session:
                        row = await session.get(PlacementTest, test_id)
                        assert row is not None
                        if row.status == "completed":
                            out = await placement.test_out(session, row)
                            break
                    await asyncio.sleep(0.05)
                wall = time.perf_counter() - started
                steps = await DBOS.list_workflow_steps_async(
                    placement.workflow_id(test_id), load_output=False
                )
            finally:
                jobs.shutdown()
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    assert row.sent_at is not None
    assert row.completed_at is not None
    return {
        "read": (row.completed_at - row.sent_at).total_seconds(),
        "wall": wall,
        "overall": out.summary.overall,
        "steps": [
            (
                step["function_name"].rsplit(".", 1)[-1],
                ((step["completed_at_epoch_ms"] or 0) - (step["started_at_epoch_ms"] or 0)) / 1000,
            )
            for step in steps
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--senders", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: the Dovecot test server switches users")

    senders, seeds = users_for(args.senders, "sender"), users_for(args.seeds, "seed")
    with LocalDnsServer() as dns, SieveDovecot(dict(senders + seeds)) as dovecot:
        submission = SubmissionProcess(dovecot)
        try:
            print(f"servers up: submission :{submission.port}, imap :{dovecot.port}", flush=True)
            a = asyncio.run(
                measure_mailfleet(
                    senders,
                    seeds,
                    submission.port,
                    dovecot.port,
                    args.concurrency,
                    dns.nameserver,
                    args.database_url,
                )
            )
            bare_send, bare_read = measure_bare(
                senders, seeds, submission.port, dovecot.port, args.concurrency
            )
        finally:
            delivered = submission.stop()

    messages = args.senders * args.seeds
    overall = a["overall"]
    print(f"\n{args.senders} senders x {args.seeds} seeds = {messages} messages")
    print(
        f"(a) mailfleet: last send -> complete result {a['read']:.2f} s "
        f"(create -> complete {a['wall']:.1f} s; inbox {overall.inbox}, "
        f"missing {overall.missing}, failed {overall.failed})"
    )
    print(
        f"(b) bare loop: last send -> every message found {bare_read:.2f} s "
        f"(sends took {bare_send:.1f} s)"
    )
    print(f"ratio a/b    : {a['read'] / bare_read:.2f}")
    print("mailfleet's steps: " + ", ".join(f"{name} {sec:.2f} s" for name, sec in a["steps"]))
    print(f"submission accepted: {delivered} messages")


if __name__ == "__main__":
    main()
