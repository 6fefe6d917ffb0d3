"""CSV uploads: Mailfleet's columns, and Instantly's and Smartlead's bulk-upload files."""

from __future__ import annotations

import csv
import io

import httpx

from tests.bulk.conftest import make_users, report_rows, wait_for_job
from tests.conftest import Account
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer


def to_csv(header: list[str], rows: list[list[object]], delimiter: str = ",") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


NATIVE_HEADER = [
    "email",
    "display_name",
    "smtp_host",
    "smtp_port",
    "smtp_username",
    "smtp_password",
    "smtp_secure",
    "imap_host",
    "imap_port",
    "imap_username",
    "imap_password",
    "imap_secure",
    "daily_limit",
    "tags",
]


async def mailboxes_by_email(client: httpx.AsyncClient, account: Account) -> dict[str, dict]:  # type: ignore[type-arg]
    listed = await client.get("/v1/mailboxes?limit=1000", headers=account.headers)
    return {m["email"]: m for m in listed.json()["data"]}


async def test_native_csv_as_multipart_upload(
    client: httpx.AsyncClient, owner: Account, smtp_plain: SmtpServer, dovecot: DovecotServer
) -> None:
    (a, a_pw), (b, b_pw) = make_users(smtp_plain, dovecot, 2)
    s, i = smtp_plain.port, dovecot.port
    data = to_csv(
        NATIVE_HEADER,
        [
            [
                a,
                "Ann A",
                "127.0.0.1",
                s,
                "",
                a_pw,
                "false",
                "127.0.0.1",
                i,
                "",
                a_pw,
                "no",
                30,
                "x;y",
            ],
            [b, "", "127.0.0.1", s, b, "nope", "false", "127.0.0.1", i, b, b_pw, "false", "", ""],
            ["c@bulk.test", "", "127.0.0.1", "port", "", "pw", "", "", "", "", "", "", "", ""],
            ["", "", "", "", "", "", "", "", "", "", "", "", "", ""],
            ["d@bulk.test", "", "127.0.0.1", s, "", "pw", "maybe", "", "", "", "", "", "", ""],
        ],
    )
    response = await client.post(
        "/v1/mailboxes/bulk",
        files={"file": ("mailboxes.csv", data, "text/csv")},
        headers=owner.headers,
    )
    assert response.status_code == 202, response.text
    job = response.json()["data"]
    assert job["source"] == "csv"
    assert job["total"] == 4  # the blank record is skipped, not counted
    done = await wait_for_job(client, owner, job["id"])
    assert done["counts"]["connected"] == 1
    assert done["counts"]["failed"] == 1
    assert done["counts"]["invalid"] == 2
    rows = await report_rows(client, owner, job["id"])
    assert [(r["row"], r["outcome"]) for r in rows] == [
        ("1", "connected"),
        ("2", "failed"),
        ("3", "invalid"),
        ("5", "invalid"),
    ]
    assert rows[1]["error_code"] == "AUTH_FAILED"
    assert rows[2]["message"].startswith("smtp_port:")
    assert rows[3]["message"].startswith("smtp_secure:")
    mailbox = (await mailboxes_by_email(client, owner))[a]
    assert mailbox["displayName"] == "Ann A"
    assert mailbox["dailySendLimit"] == 30
    assert sorted(mailbox["tags"]) == ["x", "y"]  # a set: no order promised
    assert (mailbox["smtpPort"], mailbox["smtpSecure"]) == (s, False)


async def test_native_csv_as_body_with_bom_and_semicolons(
    client: httpx.AsyncClient, owner: Account, smtp_plain: SmtpServer, dovecot: DovecotServer
) -> None:
    ((a, a_pw),) = make_users(smtp_plain, dovecot, 1)
    header = ["email", "smtp_host", "smtp_port", "smtp_password", "smtp_secure"]
    header += ["imap_host", "imap_port", "imap_password", "imap_secure"]
    data = b"\xef\xbb\xbf" + to_csv(
        header,
        [[a, "127.0.0.1", smtp_plain.port, a_pw, "0", "127.0.0.1", dovecot.port, a_pw, "0"]],
        delimiter=";",
    )
    response = await client.post(
        "/v1/mailboxes/bulk",
        content=data,
        headers={**owner.headers, "content-type": "text/csv; charset=utf-8"},
    )
    assert response.status_code == 202, response.text
    done = await wait_for_job(client, owner, response.json()["data"]["id"])
    assert done["counts"]["connected"] == 1


