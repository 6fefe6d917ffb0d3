"""`mailfleet mailboxes import`: upload a CSV to any Mailfleet server and follow the job.

It speaks only the public API (POST /v1/mailboxes/bulk, GET /v1/jobs/{id}, the
report), so it works against a remote server as well as a local one. Ctrl-C
stops the watching, never the job.
"""

from __future__ import annotations

import csv
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

POLL_INTERVAL: Final = 0.5
# Plain output (not a terminal) prints a line when the counts change, at most this often.
PLAIN_EVERY: Final = 1.0
# A server restarting mid-job is normal; give it this long before giving up.
UNREACHABLE_FOR: Final = 60.0
OUTCOMES: Final = ("connected", "failed", "duplicate", "invalid", "pending")


class ImportFailed(Exception):
    """The server refused the upload or could not be reached; the message says why."""


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        message = str(error.get("message") or response.reason_phrase)
        details = error.get("details") or []
        fields = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in details[:3])
        return f"{response.status_code} {message}" + (f" ({fields})" if fields else "")
    except (ValueError, AttributeError):
        return f"{response.status_code} {response.reason_phrase}"


def _done(job: dict[str, Any]) -> int:
    return int(job["total"]) - int(job["counts"]["pending"])


def _counts_text(job: dict[str, Any]) -> str:
    counts = job["counts"]
    return ", ".join(f"{name} {counts[name]}" for name in OUTCOMES[:-1])


class JobFollower:
    def __init__(self, client: httpx.Client, console: Console, job: dict[str, Any]) -> None:
        self.client = client
        self.console = console
        self.job = job

    def poll(self) -> dict[str, Any]:
        deadline = time.monotonic() + UNREACHABLE_FOR
        while True:
            try:
                response = self.client.get(f"/v1/jobs/{self.job['id']}")
            except httpx.TransportError as exc:
                if time.monotonic() > deadline:
                    raise ImportFailed(f"the server stopped answering: {exc}") from exc
                time.sleep(1.0)
                continue
            if response.status_code != 200:
                raise ImportFailed(_error_message(response))
            self.job = response.json()["data"]
            return self.job

    def follow(self) -> dict[str, Any]:
        if self.console.is_terminal:
            return self._follow_with_bar()
        return self._follow_plain()

    def _follow_with_bar(self) -> dict[str, Any]:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[counts]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            task = progress.add_task(
                "verifying", total=self.job["total"], completed=_done(self.job), counts=""
            )
            while True:
                job = self.poll()
                progress.update(task, completed=_done(job), counts=_counts_text(job))
                if job["status"] in ("completed", "failed"):
                    return job
                time.sleep(POLL_INTERVAL)

    def _follow_plain(self) -> dict[str, Any]:
        last_line = ""
        last_print = 0.0
        while True:
            job = self.poll()
            finished = job["status"] in ("completed", "failed")
            line = f"progress {_done(job)}/{job['total']}: {_counts_text(job)}"
            now = time.monotonic()
            if line != last_line and (finished or now - last_print >= PLAIN_EVERY):
                self.console.print(line, highlight=False)
                last_line, last_print = line, now
            if finished:
                return job
            time.sleep(POLL_INTERVAL)


def _download_report(client: httpx.Client, job: dict[str, Any], path: Path) -> None:
    with client.stream("GET", job["reportUrl"]) as response:
        if response.status_code != 200:
            response.read()
            raise ImportFailed(f"the report could not be downloaded: {_error_message(response)}")
        with path.open("wb") as handle:
            for chunk in response.iter_bytes():
                handle.write(chunk)


def _reasons(report: Path) -> Counter[tuple[str, str]]:
    """(outcome, error code) of the rows that did not connect, from the report."""
    with report.open(newline="", encoding="utf-8") as handle:
        return Counter(
            (row["outcome"], row["error_code"] or "-")
            for row in csv.DictReader(handle)
            if row["outcome"] in ("failed", "invalid", "duplicate")
        )


def _summary(job: dict[str, Any], reasons: Counter[tuple[str, str]]) -> Table:
    table = Table(title=f"Bulk connect job {job['id']}: {job['status']}", min_width=60)
    table.add_column("outcome")
    table.add_column("reason")
    table.add_column("mailboxes", justify="right")
    for name in OUTCOMES:
        count = job["counts"][name]
        if name == "pending" and not count:
            continue
        table.add_row(name, "", str(count))
        for (outcome, code), number in reasons.most_common():
            if outcome == name:
                table.add_row("", code, str(number), style="dim")
    table.add_row("total", "", str(job["total"]), style="bold")
    return table


def run_import(
    file: Path,
    *,
    url: str,
    api_key: str,
    workspace: str | None,
    wait: bool,
    report: Path | None,
    idempotency_key: str | None,
    console: Console,
) -> int:
    """Upload, then (with `wait`) follow the job to its end; the exit status."""
    base = url.rstrip("/")
    headers = {"x-api-key": api_key}
    if workspace:
        headers["x-workspace-id"] = workspace
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    timeout = httpx.Timeout(30.0, read=600.0)
    with httpx.Client(base_url=base, headers=headers, timeout=timeout) as client:
        try:
            with file.open("rb") as handle:
                response = client.post(
                    "/v1/mailboxes/bulk", files={"file": (file.name, handle, "text/csv")}
                )
        except httpx.TransportError as exc:
            console.print(f"[red]error:[/] cannot reach {base}: {exc}")
            return 1
        if response.status_code not in (200, 202):
            console.print(f"[red]error:[/] the upload was refused: {_error_message(response)}")
            return 1
        job: dict[str, Any] = response.json()["data"]
        follow_url = f"{base}/v1/jobs/{job['id']}"
        again = " (this Idempotency-Key already made it)" if response.status_code == 200 else ""
        console.print(
            f"Job {job['id']}{again}: {job['total']} rows, "
            f"{job['counts']['pending']} mailboxes to verify",
            highlight=False,
        )
        if not wait:
            console.print(f"Follow it: GET {follow_url}", highlight=False)
            return 0
        try:
            job = JobFollower(client, console, job).follow()
        except KeyboardInterrupt:
            console.print(
                f"\nStopped watching; job {job['id']} keeps running on the server.\n"
                f"Follow it: GET {follow_url} (with your x-api-key header)",
                highlight=False,
            )
            return 130
        except ImportFailed as exc:
            console.print(f"[red]error:[/] {exc}\nFollow the job: GET {follow_url}")
            return 1
        path = report or file.with_name(f"{file.stem}.{job['id']}.report.csv")
        try:
            _download_report(client, job, path)
        except (ImportFailed, httpx.TransportError, OSError) as exc:
            console.print(f"[red]error:[/] {exc}")
            return 1
        console.print(_summary(job, _reasons(path)))
        if job.get("error"):
            console.print(f"[red]The job failed:[/] {job['error']}")
        console.print(f"Report: {path}", highlight=False)
        return 0 if job["status"] == "completed" else 1
