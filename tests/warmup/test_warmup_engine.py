"""The warmup engine against a real mail network: submission SMTP delivering over
LMTP into Dovecot, whose Sieve files one sender's mail into Junk.

Rounds run as the DBOS workflow, on a clock the test picks (three days of a
send window in a minute). Every assertion compares the engine's records with
what the folders really hold, read with Python's own imaplib."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta

import httpx
from sqlalchemy import select

from mailfleet.config import Settings
from mailfleet.models import WarmupMessage, WebhookEvent
from tests.conftest import Account
from tests.servers.http_receiver import HttpReceiver
from tests.warmup.conftest import Mailnet, NetMailbox, run_round

WINDOW = {"start": "08:00", "end": "18:00", "timezone": "UTC"}


async def enable(
    client: httpx.AsyncClient, account: Account, mailbox: NetMailbox, **fields: object
) -> None:
    body = {
        "enabled": True,
        "startPerDay": 2,
        "rampUpPerDay": 1,
        "dailyTarget": 4,
        "replyRate": 50,
        "sendWindow": WINDOW,
        **fields,
    }
    response = await client.put(
        f"/v1/mailboxes/{mailbox.id}/warmup", json=body, headers=account.headers
    )
    assert response.status_code == 200, response.text


def at(day: datetime, clock: str) -> datetime:
    return datetime.combine(day.date(), time.fromisoformat(clock), UTC)


async def test_six_mailboxes_warm_rescue_reply_and_report_what_the_folders_hold(
    client: httpx.AsyncClient, owner: Account, mailnet: Mailnet, manual_rounds: Settings
) -> None:
    alpha = [
        await mailnet.mailbox(owner.workspace_id, name, "alpha.test")
        for name in ("ann", "bob", "cat")
    ]
    beta = [
        await mailnet.mailbox(owner.workspace_id, name, "beta.test")
        for name in ("dan", "eve", "fay")
    ]
    network = alpha + beta
    # A mailbox of the same workspace with warmup off, and one of the network's
    # addresses never in it: neither may ever receive a warmup message.
    outsider = await mailnet.mailbox(owner.workspace_id, "out", "alpha.test")
    spammed = alpha[0]
    mailnet.dovecot.set_junk_senders([spammed.email])
    for mailbox in network:
        await enable(client, owner, mailbox)

    # The submission server is shared by the session: only this test's envelopes count.
    before = len(mailnet.submission.deliveries)
    today = datetime.now(UTC)
    days = [today + timedelta(days=n) for n in range(3)]
    for day in days:
        await run_round(at(day, "08:00"))
        await run_round(at(day, "18:00"))
    # One more read, so the last replies are found by their receivers.
    await run_round(at(days[-1], "18:00") + timedelta(seconds=30))

    # Nothing left the network: every envelope went from a member to a member.
    emails = {m.email for m in network}
    deliveries = mailnet.submission.deliveries[before:]
    assert deliveries
    for delivery in deliveries:
        assert delivery.login in emails
        assert delivery.mail_from == delivery.login
        assert set(delivery.rcpt_tos) <= emails - {delivery.login}
    assert mailnet.folders(outsider) == []

    async with mailnet.database.transaction() as session:
        messages = list(await session.scalars(select(WarmupMessage)))
    by_code = {m.tracking_code: m for m in messages}
    by_id = {m.id: m for m in messages}
    originals = [m for m in messages if m.kind == "warmup"]
    replies = [m for m in messages if m.kind == "reply"]
    # The ramp: 2, 3 then 4 (dailyTarget) messages a day from each mailbox.
    per_day = Counter((m.sender_id, m.day) for m in originals)
    for mailbox in network:
        assert [per_day[(mailbox.id, d.date())] for d in days] == [2, 3, 4]
    assert all(m.status == "sent" for m in messages)
    assert replies, "replyRate 50 over 54 messages must have produced replies"
    # Pairing: another domain whenever there is one.
    domain = {m.id: m.email.split("@")[1] for m in network}
    assert all(domain[m.sender_id] != domain[m.receiver_id] for m in originals)

    # The folders: every message sent is in its receiver's INBOX exactly once, Junk
    # is empty (rescued), and the rescued ones are flagged.
    folders = {m.id: mailnet.folders(m) for m in network}
    held = Counter(f.code for found in folders.values() for f in found)
    assert held == Counter(list(by_code)), "each message exactly once, none lost"
    for mailbox in network:
        for found in folders[mailbox.id]:
            message = by_code[found.code]
            assert message.receiver_id == mailbox.id
            assert found.folder == "INBOX"
            assert found.message["Message-ID"] == message.message_id
            assert found.code in found.message.get_payload()
            from_spammed = message.sender_id == spammed.id
            assert ("\\Flagged" in found.flags) == from_spammed, found.flags
            assert message.placement == ("spam" if from_spammed else "inbox")
            assert message.saved_from_spam is from_spammed
            if message.kind == "reply":
                parent = by_id[message.parent_id or ""]
                assert found.message["In-Reply-To"] == parent.message_id
                assert found.message["References"] == parent.message_id
                assert found.message["Subject"] == f"Re: {parent.subject}"
                assert parent.replied

    # Analytics equal what the folders hold.
    first, last = days[0].date().isoformat(), days[-1].date().isoformat()
    response = await client.get(
        f"/v1/mailboxes/warmup-analytics?from={first}&to={last}&limit=10", headers=owner.headers
    )
    assert response.status_code == 200, response.text
    reports = {r["mailboxId"]: r for r in response.json()["data"]}
    assert set(reports) == {m.id for m in network}
    for mailbox in network:
        report = reports[mailbox.id]
        totals = report["totals"]
        sent_by_it = [
            f
            for found in folders.values()
            for f in found
            if by_code[f.code].sender_id == mailbox.id
        ]
        assert totals["sent"] == len(sent_by_it)
        assert totals["received"] == len(folders[mailbox.id])
        if mailbox.id == spammed.id:
            assert totals["spam"] == totals["savedFromSpam"] == len(sent_by_it)
            assert totals["inbox"] == 0
            assert report["inboxRate"] == 0
        else:
            assert totals["inbox"] == len(sent_by_it)
            assert totals["spam"] == totals["savedFromSpam"] == 0
            assert report["inboxRate"] == 100
            assert report["healthScore"] == 100
        answered = [
            f for f in sent_by_it if by_code[f.code].kind == "warmup" and by_code[f.code].replied
        ]
        threaded_replies = [f for f in folders[mailbox.id] if by_code[f.code].kind == "reply"]
        assert totals["replied"] == len(answered) == len(threaded_replies)
        assert totals["missing"] == 0
        assert sum(d["sent"] for d in report["daily"]) == totals["sent"]
        assert [d["date"] for d in report["daily"]] == [d.date().isoformat() for d in days]
        # dailyTarget (4) is reached on the third day.
        assert report["state"] == "ready"
    # 0.5 x inboxRate 0 + 0.3 x (100 - spamRate 100) + 0.2 x arrivalRate 100
    assert reports[spammed.id]["healthScore"] == 20

    # Past retention the warmup messages leave the folders.
    manual_rounds.warmup_retention = 0
    await run_round(at(days[-1], "18:00") + timedelta(minutes=5))
    assert all(mailnet.folders(m) == [] for m in network)


async def test_a_changed_password_turns_warmup_to_error(
    client: httpx.AsyncClient, owner: Account, mailnet: Mailnet, manual_rounds: Settings
) -> None:
    receiver = HttpReceiver()
    with receiver:
        hook = await client.post(
            "/v1/webhooks",
            json={"url": receiver.url(), "eventTypes": ["warmup.state_changed"]},
            headers=owner.headers,
        )
        assert hook.status_code == 201, hook.text
        one = await mailnet.mailbox(owner.workspace_id, "gil", "alpha.test")
        two = await mailnet.mailbox(owner.workspace_id, "hal", "beta.test")
        for mailbox in (one, two):
            await enable(client, owner, mailbox)
        mailnet.dovecot.add_user(one.email, "changed-elsewhere")
        day = datetime.now(UTC)
        await run_round(at(day, "08:00"))
        await run_round(at(day, "18:00"))

        got = await client.get(f"/v1/mailboxes/{one.id}/warmup", headers=owner.headers)
        data = got.json()["data"]
        assert data["state"] == "error"
        assert "login failed" in data["reason"]
        assert "changed-elsewhere" not in got.text
        async with mailnet.database.transaction() as session:
            sent_by_one = list(
                await session.scalars(
                    select(WarmupMessage).where(
                        WarmupMessage.sender_id == one.id, WarmupMessage.status == "sent"
                    )
                )
            )
            events = list(
                await session.scalars(
                    select(WebhookEvent).where(WebhookEvent.type == "warmup.state_changed")
                )
            )
        assert sent_by_one == []
        states = [(e.data["mailboxId"], e.data["state"]) for e in events]
        assert (one.id, "error") in states
        # Once in error, it is out of the network: later rounds plan nothing for it.
        await run_round(at(day + timedelta(days=1), "18:00"))
        async with mailnet.database.transaction() as session:
            planned_for_one = await session.scalar(
                select(WarmupMessage.id).where(
                    WarmupMessage.receiver_id == one.id, WarmupMessage.day > day.date()
                )
            )
        assert planned_for_one is None
