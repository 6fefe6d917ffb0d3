"""Request and response shapes of exports: platform accounts, connect-inbox (the
LiteMail seed's snake_case dialect), mailbox exports and export history."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mailfleet.kit.envelope import ApiModel, ApiOut, Timestamp, example
from mailfleet.kit.validation import EmailAddress, HeaderToken, Hostname, Port
from mailfleet.platforms import PLATFORMS
from mailfleet.platforms.csv_formats import Layout

MAX_CONNECT_INBOXES = 1000
MAX_SELECTION = 50_000
PLATFORM_DESCRIPTION = "One of: " + ", ".join(PLATFORMS)
Platform = Literal["instantly", "smartlead", "saleshandy", "sendkit", "deeplead"]
ExportStatus = Literal["IN_PROGRESS", "COMPLETED", "PARTIAL", "FAILED"]
MailboxStatus = Literal["inactive", "active", "paused", "error"]


def _platform_name(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


# Platform accounts


class PlatformAccountCreate(ApiModel):
    model_config = example(
        {"platform": "instantly", "name": "Main Instantly", "apiKey": "instantly-api-key"}
    )

    platform: Platform = Field(description=PLATFORM_DESCRIPTION)
    name: str = Field(default="", max_length=200)
    api_key: HeaderToken | None = Field(default=None, min_length=1, max_length=2000, repr=False)
    email: EmailAddress | None = Field(default=None, description="The platform login")
    password: str | None = Field(default=None, min_length=1, max_length=1024, repr=False)
    base_url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="The platform's API root, when not its public one (a self-hosted "
        "SendKit, another Mailfleet)",
    )
    verify: bool = Field(default=True, description="Check the API key with the platform first")

    _platform = field_validator("platform", mode="before")(_platform_name)

    @model_validator(mode="after")
    def _some_credential(self) -> PlatformAccountCreate:
        if self.api_key is None and (self.email is None or self.password is None):
            raise ValueError("give apiKey, or email and password (the platform login)")
        return self


class PlatformAccountUpdate(ApiModel):
    """Fields left out keep their value; apiKey, password or baseUrl set to null clear it."""

    model_config = example({"name": "Instantly (EU)"})

    name: str | None = Field(default=None, max_length=200)
    api_key: HeaderToken | None = Field(default=None, min_length=1, max_length=2000, repr=False)
    email: EmailAddress | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024, repr=False)
    base_url: str | None = Field(default=None, min_length=1, max_length=2048)
    verify: bool = True


class ValidationOut(ApiOut):
    status: Literal["valid", "invalid", "unreachable", "unchecked"]
    message: str | None
    checked_at: Timestamp | None


class PlatformAccountOut(ApiOut):
    """A platform account; its API key and password are never returned."""

    id: str
    platform: str
    name: str
    email: str | None
    has_api_key: bool
    has_password: bool
    base_url: str | None
    validation: ValidationOut
    created_at: Timestamp
    updated_at: Timestamp


# Connect-inbox (LiteMail's dialect: snake_case, unknown fields ignored)


class ConnectInboxItem(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    email: EmailAddress
    password: str | None = Field(default=None, min_length=1, max_length=1024, repr=False)
    pass_: str | None = Field(default=None, alias="pass", min_length=1, max_length=1024, repr=False)
    name: str | None = Field(default=None, max_length=200)
    # Mailfleet's addition, for domains whose servers discovery cannot find.
    smtp_host: Hostname | None = None
    smtp_port: Port | None = None
    imap_host: Hostname | None = None
    imap_port: Port | None = None

    @model_validator(mode="after")
    def _has_password(self) -> ConnectInboxItem:
        if self.password is None and self.pass_ is None:
            raise ValueError("give the inbox's password (password, or pass)")
        return self

    @property
    def secret(self) -> str:
        secret = self.password if self.password is not None else self.pass_
        assert secret is not None
        return secret


class ConnectInboxRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "platform_type": "instantly",
                    "platform_email": "owner@agency.example",
                    "platform_pass": "platform-password",
                    "inboxes": [{"email": "ana@example.com", "password": "app-password"}],
                    "workspaceName": "Agency A",
                }
            ]
        },
    )

    platform_type: Platform = Field(description=PLATFORM_DESCRIPTION)
    platform_email: EmailAddress
    platform_pass: str | None = Field(default=None, min_length=1, max_length=1024, repr=False)
    inbox_type: str | None = Field(
        default=None, max_length=40, description="google, microsoft, ...: the inboxes' provider"
    )
    inboxes: list[ConnectInboxItem] = Field(min_length=1, max_length=MAX_CONNECT_INBOXES)
    workspace_name: str | None = Field(default=None, alias="workspaceName", max_length=200)

    _platform = field_validator("platform_type", mode="before")(_platform_name)


class ConnectInboxRecordOut(ApiOut):
    id: str
    platform: str
    email: str
    workspace_name: str | None
    selected_mailboxes: list[dict[str, Any]]


class ConnectInboxHistoryOut(ApiOut):
    id: str
    job_id: str
    total_mailboxes: int
    platform: str
    export_status: ExportStatus
    created_at: Timestamp


class ConnectInboxData(ApiOut):
    record: ConnectInboxRecordOut
    export_history: ConnectInboxHistoryOut


class ConnectInboxOut(ApiOut):
    """LiteMail's answer to connect-inbox, key for key: HTTP status in the body too."""

    status: int = 200
    message: str
    data: ConnectInboxData


