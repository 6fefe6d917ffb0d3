"""Request and response shapes of domains, DNS records, checks, forwarding and Cloudflare."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from mailfleet.kit.envelope import ApiModel, ApiOut, Timestamp, example
from mailfleet.kit.validation import HeaderToken, normalize_email

DnsProviderName = Literal["mailfleet", "cloudflare", "manual"]
MailProviderName = Literal["google", "microsoft", "zoho", "custom", "self-hosted"]
PolicyName = Literal["none", "quarantine", "reject"]

MAX_DOMAINS_PER_CONNECT = 100


class DomainConnect(ApiModel):
    """One name (`domain`) or many (`domains`); names are IDNA-normalised by the service."""

    model_config = example(
        {
            "domains": ["example.com", "example.net"],
            "dnsProvider": "mailfleet",
            "mailProvider": "custom",
        }
    )

    domain: str | None = Field(default=None, max_length=253, examples=["example.com"])
    domains: list[str] | None = Field(default=None, max_length=MAX_DOMAINS_PER_CONNECT)
    dns_provider: DnsProviderName = "mailfleet"
    mail_provider: MailProviderName = "custom"

    @model_validator(mode="after")
    def _some_name(self) -> DomainConnect:
        if not self.domain and not self.domains:
            raise ValueError("give `domain` or `domains`")
        return self

    def names(self) -> list[str]:
        return ([self.domain] if self.domain else []) + list(self.domains or [])


class MailProviderChange(ApiModel):
    model_config = example({"mailProvider": "self-hosted"})

    mail_provider: MailProviderName


class DnsRecordIn(ApiModel):
    model_config = example(
        {"type": "TXT", "name": "@", "content": "google-site-verification=abc123", "ttl": 3600}
    )

    type: str = Field(min_length=1, max_length=10, examples=["TXT"])
    name: str = Field(
        default="@", max_length=253, description="@ for the apex, a relative or a full name"
    )
    content: str = Field(max_length=4000, description="TXT over 255 characters is split for you")
    ttl: int | None = Field(default=None, description="seconds, 60..86400; default 3600")
    priority: int | None = Field(default=None, description="MX and SRV only")


class DnsRecordOut(ApiOut):
    id: str
    domain_id: str
    name: str
    host: str
    type: str
    content: str
    priority: int | None
    ttl: int
    # The TXT value as DNS character-strings (255 bytes each), ready to paste.
    strings: list[str] | None
    purpose: str | None
    managed: bool
    provider_record_id: str | None
    created_at: Timestamp
    updated_at: Timestamp


class DmarcIn(ApiModel):
    model_config = example({"p": "quarantine", "pct": 100, "rua": ["mailto:dmarc@example.com"]})

    p: PolicyName
    sp: PolicyName | None = None
    pct: int | None = Field(default=None, ge=0, le=100)
    rua: list[str] = Field(default_factory=list, max_length=10)
    ruf: list[str] = Field(default_factory=list, max_length=10)
    adkim: Literal["r", "s"] | None = None
    aspf: Literal["r", "s"] | None = None

    @field_validator("rua", "ruf", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part for part in value.split(",") if part.strip()]
        return value

    @field_validator("rua", "ruf")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        cleaned = []
        for entry in value:
            text = entry.strip()
            address = text[7:] if text.lower().startswith("mailto:") else text
            cleaned.append(normalize_email(address))
        return cleaned


class ForwardingIn(ApiModel):
    model_config = example({"url": "https://www.example.com", "permanent": True, "keepPath": False})

    url: str = Field(max_length=2048, examples=["https://www.example.com"])
    permanent: bool = True
    keep_path: bool = False


class ForwardingOut(ApiOut):
    url: str
    permanent: bool
    keep_path: bool


class DkimKeyOut(ApiOut):
    selector: str
    status: str
    record_name: str
    public_key: str
    activated_at: Timestamp | None
    retired_at: Timestamp | None
    created_at: Timestamp


class DomainOut(ApiOut):
    id: str
    name: str
    unicode_name: str
    status: str
    dns_provider: str
    mail_provider: str
    mailbox_count: int
    nameservers: list[str]
    nameserver_status: str | None
    nameservers_checked_at: Timestamp | None
    dns_health: dict[str, Any] | None
    dns_checked_at: Timestamp | None
    dmarc: dict[str, Any] | None
    forwarding: ForwardingOut | None
    setup_instructions: list[dict[str, Any]]
    created_at: Timestamp
    updated_at: Timestamp


class DomainDetailOut(DomainOut):
    dkim: list[DkimKeyOut]
    records: list[DnsRecordOut]
    # Self-hosted domains: email forwarding and catch-all (mailserver/).
    hosted_mail: Any = None


class DnsCheckOut(ApiOut):
    domain_id: str
    domain: str
    status: str
    overall: str
    checked_at: str | None
    mx: dict[str, Any]
    spf: dict[str, Any]
    dkim: dict[str, Any]
    dmarc: dict[str, Any]
    changes: list[dict[str, Any]]


class DnsCheckHistoryOut(ApiOut):
    id: str
    overall: str
    changes: list[dict[str, Any]]
    result: dict[str, Any]
    created_at: Timestamp


class NameserversOut(ApiOut):
    domain_id: str
    domain: str
    dns_provider: str
    nameservers: list[str]
    instructions: str


class ResolverNsResult(ApiOut):
    resolver: str
    status: Literal["propagated", "partial", "pending", "unknown"]
    found: list[str]
    message: str


class NameserverVerifyOut(ApiOut):
    domain_id: str
    domain: str
    status: Literal["propagated", "partial", "pending", "unknown"]
    expected: list[str]
    resolvers: list[ResolverNsResult]
    checked_at: Timestamp


class CloudflareIn(ApiModel):
    """Save credentials (apiToken, accountId), connect domains, or both at once."""

    model_config = example(
        {"apiToken": "cf-token-with-zone-dns-edit-0123456789", "domains": ["example.com"]}
    )

    api_token: HeaderToken | None = Field(default=None, min_length=20, max_length=200, repr=False)
    account_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    domain: str | None = Field(default=None, max_length=253)
    domains: list[str] | None = Field(default=None, max_length=MAX_DOMAINS_PER_CONNECT)
    mail_provider: MailProviderName = "custom"

    @model_validator(mode="after")
    def _something(self) -> CloudflareIn:
        if not (self.api_token or self.account_id or self.domain or self.domains):
            raise ValueError("give apiToken (to save credentials) and/or domain(s) to connect")
        return self

    def names(self) -> list[str]:
        return ([self.domain] if self.domain else []) + list(self.domains or [])


class CloudflareZoneOut(ApiOut):
    id: str
    name: str
    status: str
    name_servers: list[str]
    connected: bool


class CloudflareOut(ApiOut):
    configured: bool
    account_id: str | None
    verified_at: Timestamp | None
    zones: list[CloudflareZoneOut]
    domains: list[DomainOut] = Field(default_factory=list)
