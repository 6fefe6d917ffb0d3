"""Request and response shapes of the mailbox resource (SendKit's "Add SMTP mailbox")."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from mailfleet.kit.envelope import ApiModel, ApiOut, Timestamp, example
from mailfleet.kit.validation import EmailAddress, Hostname, Port

MIN_DAILY_LIMIT = 1
MAX_DAILY_LIMIT = 50


def clamp_daily_limit(value: Any) -> Any:
    # SendKit clamps out-of-range limits instead of rejecting them; non-numbers
    # still fail validation afterwards.
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(MIN_DAILY_LIMIT, min(MAX_DAILY_LIMIT, int(value)))
    return value


def clean_tags(tags: list[str] | None) -> list[str] | None:
    if tags is None:
        return None
    cleaned: list[str] = []
    for tag in tags:
        name = tag.strip()
        if not name or len(name) > 100:
            raise ValueError("each tag must have 1 to 100 characters")
        if name not in cleaned:
            cleaned.append(name)
    return cleaned


class ServerIn(ApiModel):
    host: Hostname
    port: Port
    secure: bool = True
    username: str | None = Field(default=None, min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024, repr=False)


class SmtpIn(ServerIn):
    port: Port = 587


class ImapIn(ServerIn):
    port: Port = 993


class MailboxCreate(ApiModel):
    model_config = example(
        {
            "email": "ana@example.com",
            "displayName": "Ana Silva",
            "provider": "custom",
            "smtp": {
                "host": "smtp.example.com",
                "port": 587,
                "secure": True,
                "password": "app-password",
            },
            "imap": {
                "host": "imap.example.com",
                "port": 993,
                "secure": True,
                "password": "app-password",
            },
            "dailySendLimit": 30,
            "tags": ["warm"],
        }
    )

    email: EmailAddress
    display_name: str | None = Field(default=None, max_length=200)
    provider: str = Field(default="custom", min_length=1, max_length=40)
    smtp: SmtpIn
    imap: ImapIn | None = None
    daily_send_limit: int = 15
    signature: str | None = Field(default=None, max_length=20_000)
    tags: list[str] = Field(default_factory=list, max_length=50)
    pool_id: str | None = Field(default=None, description="A pool of this workspace")

    _clamp = field_validator("daily_send_limit", mode="before")(clamp_daily_limit)
    _tags = field_validator("tags")(clean_tags)


class ServerUpdate(ApiModel):
    host: Hostname | None = None
    port: Port | None = None
    secure: bool | None = None
    username: str | None = Field(default=None, min_length=1, max_length=320)
    password: str | None = Field(default=None, min_length=1, max_length=1024, repr=False)


class MailboxUpdate(ApiModel):
    model_config = example({"dailySendLimit": 40, "sendingEnabled": False})

    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    # Hosted mailboxes only (mailserver/): names, and a new password (given, or
    # generated with resetPassword and returned once).
    first_name: str | None = Field(default=None, min_length=1, max_length=100)
    last_name: str | None = Field(default=None, max_length=100)
    password: str | None = Field(default=None, min_length=10, max_length=128, repr=False)
    reset_password: bool = False
    daily_send_limit: int | None = None
    signature: str | None = Field(default=None, max_length=20_000)
    tags: list[str] | None = Field(default=None, max_length=50)
    sending_enabled: bool | None = Field(
        default=None, description="false pauses sending (status paused); true resumes it"
    )
    pool_id: str | None = Field(default=None, description="Move to this pool; null removes it")
    placement_seed: bool | None = Field(
        default=None, description="true: a seed of placement tests (GET /v1/placement-tests/seeds)"
    )
    smtp: ServerUpdate | None = Field(default=None, description="New settings trigger a re-test")
    imap: ServerUpdate | None = Field(default=None, description="New settings trigger a re-test")

    _clamp = field_validator("daily_send_limit", mode="before")(clamp_daily_limit)
    _tags = field_validator("tags")(clean_tags)


class MailboxOut(ApiOut):
    """A mailbox as SendKit returns it (credentials excluded), plus Mailfleet's extras."""

    mongo_id: str = Field(serialization_alias="_id")
    id: str
    email: str
    display_name: str
    provider: str
    status: str
    connection_type: str
    daily_send_limit: int
    sending_enabled: bool
    signature: str | None
    tags: list[str]
    smtp_host: str
    smtp_port: int
    smtp_secure: bool
    smtp_username: str
    imap_host: str
    imap_port: int
    imap_secure: bool
    imap_username: str
    domain: str
    pool_id: str | None
    placement_seed: bool = False
    setup_status: dict[str, Any] | None
    last_verified_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    # Hosted mailboxes: on Mailfleet's own mail server.
    hosted: bool = False
    first_name: str | None = None
    last_name: str | None = None
    quota_bytes: int | None = None
    quota_used_bytes: int | None = None
    forward_to: str | None = None
    # Only in the answer to the PUT that generated it (resetPassword); absent
    # otherwise, so SendKit's mailbox shape stays as it was.
    password: str | None = Field(default=None, exclude_if=lambda value: value is None)


class ConnectionTestOut(ApiOut):
    id: str
    mailbox_id: str
    email: str
    status: Literal["pending", "success", "failed"]
    kind: str
    smtp: dict[str, Any] | None
    imap: dict[str, Any] | None
    error: dict[str, str] | None
    mailbox_deleted: bool
    created_at: Timestamp
    finished_at: Timestamp | None


class TagCreate(ApiModel):
    model_config = example({"name": "warm", "color": "#f59e0b"})

    name: str = Field(min_length=1, max_length=100)
    color: str | None = Field(default=None, max_length=20)


class TagUpdate(ApiModel):
    model_config = example({"color": "#10b981"})

    name: str | None = Field(default=None, min_length=1, max_length=100)
    color: str | None = Field(default=None, max_length=20)


class TagOut(ApiOut):
    id: str
    name: str
    color: str | None
    mailbox_count: int = 0
    created_at: Timestamp
    updated_at: Timestamp


class StatusCounts(ApiOut):
    total: int
    inactive: int
    active: int
    paused: int
    error: int
    pending_tests: int


class PoolCreate(ApiModel):
    model_config = example({"name": "Client A"})

    name: str = Field(min_length=1, max_length=200)


class PoolUpdate(ApiModel):
    model_config = example({"name": "Client A (EU)"})

    name: str = Field(min_length=1, max_length=200)


class PoolOut(ApiOut):
    id: str
    name: str
    inbox_count: int = 0
    created_at: Timestamp
    updated_at: Timestamp


class ServerSettingsOut(ApiOut):
    host: str
    port: int
    secure: bool
    security: Literal["ssl", "starttls", "none"]
    username: str | None


class DiscoveryOut(ApiOut):
    email: str
    provider: str | None
    source: str = Field(
        description='"provider-table", "domain-table", "mx:<host>", "autoconfig:<url>", '
        '"ispdb:<domain>" or "none"'
    )
    imap: ServerSettingsOut | None
    smtp: ServerSettingsOut | None


class RemovalOut(ApiOut):
    removal_at: Timestamp = Field(description="When the renewal removes the mailbox")
