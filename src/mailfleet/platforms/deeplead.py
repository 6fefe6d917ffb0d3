"""DeepLead, batch inbox creation (seed 003).

    POST {base}/api/v1/inboxes
    Authorization: Bearer <API key>
    Content-Type: application/json

    [
      {
        "emailAddress": "sales@company.com",
        "imapUsername": "sales@company.com",
        "imapPassword": "...",
        "imapHost": "imap.company.com",
        "imapPort": 993,
        "smtpUsername": "sales@company.com",
        "smtpPassword": "...",
        "smtpHost": "smtp.company.com",
        "smtpPort": 587,
        "dailySendingLimit": 15,
        "provider": "google",          # only for providers DeepLead names
        "poolId": "..."                # the pool DeepLead created for the first batch
      }
    ]

DeepLead answers the batch per item: `{"success", "summary", "results":
[{"emailAddress", "success", "inboxId" | "error"}], "autoCreatedPool"?}`. An
item failing with "... already exists" counts as connected. Without a poolId
DeepLead creates a pool per request, so the pool it created for the first batch
carries over to the next ones. The key is checked with GET /api/v1/pools.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mailfleet.platforms.base import (
    Inbox,
    InboxResult,
    PlatformAdapter,
    Submission,
    already_exists,
    platform_message,
)
from mailfleet.platforms.http import PlatformClient, PlatformUnreachable

DEEPLEAD_PROVIDERS = frozenset({"google", "microsoft", "yahoo", "zoho", "icloud"})


def inbox_body(inbox: Inbox, pool_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "emailAddress": inbox.email,
        "imapUsername": inbox.imap.username,
        "imapPassword": inbox.imap.password,
        "imapHost": inbox.imap.host,
        "imapPort": inbox.imap.port,
        "smtpUsername": inbox.smtp.username,
        "smtpPassword": inbox.smtp.password,
        "smtpHost": inbox.smtp.host,
        "smtpPort": inbox.smtp.port,
        "dailySendingLimit": inbox.daily_limit,
    }
    if inbox.provider in DEEPLEAD_PROVIDERS:
        body["provider"] = inbox.provider
    if pool_id:
        body["poolId"] = pool_id
    return body


def _all_failed(inboxes: list[Inbox], reason: str) -> list[InboxResult]:
    return [InboxResult(inbox.email, False, reason) for inbox in inboxes]


class DeepLeadAdapter(PlatformAdapter):
    name: ClassVar[str] = "deeplead"
    label: ClassVar[str] = "DeepLead"
    default_base_url: ClassVar[str] = "https://app.deeplead.com"
    validation_path: ClassVar[str | None] = "/api/v1/pools"
    batch_size: ClassVar[int] = 100

    def client(self, *extra_secrets: str) -> PlatformClient:
        return self._client(
            extra_secrets, headers={"authorization": f"Bearer {self.access.api_key}"}
        )

    async def submit(self, inboxes: list[Inbox], carry: dict[str, str]) -> Submission:
        pool_id = carry.get("poolId")
        secrets = tuple(s for inbox in inboxes for s in inbox.secrets)
        async with self.client(*secrets) as client:
            try:
                response = await client.request(
                    "POST",
                    "/api/v1/inboxes",
                    json_body=[inbox_body(inbox, pool_id) for inbox in inboxes],
                )
            except PlatformUnreachable as exc:
                return Submission(_all_failed(inboxes, f"{exc.code}: {exc.message}"), None, carry)
            data = response.json()
            if not response.ok or not isinstance(data, dict):
                message = platform_message(response, client)
                if response.status == 401:
                    reason = f"DeepLead refused the API key (401): {message}"
                    return Submission(_all_failed(inboxes, reason), None, carry, fatal=reason)
                reason = f"DeepLead answered {response.status}: {message}"
                return Submission(_all_failed(inboxes, reason), None, carry)
            next_carry = dict(carry)
            created_pool = data.get("autoCreatedPool")
            if isinstance(created_pool, dict) and created_pool.get("id"):
                next_carry["poolId"] = str(created_pool["id"])
            by_email: dict[str, dict[str, Any]] = {}
            for item in data.get("results") or []:
                if isinstance(item, dict) and isinstance(item.get("emailAddress"), str):
                    by_email.setdefault(item["emailAddress"].lower(), item)
            results = []
            for inbox in inboxes:
                item = by_email.get(inbox.email.lower())
                if item is None:
                    results.append(
                        InboxResult(inbox.email, False, "DeepLead's answer did not mention it")
                    )
                    continue
                remote_id = str(item["inboxId"]) if item.get("inboxId") else None
                if item.get("success"):
                    results.append(
                        InboxResult(inbox.email, True, "Connected to DeepLead", remote_id)
                    )
                    continue
                error = client.scrub(str(item.get("error") or "failed"))[:500]
                if already_exists(0, error):
                    results.append(
                        InboxResult(inbox.email, True, f"Already on DeepLead: {error}", remote_id)
                    )
                else:
                    results.append(InboxResult(inbox.email, False, f"DeepLead: {error}"))
        return Submission(results, None, next_carry)
