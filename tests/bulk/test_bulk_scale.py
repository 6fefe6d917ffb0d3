"""A thousand mailboxes in one job, against the real servers on loopback."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select

from mailfleet.db import Database
from mailfleet.models import BulkJobItem, ConnectionTest, Mailbox
from tests.bulk.conftest import item, make_users, report_rows, wait_for_job
from tests.conftest import Account
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer

COUNT = 1000


async def test_a_thousand_mailboxes_complete(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
) -> None:
    users = make_users(smtp_plain, dovecot, COUNT)
    items = [item(email, password, smtp_plain, dovecot) for email, password in users]
    response = await client.post("/v1/mailboxes/bulk", json=items, headers=owner.headers)
    assert response.status_code == 202, response.text
    job_id = response.json()["data"]["id"]

    seen_running = False
    for _ in range(3):
        status = (await client.get(f"/v1/jobs/{job_id}", headers=owner.headers)).json()["data"]
        seen_running |= status["status"] in ("queued", "running")
    assert seen_running
    job = await wait_for_job(client, owner, job_id, within=180)
    assert job["status"] == "completed"
    assert job["counts"] == {
        "pending": 0,
        "connected": COUNT,
        "failed": 0,
        "duplicate": 0,
        "invalid": 0,
    }
    rows = await report_rows(client, owner, job_id)
    assert [int(row["row"]) for row in rows] == list(range(1, COUNT + 1))
    assert {row["outcome"] for row in rows} == {"connected"}
    async with database.transaction() as session:
        active = await session.scalar(
            select(func.count()).where(
                Mailbox.workspace_id == owner.workspace_id, Mailbox.status == "active"
            )
        )
        tests = await session.execute(
            select(ConnectionTest.status, func.count())
            .where(ConnectionTest.job_id == job_id)
            .group_by(ConnectionTest.status)
        )
        attempts = await session.scalar(
            select(func.max(BulkJobItem.attempts)).where(BulkJobItem.job_id == job_id)
        )
    assert active == COUNT
    assert dict(tests.all()) == {"success": COUNT}
    assert attempts == 1
