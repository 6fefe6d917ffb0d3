"""`mailfleet mailboxes import` as a user runs it: a subprocess against `mailfleet serve`."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import httpx

from tests.bulk.conftest import make_users
from tests.bulk.test_bulk_csv import NATIVE_HEADER
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer
from tests.test_cli import MAILFLEET, ROOT, _clean_env, served

__all__ = ["served"]


def write_csv(path: Path, rows: list[list[object]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(NATIVE_HEADER)
        writer.writerows(rows)


def test_import_shows_progress_and_a_summary(
    served: tuple[str, dict[str, str]],
    tmp_path: Path,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
) -> None:
    base, credentials = served
    users = make_users(smtp_plain, dovecot, 30)

    def imap_cells(password: str) -> list[object]:
        return ["127.0.0.1", dovecot.port, "", password, "false", "", ""]

    rows: list[list[object]] = [
        [email, "", "127.0.0.1", smtp_plain.port, "", pw, "false", *imap_cells(pw)]
        for email, pw in users
    ]
    rows.append(["broken", "", "127.0.0.1", 25, "", "pw", "false", "", "", "", "", "", "", ""])
    source = tmp_path / "inboxes.csv"
    write_csv(source, rows)
    credentials["secretsToCheck"] = " ".join(pw for _, pw in users)

    result = subprocess.run(
        [*MAILFLEET, "mailboxes", "import", str(source), "--url", base],
        env=_clean_env(MAILFLEET_API_KEY=credentials["apiKey"], COLUMNS="120"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert credentials["apiKey"] not in out + result.stderr
    assert "31 rows, 30 mailboxes to verify" in out
    progress = [line for line in out.splitlines() if line.startswith("progress ")]
    assert progress, out
    assert progress[-1].startswith("progress 31/31: connected 30, failed 0, duplicate 0, invalid 1")
    assert "completed" in out
    summary = out[out.index("Bulk connect job") :]
    for outcome, count in (("connected", 30), ("invalid", 1), ("total", 31)):
        assert re.search(rf"\b{outcome}\W+{count}\b", summary), summary
    report = Path(out.split("Report: ", 1)[1].split()[0])
    assert report.parent == tmp_path
    with report.open() as handle:
        reported = list(csv.DictReader(handle))
    assert len(reported) == 31
    assert {row["outcome"] for row in reported[:30]} == {"connected"}
    assert reported[30]["outcome"] == "invalid"

    # --no-wait returns at once with how to follow the job; the same key finds it again.
    again = subprocess.run(
        [
            *MAILFLEET,
            "mailboxes",
            "import",
            str(source),
            "--url",
            base,
            "--api-key",
            credentials["apiKey"],
            "--no-wait",
            "--idempotency-key",
            "cli-1",
        ],
        env=_clean_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    follow = again.stdout.split("Follow it: GET ", 1)[1].split()[0]
    assert follow.startswith(f"{base}/v1/jobs/")
    job = httpx.get(follow, headers={"x-api-key": credentials["apiKey"]}).json()["data"]
    assert job["counts"]["duplicate"] == 30


def test_import_needs_a_key(tmp_path: Path) -> None:
    source = tmp_path / "x.csv"
    source.write_text("email\n")
    result = subprocess.run(
        [*MAILFLEET, "mailboxes", "import", str(source)],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MAILFLEET_API_KEY" in result.stderr
