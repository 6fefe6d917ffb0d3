"""Saleshandy, bulk connect of email accounts (seed 004), which runs in the background.

    POST {base}/v1/email-accounts/connect
    x-api-key: <API key>
    Content-Type: application/json

    [
      {
        "emailServiceProvider": "gsuite",   # google -> gsuite, microsoft, else smtp
        "fromFirstName": "John",
        "fromLastName": "Snow",
        "smtpEmailAddress": "john@company.com",
        "smtpUserName": "john@company.com",
        "smtpPassword": "...",
        "smtpHost": "smtp.gmail.com",
        "smtpPort": 465,
        "smtpEncryption": "ssl",            # ssl (465/993), tls (STARTTLS), none
        "imapEmailAddress": "john@company.com",
        "imapUserName": "john@company.com",
        "imapPassword": "...",
        "imapHost": "imap.gmail.com",
        "imapPort": 993,
        "imapEncryption": "ssl"
      }
    ]
    -> {"message": ..., "payload": {"requestId": "129a184"}}

    GET {base}/v1/email-accounts/connect/status/{requestId}
    -> {"message": ..., "payload": {"isCompleted": true, "reportURL": "https://..."}}

    GET <reportURL>
    -> a CSV, one row per account and its result

The report's columns are read by name: the first column naming an email, one
naming a status, result or outcome, one naming a reason, error or message. A row whose
status reads like success (success, connected, added, imported, ...) or whose
text says the account already exists counts as connected. The API key goes with
the report request only when the link is on the API's own host. Saleshandy has
no endpoint to check a key with, so the first export tells.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Any, ClassVar

from mailfleet.mail.probes import security_for
from mailfleet.platforms.base import (
    Inbox,
    InboxResult,
    PlatformAdapter,
    Poll,
    Submission,
    already_exists,
    platform_message,
)
from mailfleet.platforms.http import PlatformClient, PlatformUnreachable

SERVICE_PROVIDERS = {"google": "gsuite", "microsoft": "microsoft"}
ENCRYPTION = {"ssl": "ssl", "starttls": "tls", "none": "none"}
SUCCESS_WORDS = frozenset(
    {
        "success",
        "successful",
        "succeeded",
        "connected",
        "added",
        "imported",
        "created",
        "done",
        "ok",
        "true",
        "yes",
        "active",
        "completed",
    }
)
_STATUS_COLUMNS = ("status", "result", "outcome")
_EMAIL_COLUMNS = (
    "email",
    "emailaddress",
    "smtpemailaddress",
    "senderemail",
    "emailaccount",
    "account",
)


def account_body(inbox: Inbox) -> dict[str, Any]:
    return {
        "emailServiceProvider": SERVICE_PROVIDERS.get(inbox.provider, "smtp"),
        "fromFirstName": inbox.first_name,
        "fromLastName": inbox.last_name,
        "smtpEmailAddress": inbox.email,
        "smtpUserName": inbox.smtp.username,
        "smtpPassword": inbox.smtp.password,
        "smtpHost": inbox.smtp.host,
        "smtpPort": inbox.smtp.port,
        "smtpEncryption": ENCRYPTION[security_for(inbox.smtp.port, inbox.smtp.secure)],
        "imapEmailAddress": inbox.email,
        "imapUserName": inbox.imap.username,
        "imapPassword": inbox.imap.password,
        "imapHost": inbox.imap.host,
        "imapPort": inbox.imap.port,
        "imapEncryption": ENCRYPTION[security_for(inbox.imap.port, inbox.imap.secure)],
    }


_FAILURE_PREFIXES = ("fail", "error", "invalid", "not", "unable", "reject", "denied", "unsuccess")


def _reads_like_success(status: str) -> bool:
    words = re.findall(r"[a-z]+", status.lower())
    if any(word.startswith(_FAILURE_PREFIXES) for word in words):
        return False
    return any(word in SUCCESS_WORDS or word == "successfully" for word in words)


def _normal(header: str) -> str:
    return re.sub(r"[^a-z]", "", header.lower())


def _column(headers: list[str], exact: tuple[str, ...], parts: tuple[str, ...]) -> str | None:
    for header in headers:
        if _normal(header) in exact:
            return header
    for header in headers:
        if any(part in _normal(header) for part in parts):
            return header
    return None


def parse_report(text: str, emails: list[str]) -> list[InboxResult]:
    """One result per email asked about, read from Saleshandy's report CSV."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    headers = list(reader.fieldnames or [])
    email_column = _column(headers, _EMAIL_COLUMNS, ("email",))
    if email_column is None:
        reason = "Saleshandy's report has no email column; check the accounts in Saleshandy"
        return [InboxResult(email, False, reason) for email in emails]
    status_column = _column(headers, _STATUS_COLUMNS, _STATUS_COLUMNS)
    reason_column = _column(
        [h for h in headers if h not in (email_column, status_column)],
        ("reason", "error", "message"),
        ("reason", "error", "message", "remark", "comment", "detail"),
    )
    rows: dict[str, tuple[str, str]] = {}
    for row in reader:
        address = (row.get(email_column) or "").strip().lower()
        if address and address not in rows:
            status = (row.get(status_column) or "").strip() if status_column else ""
            reason = (row.get(reason_column) or "").strip() if reason_column else ""
            rows[address] = (status, reason)
    results = []
    for email in emails:
        found = rows.get(email.lower())
        if found is None:
            results.append(InboxResult(email, False, "Not in Saleshandy's report"))
            continue
        status, reason = found
        said = ": ".join(part for part in (status, reason) if part)[:500]
        if already_exists(0, f"{status} {reason}"):
            results.append(InboxResult(email, True, f"Already on Saleshandy: {said}"))
        elif _reads_like_success(status) if status_column else (reason_column and not reason):
            results.append(InboxResult(email, True, "Connected to Saleshandy"))
        else:
            results.append(InboxResult(email, False, f"Saleshandy: {said or 'no status given'}"))
    return results


