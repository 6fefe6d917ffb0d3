"""Smartlead, API v1.

    POST {base}/api/v1/email-accounts/save?api_key=<API key>
    Content-Type: application/json

    {
      "id": null,                    # null creates a new email account
      "from_name": "Sarah Johnson",
      "from_email": "sarah@company.com",
      "user_name": "sarah@company.com",
      "password": "...",
      "smtp_host": "smtp.company.com",
      "smtp_port": 587,
      "imap_host": "imap.company.com",
      "imap_port": 993,
      "max_email_per_day": 15,
      "custom_tracking_url": "",
      "bcc": "",
      "signature": "",
      "warmup_enabled": false,
      "total_warmup_per_day": null,
      "daily_rampup": null,
      "reply_rate_percentage": null,
      "client_id": null
    }

200 answers `{"ok": true, "message": ..., "emailAccountId": ...}`; `"ok": false`
is a failure with its message. Smartlead's API takes one login for SMTP and IMAP,
so a mailbox whose IMAP login differs fails with that reason instead of being
connected half right. The key is checked with GET /api/v1/email-accounts/.
"""

from __future__ import annotations

from typing import ClassVar

from mailfleet.platforms.base import Inbox, InboxResult, PlatformAdapter, platform_message
from mailfleet.platforms.http import PlatformClient


def account_body(inbox: Inbox) -> dict[str, object]:
    return {
        "id": None,
        "from_name": inbox.display_name,
        "from_email": inbox.email,
        "user_name": inbox.smtp.username,
        "password": inbox.smtp.password,
        "smtp_host": inbox.smtp.host,
        "smtp_port": inbox.smtp.port,
        "imap_host": inbox.imap.host,
        "imap_port": inbox.imap.port,
        "max_email_per_day": inbox.daily_limit,
        "custom_tracking_url": "",
        "bcc": "",
        "signature": inbox.signature or "",
        "warmup_enabled": False,
        "total_warmup_per_day": None,
        "daily_rampup": None,
        "reply_rate_percentage": None,
        "client_id": None,
    }


class SmartleadAdapter(PlatformAdapter):
    name: ClassVar[str] = "smartlead"
    label: ClassVar[str] = "Smartlead"
    default_base_url: ClassVar[str] = "https://server.smartlead.ai"
    validation_path: ClassVar[str | None] = "/api/v1/email-accounts/?offset=0&limit=1"

    def client(self, *extra_secrets: str) -> PlatformClient:
        return self._client(extra_secrets, params={"api_key": self.access.api_key or ""})

    async def connect_one(self, client: PlatformClient, inbox: Inbox) -> tuple[InboxResult, bool]:
        if (inbox.imap.username, inbox.imap.password) != (inbox.smtp.username, inbox.smtp.password):
            return (
                InboxResult(
                    inbox.email,
                    False,
                    "Smartlead's API takes one login for SMTP and IMAP, and this mailbox "
                    "uses different ones; connect it in Smartlead's app",
                ),
                False,
            )
        response = await client.request(
            "POST", "/api/v1/email-accounts/save", json_body=account_body(inbox)
        )
        data = response.json()
        if response.ok and isinstance(data, dict) and data.get("ok") is False:
            message = platform_message(response, client)
            return InboxResult(inbox.email, False, f"Smartlead refused it: {message}"), False
        remote_id = None
        if isinstance(data, dict) and data.get("emailAccountId") is not None:
            remote_id = str(data["emailAccountId"])
        return self.interpret(client, response, inbox, remote_id)
