"""Domains, their DNS records, DKIM keys, DNS check history and Cloudflare credentials."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mailfleet.db import Base
from mailfleet.kit.clock import utcnow
from mailfleet.models.common import Timestamps, UTCDateTime, id_column


class DomainStatus(StrEnum):
    """Pending until its records check out; misconfigured when a later check fails."""

    PENDING = "pending"
    ACTIVE = "active"
    MISCONFIGURED = "misconfigured"


class DkimKeyStatus(StrEnum):
    """Pending (published, not yet seen live), active (signing), retired (replaced)."""

    PENDING = "pending"
    ACTIVE = "active"
    RETIRED = "retired"


DOMAIN_STATUSES = tuple(DomainStatus)
DNS_PROVIDERS = ("mailfleet", "cloudflare", "manual")
MAIL_PROVIDERS = ("google", "microsoft", "zoho", "custom", "self-hosted")


class Domain(Timestamps, Base):
    __tablename__ = "domains"
    # One owner per name across workspaces: a zone can be hosted once, and the
    # forwarding middleware maps a Host header to exactly one domain.
    __table_args__ = (UniqueConstraint("name"),)

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE"), index=True
    )
    # ASCII (punycode), lowercase, no trailing dot; unicode_name is for display.
    name: Mapped[str] = mapped_column(String(253))
    unicode_name: Mapped[str] = mapped_column(String(253))
    dns_provider: Mapped[str] = mapped_column(String(20))
    mail_provider: Mapped[str] = mapped_column(String(20))
    # pending (never passed a DNS check), active (latest check has no failure),
    # misconfigured (was active, a later check failed).
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    # The provider's zone handle: PowerDNS zone id or Cloudflare zone id.
    provider_zone_id: Mapped[str | None] = mapped_column(String(255))
    nameservers: Mapped[list[str]] = mapped_column(JSON, default=list)
    ns_status: Mapped[str | None] = mapped_column(String(20))
    ns_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    dns_health: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    dns_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    dmarc_policy: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Records the customer must add from their mail provider's console.
    setup_instructions: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    forward_url: Mapped[str | None] = mapped_column(String(2048))
    forward_permanent: Mapped[bool] = mapped_column(Boolean, default=True)
    forward_keep_path: Mapped[bool] = mapped_column(Boolean, default=False)
    # Self-hosted mail: where mail for an address of this domain that no mailbox or
    # alias owns goes (None: it is refused).
    catch_all_destination: Mapped[str | None] = mapped_column(String(320))


class DnsRecord(Timestamps, Base):
    """One record as stored at the domain's DNS provider (or shown to copy, for manual)."""

    __tablename__ = "dns_records"

    id: Mapped[str] = id_column()
    domain_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("domains.id", ondelete="CASCADE"), index=True
    )
    # Fully qualified, ASCII, lowercase, no trailing dot.
    name: Mapped[str] = mapped_column(String(253))
    type: Mapped[str] = mapped_column(String(10))
    # The value without the priority: an address, a host, TXT text (unsplit),
    # "weight port target" for SRV, 'flags tag "value"' for CAA.
    content: Mapped[str] = mapped_column(Text)
    priority: Mapped[int | None] = mapped_column(Integer)
    ttl: Mapped[int] = mapped_column(Integer)
    # Why Mailfleet created it (mx, spf, dkim, dmarc, ns, forwarding, autodiscover);
    # None for the customer's own records.
    purpose: Mapped[str | None] = mapped_column(String(20))
    provider_record_id: Mapped[str | None] = mapped_column(String(64))


class DkimKey(Timestamps, Base):
    """A self-hosted domain's DKIM key pair; the private key is keyring ciphertext."""

    __tablename__ = "dkim_keys"
    __table_args__ = (UniqueConstraint("domain_id", "selector"),)

    id: Mapped[str] = id_column()
    domain_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("domains.id", ondelete="CASCADE"), index=True
    )
    selector: Mapped[str] = mapped_column(String(63))
    public_key: Mapped[str] = mapped_column(Text)
    private_key_enc: Mapped[str] = mapped_column(Text)
    # pending (published, not yet seen live), active (the signing key),
    # retired (replaced; its record stays published for a grace period).
    status: Mapped[str] = mapped_column(String(10))
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DomainDnsCheck(Base):
    """A DNS check whose outcome differed from the one before it (or the first)."""

    __tablename__ = "domain_dns_checks"

    id: Mapped[str] = id_column()
    domain_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("domains.id", ondelete="CASCADE"), index=True
    )
    overall: Mapped[str] = mapped_column(String(10))
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    # [{"check": "spf", "from": "pass", "to": "fail"}, ...]
    changes: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CloudflareCredential(Timestamps, Base):
    __tablename__ = "cloudflare_credentials"
    __table_args__ = (UniqueConstraint("workspace_id"),)

    id: Mapped[str] = id_column()
    workspace_id: Mapped[str] = mapped_column(
        String(24), ForeignKey("workspaces.id", ondelete="CASCADE")
    )
    api_token_enc: Mapped[str] = mapped_column(Text)
    account_id: Mapped[str | None] = mapped_column(String(64))
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