class SaleshandyAdapter(PlatformAdapter):
    name: ClassVar[str] = "saleshandy"
    label: ClassVar[str] = "Saleshandy"
    default_base_url: ClassVar[str] = "https://open-api.saleshandy.com"
    validation_path: ClassVar[str | None] = None
    batch_size: ClassVar[int] = 100

    def client(self, *extra_secrets: str) -> PlatformClient:
        return self._client(extra_secrets, headers={"x-api-key": self.access.api_key or ""})

    async def submit(self, inboxes: list[Inbox], carry: dict[str, str]) -> Submission:
        secrets = tuple(s for inbox in inboxes for s in inbox.secrets)
        async with self.client(*secrets) as client:
            try:
                response = await client.request(
                    "POST",
                    "/v1/email-accounts/connect",
                    json_body=[account_body(inbox) for inbox in inboxes],
                )
            except PlatformUnreachable as exc:
                return Submission(_all_failed(inboxes, f"{exc.code}: {exc.message}"))
            data = response.json()
            payload = data.get("payload") if isinstance(data, dict) else None
            request_id = payload.get("requestId") if isinstance(payload, dict) else None
            if response.ok and request_id:
                return Submission([], request_id=str(request_id), carry=carry)
            message = platform_message(response, client)
            if response.status == 401:
                reason = f"Saleshandy refused the API key (401): {message}"
                return Submission(_all_failed(inboxes, reason), fatal=reason)
            if response.ok:
                reason = f"Saleshandy's answer had no requestId: {message}"
            else:
                reason = f"Saleshandy answered {response.status}: {message}"
            return Submission(_all_failed(inboxes, reason), carry=carry)

    async def poll(self, request_id: str, emails: list[str]) -> Poll:
        async with self.client() as client:
            try:
                response = await client.request(
                    "GET", f"/v1/email-accounts/connect/status/{request_id}"
                )
            except PlatformUnreachable:
                # A passing outage: ask again at the next poll.
                return Poll(False, [])
            data = response.json()
            payload = data.get("payload") if isinstance(data, dict) else None
            if response.status == 429 or response.status >= 500:
                return Poll(False, [])
            if not response.ok or not isinstance(payload, dict):
                message = platform_message(response, client)
                reason = f"Saleshandy's status of request {request_id}: {response.status} {message}"
                return Poll(True, [InboxResult(email, False, reason) for email in emails])
            if not payload.get("isCompleted"):
                return Poll(False, [])
            report_url = payload.get("reportURL") or payload.get("reportUrl")
            if not isinstance(report_url, str) or not report_url:
                reason = "Saleshandy finished without a report; check the accounts in Saleshandy"
                return Poll(True, [InboxResult(email, False, reason) for email in emails])
            try:
                report = await client.request("GET", report_url)
            except PlatformUnreachable as exc:
                if exc.code in ("FORBIDDEN_TARGET", "INVALID_TARGET", "TOO_LARGE"):
                    reason = f"Saleshandy's report could not be read: {exc.code}: {exc.message}"
                    return Poll(True, [InboxResult(email, False, reason) for email in emails])
                return Poll(False, [])
            if not report.ok:
                if report.status == 429 or report.status >= 500:
                    return Poll(False, [])
                reason = f"Saleshandy's report answered {report.status}"
                return Poll(True, [InboxResult(email, False, reason) for email in emails])
            return Poll(True, parse_report(client.scrub(report.text), emails))


def _all_failed(inboxes: list[Inbox], reason: str) -> list[InboxResult]:
    return [InboxResult(inbox.email, False, reason) for inbox in inboxes]
