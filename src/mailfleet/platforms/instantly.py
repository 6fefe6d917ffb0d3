"""Instantly, API v2.

    POST {base}/api/v2/accounts
    Authorization: Bearer <API key>
    Content-Type: application/json

    {
      "email": "sarah@company.com",
      "first_name": "Sarah",
      "last_name": "Johnson",
      "provider_code": 1,            # 1 IMAP/SMTP, 2 Google, 3 Microsoft
      "imap_username": "sarah@company.com",
      "imap_password": "...",
      "imap_host": "imap.company.com",
      "imap_port": 993,
      "smtp_username": "sarah@company.com",
      "smtp_password": "...",
      "smtp_host": "smtp.company.com",
      "smtp_port": 587,
      "daily_limit": 15
    }

200 answers with the account (Instantly names accounts by their email). An
address already in the Instantly workspace answers 4xx "... already exists",
which counts as connected. The key is checked with GET /api/v2/accounts?limit=1.
"""

from __future__ import annotations

from typing import ClassVar

from mailfleet.platforms.base import Inbox, InboxResult, PlatformAdapter
from mailfleet.platforms.http import PlatformClient

PROVIDER_CODES = {"google": 2, "microsoft": 3}
CUSTOM_IMAP_SMTP = 1


def account_body(inbox: Inbox) -> dict[str, object]:
    return {
        "email": inbox.email,
        "first_name": inbox.first_name,
        "last_name": inbox.last_name,
        "provider_code": PROVIDER_CODES.get(inbox.provider, CUSTOM_IMAP_SMTP),
        "imap_username": inbox.imap.username,
        "imap_password": inbox.imap.password,
        "imap_host": inbox.imap.host,
        "imap_port": inbox.imap.port,
        "smtp_username": inbox.smtp.username,
        "smtp_password": inbox.smtp.password,
        "smtp_host": inbox.smtp.host,
        "smtp_port": inbox.smtp.port,
        "daily_limit": inbox.daily_limit,
    }


class InstantlyAdapter(PlatformAdapter):
    name: ClassVar[str] = "instantly"
    label: ClassVar[str] = "Instantly"
    default_base_url: ClassVar[str] = "https://api.instantly.ai"
    validation_path: ClassVar[str | None] = "/api/v2/accounts?limit=1"

    def client(self, *extra_secrets: str) -> PlatformClient:
        return self._client(
            extra_secrets, headers={"authorization": f"Bearer {self.access.api_key}"}
        )

    async def connect_one(self, client: PlatformClient, inbox: Inbox) -> tuple[InboxResult, bool]:
        response = await client.request("POST", "/api/v2/accounts", json_body=account_body(inbox))
        data = response.json()
        remote_id = None
        if response.ok and isinstance(data, dict):
            remote_id = str(data.get("id") or data.get("email") or inbox.email)
        return self.interpret(client, response, inbox, remote_id)
