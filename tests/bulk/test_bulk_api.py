"""POST /v1/mailboxes/bulk, GET /v1/jobs/{id} and its report, against real servers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from mailfleet.bulk import service as bulk_service
from mailfleet.bulk.formats import parse_item
from mailfleet.bulk.workflows import requeue_unfinished_jobs
from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.kit.crypto import Keyring
from mailfleet.models import BulkJobItem, ConnectionTest, Mailbox
from tests.bulk.conftest import item, make_users, report_rows, wait_for_job
from tests.conftest import Account, make_account
from tests.jobs.ticks import clear_of_sweeper_ticks
from tests.servers.dovecot import DovecotServer
from tests.servers.http_receiver import HttpReceiver
from tests.servers.smtp import SmtpServer


async def post_json(
    client: httpx.AsyncClient, account: Account, items: list[Any], **headers: str
) -> httpx.Response:
    return await client.post(
        "/v1/mailboxes/bulk", json=items, headers={**account.headers, **headers}
    )


async def test_json_array_reports_each_row(
    client: httpx.AsyncClient,
    owner: Account,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
    database: Database,
) -> None:
    (good, good_pw), (other, _), (existing, existing_pw) = make_users(smtp_plain, dovecot, 3)
    created = await client.post(
        "/v1/mailboxes",
        json=item(existing, existing_pw, smtp_plain, dovecot),
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    items = [
        item(good, good_pw, smtp_plain, dovecot, displayName="Good One", tags=["bulk"]),
        item(other, "wrong-password", smtp_plain, dovecot),
        {"email": "not-an-email", "smtp": {"host": "127.0.0.1", "password": "x"}},
        item(good.upper(), good_pw, smtp_plain, dovecot),
        item(existing, existing_pw, smtp_plain, dovecot),
        "not an object",
    ]
    rows_before = {outcome: rows_counted(outcome) for outcome in ("connected", "failed")}
    response = await post_json(client, owner, items)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["success"] is True
    job = body["data"]
    assert job["status"] == "queued"
    assert job["source"] == "json"
    assert job["total"] == 6
    assert job["counts"] == {
        "pending": 2,
        "connected": 0,
        "failed": 0,
        "duplicate": 2,
        "invalid": 2,
    }
    assert job["reportUrl"] == f"/v1/jobs/{job['id']}/report.csv"
    assert "wrong-password" not in response.text

    done = await wait_for_job(client, owner, job["id"])
    assert done["status"] == "completed"
    assert done["counts"] == {
        "pending": 0,
        "connected": 1,
        "failed": 1,
        "duplicate": 2,
        "invalid": 2,
    }
    assert done["startedAt"].endswith("Z")
    assert done["finishedAt"] >= done["startedAt"]
    # Rows verified are counted (mailfleet_bulk_rows_total): Prometheus makes the rate.
    assert rows_counted("connected") == rows_before["connected"] + 1
    assert rows_counted("failed") == rows_before["failed"] + 1

    rows = await report_rows(client, owner, job["id"])
    assert [(r["row"], r["email"], r["outcome"], r["error_code"]) for r in rows] == [
        ("1", good, "connected", ""),
        ("2", other, "failed", "AUTH_FAILED"),
        ("3", "not-an-email", "invalid", "VALIDATION_ERROR"),
        ("4", good, "duplicate", "DUPLICATE"),
        ("5", existing, "duplicate", "DUPLICATE"),
        ("6", "", "invalid", "VALIDATION_ERROR"),
    ]
    assert "email:" in rows[2]["message"]
    assert "smtp.password" not in rows[2]["message"] or "x" not in rows[2]["message"]
    assert rows[3]["message"] == "Same email as row 1 of this request"
    assert "already exists" in rows[4]["message"]
    assert rows[1]["message"].startswith("SMTP: ")

    # The good mailbox is active with its tags; the failed one was deleted, its test kept.
    mailboxes = (await client.get("/v1/mailboxes", headers=owner.headers)).json()["data"]
    by_email = {m["email"]: m for m in mailboxes}
    assert set(by_email) == {good, existing}
    assert by_email[good]["status"] == "active"
    assert by_email[good]["displayName"] == "Good One"
    assert by_email[good]["tags"] == ["bulk"]
    assert rows[0]["mailbox_id"] == by_email[good]["id"]
    failed_test = await client.get(
        f"/v1/mailboxes/{rows[1]['mailbox_id']}/connection-test", headers=owner.headers
    )
    assert failed_test.json()["data"]["status"] == "failed"
    assert failed_test.json()["data"]["mailboxDeleted"] is True
    async with database.transaction() as session:
        tests = await session.scalar(select(func.count()).where(ConnectionTest.job_id == job["id"]))
    assert tests == 2


async def test_verification_events_of_a_job(
    client: httpx.AsyncClient,
    owner: Account,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
) -> None:
    """A job's chunk records its tests together; each still sends the event a single
    test would, saying what became of the mailbox."""
    (good, good_pw), (bad, _) = make_users(smtp_plain, dovecot, 2)
    with HttpReceiver() as receiver:
        webhook = await client.post(
            "/v1/webhooks",
            json={
                "url": receiver.url(),
                "eventTypes": ["mailbox.verified", "mailbox.verification_failed"],
            },
            headers=owner.headers,
        )
        assert webhook.status_code == 201, webhook.text
        receiver.secret = webhook.json()["data"]["secret"]
        items = [
            item(good, good_pw, smtp_plain, dovecot, displayName="Good", tags=["t"]),
            item(bad, "wrong-password", smtp_plain, dovecot),
        ]
        job = (await post_json(client, owner, items)).json()["data"]
        done = await wait_for_job(client, owner, job["id"])
        assert done["counts"]["connected"] == 1
        received = await receiver.wait_for(2)
    assert all(request.verified for request in received)
    by_type = {request.payload["type"]: request.payload["data"] for request in received}
    verified, failed = by_type["mailbox.verified"], by_type["mailbox.verification_failed"]
    assert (verified["email"], verified["status"], verified["sendingEnabled"]) == (
        good,
        "active",
        True,
    )
    assert verified["displayName"] == "Good"
    assert verified["kind"] == "initial"
    assert verified["connectionTestId"]
    assert (failed["email"], failed["status"], failed["mailboxDeleted"]) == (bad, "deleted", True)
    assert failed["errorCode"] == "AUTH_FAILED"
    assert failed["errorMessage"].startswith("SMTP: ")
    assert all(b"wrong-password" not in request.body for request in received)


async def test_a_finished_job_is_announced_once(
    client: httpx.AsyncClient,
    owner: Account,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
) -> None:
    """bulk_job.completed when the job ends: one connected, one refused login, one
    invalid row, one duplicate of the first. A job with nothing left to verify once
    accepted (every row invalid) is announced at once."""
    (good, good_pw), (bad, _) = make_users(smtp_plain, dovecot, 2)
    with HttpReceiver() as receiver:
        webhook = await client.post(
            "/v1/webhooks",
            json={"url": receiver.url(), "eventTypes": ["bulk_job.completed"]},
            headers=owner.headers,
        )
        assert webhook.status_code == 201, webhook.text
        receiver.secret = webhook.json()["data"]["secret"]
        items = [
            item(good, good_pw, smtp_plain, dovecot),
            item(bad, "wrong-password", smtp_plain, dovecot),
            {"email": "not an address"},
            item(good, good_pw, smtp_plain, dovecot),
        ]
        job = (await post_json(client, owner, items)).json()["data"]
        await wait_for_job(client, owner, job["id"])
        [finished] = await receiver.wait_for(1)
        invalid_only = (await post_json(client, owner, [{"email": "nope"}])).json()["data"]
        second = (await receiver.wait_for(2))[1]
        await asyncio.sleep(0.3)  # and nothing more
        assert len(receiver.received()) == 2
    assert finished.verified is True, finished.verification_error
    assert finished.payload["type"] == "bulk_job.completed"
    assert finished.payload["data"] == {
        "jobId": job["id"],
        "status": "completed",
        "total": 4,
        "succeeded": 1,
        "failed": 2,
        "duplicates": 1,
    }
    assert second.payload["data"]["jobId"] == invalid_only["id"]
    assert (second.payload["data"]["status"], second.payload["data"]["failed"]) == ("completed", 1)


async def test_idempotency_key_returns_the_same_job(
    client: httpx.AsyncClient, owner: Account, smtp_plain: SmtpServer, dovecot: DovecotServer
) -> None:
    users = make_users(smtp_plain, dovecot, 3)
    items = [item(email, pw, smtp_plain, dovecot) for email, pw in users]
    first, second = await asyncio.gather(
        post_json(client, owner, items, **{"Idempotency-Key": "import-42"}),
        post_json(client, owner, items, **{"Idempotency-Key": "import-42"}),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 202], (first.text, second.text)
    assert first.json()["data"]["id"] == second.json()["data"]["id"]
    again = await post_json(client, owner, items, **{"Idempotency-Key": "import-42"})
    assert again.status_code == 200
    assert again.json()["data"]["id"] == first.json()["data"]["id"]
    assert again.json()["data"]["idempotencyKey"] == "import-42"
    done = await wait_for_job(client, owner, first.json()["data"]["id"])
    assert done["counts"]["connected"] == 3
    mailboxes = (await client.get("/v1/mailboxes", headers=owner.headers)).json()
    assert mailboxes["pagination"]["total"] == 3

    # Another key is another job: every row is now a duplicate of an existing mailbox.
    other = await post_json(client, owner, items, **{"Idempotency-Key": "import-43"})
    assert other.status_code == 202
    assert other.json()["data"]["status"] == "completed"
    assert other.json()["data"]["counts"]["duplicate"] == 3


async def test_jobs_belong_to_their_workspace(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
) -> None:
    ((email, password),) = make_users(smtp_plain, dovecot, 1)
    response = await post_json(client, owner, [item(email, password, smtp_plain, dovecot)])
    job_id = response.json()["data"]["id"]
    stranger = await make_account(database, "stranger@example.test")
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/report.csv"):
        refused = await client.get(path, headers=stranger.headers)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "NOT_FOUND"
    # The same key in another workspace is another job.
    theirs = await post_json(
        client,
        stranger,
        [item(email, password, smtp_plain, dovecot)],
        **{"Idempotency-Key": "shared"},
    )
    mine = await post_json(
        client, owner, [item(email, password, smtp_plain, dovecot)], **{"Idempotency-Key": "shared"}
    )
    assert theirs.json()["data"]["id"] != mine.json()["data"]["id"]
    assert (await client.get("/v1/jobs/nope", headers=owner.headers)).status_code == 404
    await wait_for_job(client, owner, job_id)
    await wait_for_job(client, stranger, theirs.json()["data"]["id"])


@pytest.fixture
def small_limits(settings: Settings) -> Iterator[Settings]:
    previous = settings.bulk_max_items, settings.bulk_max_upload_bytes
    settings.bulk_max_items = 3
    settings.bulk_max_upload_bytes = 4096
    yield settings
    settings.bulk_max_items, settings.bulk_max_upload_bytes = previous


async def test_bad_requests_are_400_never_500(
    client: httpx.AsyncClient, owner: Account, small_limits: Settings
) -> None:
    one = {"email": "a@b.test", "smtp": {"host": "127.0.0.1", "password": "secret"}}

    async def refused(**kwargs: Any) -> dict[str, Any]:
        headers = {**owner.headers, **kwargs.pop("headers", {})}
        response = await client.post("/v1/mailboxes/bulk", headers=headers, **kwargs)
        assert 400 <= response.status_code < 500, response.text
        body: dict[str, Any] = response.json()
        assert body["success"] is False
        body["status"] = response.status_code
        return body

    not_array = await refused(json={"items": [one]})
    assert not_array["status"] == 400
    assert not_array["error"]["details"][0]["field"] == "body"
    empty = await refused(json=[])
    assert empty["error"]["code"] == "VALIDATION_ERROR"
    too_many = await refused(json=[one] * 4)
    assert "At most 3 mailboxes" in too_many["error"]["message"]
    broken = await refused(content=b"[{", headers={"content-type": "application/json"})
    assert broken["error"]["code"] == "VALIDATION_ERROR"
    too_big = await refused(json=[{**one, "signature": "x" * 5000}])
    assert too_big["status"] == 413
    assert too_big["error"]["code"] == "PAYLOAD_TOO_LARGE"
    big_file = await refused(files={"file": ("big.csv", b"x" * 5000, "text/csv")})
    assert big_file["status"] == 413
    wrong_type = await refused(content=b"hello", headers={"content-type": "application/xml"})
    assert wrong_type["status"] == 415
    header = await refused(content=b"mail,host\nx@y.test,h\n", headers={"content-type": "text/csv"})
    assert header["error"]["details"][0]["field"] == "file"
    assert "Unrecognised CSV header" in header["error"]["message"]
    unknown = await refused(
        content=b"email,smtp_host,smtp_pasword\nx@y.test,h,p\n",
        headers={"content-type": "text/csv"},
    )
    assert "smtp_pasword" in unknown["error"]["message"]
    no_file = await refused(files={"upload": ("a.csv", b"email\n", "text/csv")})
    assert no_file["error"]["details"][0]["field"] == "file"
    bad_key = await refused(json=[one], headers={"Idempotency-Key": "x" * 201})
    assert bad_key["error"]["details"][0]["field"] == "Idempotency-Key"


async def test_lost_enqueue_is_picked_up_by_the_sweeper(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    settings: Settings,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
) -> None:
    ((email, password),) = make_users(smtp_plain, dovecot, 1)
    rows = [parse_item(1, item(email, password, smtp_plain, dovecot))]
    await clear_of_sweeper_ticks()
    async with database.transaction() as session:
        job, created = await bulk_service.accept_job(
            session,
            keyring,
            owner.workspace_id,
            rows,
            source="json",
            idempotency_key=None,
            created_by=owner.user_id,
            settings=settings,
        )
        assert created
        job_id = job.id
        # A crash between commit and enqueue: the after-commit callback never runs.
        session.info.clear()
    await asyncio.sleep(0.5)
    status = (await client.get(f"/v1/jobs/{job_id}", headers=owner.headers)).json()["data"]
    assert status["status"] == "queued"
    assert await requeue_unfinished_jobs() >= 1
    assert await requeue_unfinished_jobs() >= 0  # again: a no-op for a queued workflow
    done = await wait_for_job(client, owner, job_id)
    assert done["counts"]["connected"] == 1
    async with database.transaction() as session:
        outcomes = list(
            await session.scalars(select(BulkJobItem.outcome).where(BulkJobItem.job_id == job_id))
        )
        active = await session.scalar(
            select(func.count()).where(Mailbox.workspace_id == owner.workspace_id)
        )
    assert outcomes == ["connected"]
    assert active == 1


def rows_counted(outcome: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("mailfleet_bulk_rows_total", {"outcome": outcome})
    return value or 0.0
