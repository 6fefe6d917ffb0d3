"""SendKit, "Add SMTP mailbox" (seed 002); also another Mailfleet, which speaks it.

    POST {base}/v1/mailboxes
    X-Api-Key: <API key>
    Content-Type: application/json

    {
      "email": "sarah@company.com",
      "displayName": "Sarah Johnson",
      "provider": "custom",
      "smtp": {"host": "smtp.company.com", "port": 587, "secure": true,
               "username": "sarah@company.com", "password": "..."},
      "imap": {"host": "imap.company.com", "port": 993, "secure": true,
               "username": "sarah@company.com", "password": "..."},
      "dailySendLimit": 15,
      "signature": "<p>...</p>",        # only when the mailbox has one
      "tags": ["outreach"]
    }

201 answers `{"success": true, "data": {"_id": ...}}`; the mailbox is verified
there in the background. 409 (already in that workspace) counts as connected;
403 (no subscription, limit reached) fails with SendKit's message. The key is
checked with GET /v1/mailboxes?limit=1.
"""

from __future__ import annotations

from typing import ClassVar

from mailfleet.platforms.base import Inbox, InboxResult, PlatformAdapter
from mailfleet.platforms.http import PlatformClient


def mailbox_body(inbox: Inbox) -> dict[str, object]:
    body: dict[str, object] = {
        "email": inbox.email,
        "displayName": inbox.display_name,
        "provider": inbox.provider,
        "smtp": {
            "host": inbox.smtp.host,
            "port": inbox.smtp.port,
            "secure": inbox.smtp.secure,
            "username": inbox.smtp.username,
            "password": inbox.smtp.password,
        },
        "imap": {
            "host": inbox.imap.host,
            "port": inbox.imap.port,
            "secure": inbox.imap.secure,
            "username": inbox.imap.username,
            "password": inbox.imap.password,
        },
        "dailySendLimit": inbox.daily_limit,
        "tags": list(inbox.tags),
    }
    if inbox.signature:
        body["signature"] = inbox.signature
    return body


class SendKitAdapter(PlatformAdapter):
    name: ClassVar[str] = "sendkit"
    label: ClassVar[str] = "SendKit"
    default_base_url: ClassVar[str] = "https://api.sendkit.ai"
    validation_path: ClassVar[str | None] = "/v1/mailboxes?limit=1"

    def client(self, *extra_secrets: str) -> PlatformClient:
        return self._client(extra_secrets, headers={"x-api-key": self.access.api_key or ""})

    async def connect_one(self, client: PlatformClient, inbox: Inbox) -> tuple[InboxResult, bool]:
        response = await client.request("POST", "/v1/mailboxes", json_body=mailbox_body(inbox))
        data = response.json()
        remote_id = None
        if response.ok and isinstance(data, dict) and isinstance(data.get("data"), dict):
            found = data["data"].get("_id") or data["data"].get("id")
            remote_id = str(found) if found else None
        return self.interpret(client, response, inbox, remote_id)
