"""A bulk job's chunk records its verification events as a batch: one read of the
endpoints and one insert per table, with the deliveries `emit` would have made."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import httpx
from sqlalchemy import event, select

from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.mailboxes import service as mailboxes
from mailfleet.mailboxes.schemas import MailboxCreate
from mailfleet.models import ConnectionTest
from tests.conftest import Account
from tests.servers.http_receiver import HttpReceiver
from tests.webhooks.conftest import deliveries_of, register


def batch_of(emails: list[str]) -> list[MailboxCreate]:
    return [
        MailboxCreate.model_validate({"email": email, "smtp": {"host": "h.test", "password": "x"}})
        for email in emails
    ]


@contextlib.contextmanager
def sql_of_this_task(database: Database) -> Iterator[list[str]]:
    """The statements this task runs inside the block, normalized: workflows and
    pollers share the engine, so theirs are left out."""
    mine: contextvars.ContextVar[bool] = contextvars.ContextVar("mine", default=False)
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if mine.get():
            statements.append(" ".join(statement.split()).lower())

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    token = mine.set(True)
    try:
        yield statements
    finally:
        mine.reset(token)
        event.remove(engine, "before_cursor_execute", seen)


def login(protocol: str, ok: bool) -> dict[str, Any]:
    return {
        "protocol": protocol,
        "ok": ok,
        "code": None if ok else "AUTH_FAILED",
        "message": "ok" if ok else "Authentication failed",
        "latencyMs": 3,
        "folders": [],
        "replyCode": 235 if ok else 535,
        "transient": False,
    }


async def test_a_chunk_of_results_makes_its_deliveries_in_one_go(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    receiver: HttpReceiver,
) -> None:
    both = await register(
        client,
        owner,
        receiver.url("/both"),
        eventTypes=["mailbox.verified", "mailbox.verification_failed"],
    )
    verified_only = await register(
        client, owner, receiver.url("/verified"), eventTypes=["mailbox.verified"]
    )
    # Both endpoints share no secret; the receiver checks the first one's signatures.
    receiver.secret = both["secret"]
    emails = [f"box{n}@example.test" for n in range(5)]
    batch = batch_of(emails)
    async with database.transaction() as session:
        mailbox_ids = await mailboxes.create_mailbox_batch(
            session, keyring, owner.workspace_id, batch, job_id="no-such-job"
        )
        tests = dict(
            (await session.execute(select(ConnectionTest.mailbox_id, ConnectionTest.id))).all()
        )
    good = set(mailbox_ids[:3])
    outcomes: dict[str, mailboxes.LoginOutcome] = {
        tests[mailbox_id]: {
            "smtp": login("smtp", mailbox_id in good),
            "imap": login("imap", True),
        }
        for mailbox_id in mailbox_ids
    }

    with sql_of_this_task(database) as statements:
        async with database.transaction() as session:
            verdicts = await mailboxes.record_test_outcomes(session, owner.workspace_id, outcomes)

    assert sorted(v.status for v in verdicts.values()) == ["failed"] * 2 + ["success"] * 3
    endpoint_reads = [s for s in statements if "from webhook_endpoints" in s]
    assert len(endpoint_reads) == 1, statements
    assert len([s for s in statements if s.startswith("insert into webhook_events")]) == 1
    assert len([s for s in statements if s.startswith("insert into webhook_deliveries")]) == 1

    to_both = await deliveries_of(client, owner, both["id"])
    to_verified = await deliveries_of(client, owner, verified_only["id"])
    assert len(to_both) == 5
    assert len(to_verified) == 3
    assert {d["eventType"] for d in to_verified} == {"mailbox.verified"}
    # One event per mailbox, shared by the endpoints that take it.
    assert {d["eventId"] for d in to_verified} <= {d["eventId"] for d in to_both}

    received = await receiver.wait_for(8)
    signed = [r for r in received if r.path == "/both"]
    assert len(signed) == 5
    assert all(r.verified for r in signed), [r.verification_error for r in signed]
    by_email = {r.payload["data"]["email"]: r.payload for r in signed}
    assert set(by_email) == set(emails)
    for mailbox_id, email in zip(mailbox_ids, emails, strict=True):
        payload = by_email[email]
        assert payload["workspaceId"] == owner.workspace_id
        assert payload["data"]["id"] == mailbox_id
        assert payload["data"]["connectionTestId"] == tests[mailbox_id]
        if mailbox_id in good:
            assert payload["type"] == "mailbox.verified"
            assert payload["data"]["status"] == "active"
        else:
            assert payload["type"] == "mailbox.verification_failed"
            assert (payload["data"]["status"], payload["data"]["errorCode"]) == (
                "deleted",
                "AUTH_FAILED",
            )
    assert {r.payload["type"] for r in received if r.path == "/verified"} == {"mailbox.verified"}


async def test_a_batch_of_new_mailboxes_announces_each_in_one_go(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    receiver: HttpReceiver,
) -> None:
    """Bulk accept creates 500 mailboxes at a time: their mailbox.created events are
    one insert of events and one of deliveries, one per mailbox, as `emit` made."""
    endpoint = await register(
        client, owner, receiver.url("/created"), eventTypes=["mailbox.created"]
    )
    receiver.secret = endpoint["secret"]
    emails = [f"new{n}@example.test" for n in range(4)]
    with sql_of_this_task(database) as statements:
        async with database.transaction() as session:
            mailbox_ids = await mailboxes.create_mailbox_batch(
                session, keyring, owner.workspace_id, batch_of(emails), job_id="no-such-job"
            )
    assert len([s for s in statements if s.startswith("insert into webhook_events")]) == 1
    assert len([s for s in statements if s.startswith("insert into webhook_deliveries")]) == 1
    received = await receiver.wait_for(4)
    assert all(r.verified for r in received), [r.verification_error for r in received]
    assert {r.payload["type"] for r in received} == {"mailbox.created"}
    assert {(r.payload["data"]["id"], r.payload["data"]["email"]) for r in received} == set(
        zip(mailbox_ids, emails, strict=True)
    )