async def test_instantly_layout(
    client: httpx.AsyncClient, owner: Account, smtp_starttls: SmtpServer, dovecot: DovecotServer
) -> None:
    """Instantly's file has no encryption column: STARTTLS on these ports, verified
    against the test CA."""
    (a, a_pw), (b, b_pw) = make_users(smtp_starttls, dovecot, 2)
    header = [
        "Email",
        "First Name",
        "Last Name",
        "IMAP Username",
        "IMAP Password",
        "IMAP Host",
        "IMAP Port",
        "SMTP Username",
        "SMTP Password",
        "SMTP Host",
        "SMTP Port",
        "Daily Limit",
        "Warmup Enabled",
        "Warmup Limit",
        "Warmup Increment",
    ]
    s, i = smtp_starttls.port, dovecot.port
    data = to_csv(
        header,
        [
            [a, "Ann", "Lee", a, a_pw, "127.0.0.1", i, a, a_pw, "127.0.0.1", s, 40, "TRUE", 20, 2],
            [b, "Bo", "", b, "bad", "127.0.0.1", i, b, b_pw, "127.0.0.1", s, 10, "", "", ""],
            ["", "No", "Email", "", "", "", "", "", "pw", "127.0.0.1", s, "", "", "", ""],
        ],
    )
    response = await client.post(
        "/v1/mailboxes/bulk",
        files={"file": ("instantly.csv", data, "text/csv")},
        headers=owner.headers,
    )
    assert response.status_code == 202, response.text
    done = await wait_for_job(client, owner, response.json()["data"]["id"])
    rows = await report_rows(client, owner, done["id"])
    assert [(r["email"], r["outcome"], r["error_code"]) for r in rows] == [
        (a, "connected", ""),
        (b, "failed", "AUTH_FAILED"),
        ("", "invalid", "VALIDATION_ERROR"),
    ]
    assert rows[1]["message"].startswith("IMAP: ")
    assert rows[2]["message"].startswith("Email:")
    mailbox = (await mailboxes_by_email(client, owner))[a]
    assert mailbox["displayName"] == "Ann Lee"
    assert mailbox["dailySendLimit"] == 40
    assert (mailbox["smtpSecure"], mailbox["imapSecure"]) == (True, True)


async def test_smartlead_layout(
    client: httpx.AsyncClient, owner: Account, smtp_starttls: SmtpServer, dovecot: DovecotServer
) -> None:
    (a, a_pw), (b, b_pw) = make_users(smtp_starttls, dovecot, 2)
    header = [
        "from_name",
        "from_email",
        "user_name",
        "password",
        "smtp_host",
        "smtp_port",
        "imap_host",
        "imap_port",
        "max_email_per_day",
        "custom_tracking_url",
        "warmup_enabled",
        "total_warmup_per_day",
        "daily_rampup",
        "reply_rate_percentage",
        "imap_user_name",
        "imap_password",
    ]
    s, i = smtp_starttls.port, dovecot.port
    data = to_csv(
        header,
        [
            [
                "Ann Lee",
                a,
                a,
                a_pw,
                "127.0.0.1",
                s,
                "127.0.0.1",
                i,
                25,
                "",
                "TRUE",
                20,
                2,
                30,
                "",
                "",
            ],
            ["Bo", b, b, "wrong", "127.0.0.1", s, "127.0.0.1", i, 5, "", "", "", "", "", b, b_pw],
        ],
    )
    response = await client.post(
        "/v1/mailboxes/bulk",
        files={"file": ("smartlead.csv", data, "text/csv")},
        headers=owner.headers,
    )
    assert response.status_code == 202, response.text
    done = await wait_for_job(client, owner, response.json()["data"]["id"])
    rows = await report_rows(client, owner, done["id"])
    assert [(r["email"], r["outcome"]) for r in rows] == [(a, "connected"), (b, "failed")]
    # Smartlead's `password` is the SMTP one; imap_password overrides it for IMAP.
    assert rows[1]["message"].startswith("SMTP: ")
    mailbox = (await mailboxes_by_email(client, owner))[a]
    assert mailbox["displayName"] == "Ann Lee"
    assert mailbox["dailySendLimit"] == 25
