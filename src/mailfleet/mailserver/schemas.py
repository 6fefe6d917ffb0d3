"""Request and response shapes of hosted mailboxes, email forwarding and catch-all."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from mailfleet.kit.envelope import ApiModel, ApiOut, example
from mailfleet.kit.validation import EmailAddress
from mailfleet.mailboxes.schemas import clamp_daily_limit, clean_tags
from mailfleet.mailserver.passwords import MIN_PASSWORD_LENGTH

MAX_ITEMS = 1000

# A conservative local part every mail system accepts: letters, digits, and single
# dots, hyphens or underscores between them; "+" is left for sub-addressing.
_LOCAL_PART = re.compile(r"^[a-z0-9](?:[a-z0-9]|[._-](?=[a-z0-9])){0,63}$")


def check_local_part(value: str) -> str:
    name = value.strip().lower()
    if not _LOCAL_PART.match(name):
        raise ValueError(
            "not a valid local part: 1 to 64 letters, digits, and single '.', '-' or '_' "
            "between them"
        )
    return name


class HostedMailboxIn(ApiModel):
    username: str = Field(min_length=1, max_length=64, examples=["alice"])
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(default="", max_length=100)
    password: str | None = Field(
        default=None, min_length=MIN_PASSWORD_LENGTH, max_length=128, repr=False
    )
    daily_send_limit: int = 15
    tags: list[str] = Field(default_factory=list, max_length=50)
    pool_id: str | None = None

    _username = field_validator("username")(check_local_part)
    _clamp = field_validator("daily_send_limit", mode="before")(clamp_daily_limit)
    _tags = field_validator("tags")(clean_tags)

    @field_validator("first_name", "last_name")
    @classmethod
    def _strip(cls, value: str) -> str:
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError("must be one line")
        return value.strip()


class HostedMailboxesIn(ApiModel):
    """`{"mailboxes": [...]}`: the batch form of POST /v1/domains/{id}/mailboxes."""

    mailboxes: list[HostedMailboxIn] = Field(min_length=1, max_length=MAX_ITEMS)


class HostedMailboxResult(ApiOut):
    index: int
    username: str
    email: str
    status: str  # created or failed
    mailbox_id: str | None = None
    # Only when Mailfleet generated it, and only in this response.
    password: str | None = None
    error: dict[str, Any] | None = None


class HostedMailboxesOut(ApiOut):
    summary: dict[str, int]
    results: list[HostedMailboxResult]


class EmailForwardingIn(ApiModel):
    model_config = example({"forwardTo": "team@example.com", "keepCopy": True})

    forward_to: EmailAddress
    keep_copy: bool = True
    mailbox_ids: list[str] | None = Field(default=None, max_length=MAX_ITEMS)


class EmailForwardingOut(ApiOut):
    forward_to: str
    keep_copy: bool
    mailbox_ids: list[str]


class CatchAllIn(ApiModel):
    model_config = example({"destination": "alice@example.com"})

    destination: EmailAddress


class CatchAllOut(ApiOut):
    destination: str


class HostedMailOut(ApiOut):
    """A self-hosted domain's mail routing, as GET /v1/domains/{id} shows it."""

    email_forwarding: list[EmailForwardingOut]
    catch_all: CatchAllOut | None


class HostedUpdateIn(ApiModel):
    """The hosted-only part of PUT /v1/mailboxes/{id}."""

    first_name: str | None = Field(default=None, min_length=1, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    password: str | None = Field(
        default=None, min_length=MIN_PASSWORD_LENGTH, max_length=128, repr=False
    )
    reset_password: bool = False

    @model_validator(mode="after")
    def _one_password(self) -> HostedUpdateIn:
        if self.password is not None and self.reset_password:
            raise ValueError("give either password or resetPassword, not both")
        return self