class LiteMailError(BaseModel):
    """LiteMail's error body, for connect-inbox."""

    error: str = Field(examples=["Bad Request"])
    message: str
    path: str = Field(examples=["/v1/connect-inbox"])
    timestamp: str = Field(examples=["2026-01-01T00:00:00.000Z"])
    details: list[dict[str, Any]] | None = Field(
        default=None, exclude_if=lambda value: value is None
    )


# Mailbox exports


class MailboxExportRequest(ApiModel):
    """A selection of mailboxes (every filter given must match) and where it goes: a
    CSV file in `layout`, or the platform account `platformAccountId`."""

    model_config = example({"tags": ["warm"], "status": "active", "layout": "instantly"})

    mailbox_ids: list[str] | None = Field(default=None, max_length=MAX_SELECTION)
    tags: list[str] | None = Field(
        default=None, max_length=100, description="Tag ids or names; any of them matches"
    )
    status: MailboxStatus | None = None
    pool_id: str | None = None
    domain: str | None = Field(default=None, max_length=253)
    search: str | None = Field(default=None, max_length=200)
    layout: Layout = Field(default="mailfleet", description="mailfleet, instantly or smartlead")
    include_credentials: bool | None = Field(
        default=None,
        description="Passwords in the CSV: owners and admins only; the default for them",
    )
    platform_account_id: str | None = Field(
        default=None, description="Push the selection to this platform account instead"
    )


# Export history


class ExportHistoryOut(ApiOut):
    id: str
    job_id: str
    platform: str
    source: str
    export_status: ExportStatus
    total_mailboxes: int
    connected_count: int
    failed_count: int
    platform_account_id: str | None
    connect_inbox_id: str | None
    workspace_name: str | None
    layout: str | None
    credentials_included: bool
    error: str | None
    note: str | None
    created_by: str | None
    created_at: Timestamp
    updated_at: Timestamp
    finished_at: Timestamp | None


class ExportResultOut(ApiOut):
    email: str
    mailbox_id: str | None
    status: Literal["pending", "connected", "failed"]
    message: str | None
    remote_id: str | None
    finished_at: Timestamp | None


class ExportHistoryDetailOut(ExportHistoryOut):
    results: list[ExportResultOut]


class ExternalResultIn(ApiModel):
    email: EmailAddress
    status: Literal["connected", "failed"] = "connected"
    message: str | None = Field(default=None, max_length=1000)


class ExportHistoryCreate(ApiModel):
    """An export done outside Mailfleet, recorded for the history."""

    model_config = example(
        {
            "platform": "smartlead",
            "exportStatus": "COMPLETED",
            "mailboxes": [{"email": "ana@example.com", "status": "connected"}],
        }
    )

    platform: str = Field(min_length=1, max_length=32)
    export_status: Literal["COMPLETED", "PARTIAL", "FAILED"] = "COMPLETED"
    total_mailboxes: int | None = Field(default=None, ge=0, le=1_000_000)
    job_id: str | None = Field(default=None, min_length=1, max_length=16, pattern=r"^[\w-]+$")
    workspace_name: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=1000)
    mailboxes: list[ExternalResultIn] | None = Field(default=None, max_length=MAX_SELECTION)

    _platform = field_validator("platform", mode="before")(_platform_name)

    @model_validator(mode="after")
    def _total_covers_mailboxes(self) -> ExportHistoryCreate:
        if (
            self.mailboxes is not None
            and self.total_mailboxes is not None
            and self.total_mailboxes < len(self.mailboxes)
        ):
            raise ValueError("totalMailboxes is smaller than the mailboxes listed")
        return self
