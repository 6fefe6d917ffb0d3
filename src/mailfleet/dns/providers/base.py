"""The interface every DNS provider implements.

Mailfleet keeps its own copy of a zone's records; a provider is told what changed
(`RecordChange`: a record before and after, keyed by Mailfleet's record id) together
with the whole stored zone, so rrset-oriented APIs (PowerDNS) can rebuild a name and
type from it and record-oriented ones (Cloudflare) can address single records.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from mailfleet.dns.records import RecordData
from mailfleet.kit.errors import MailfleetError


class DnsProviderError(MailfleetError):
    """The provider could not be reached or failed; nothing was changed on our side."""

    status_code = 502
    code = "DNS_PROVIDER_ERROR"


class DnsProviderRejected(MailfleetError):
    """The provider refused the change (bad value, bad token); its reason is the message."""

    status_code = 400
    code = "DNS_PROVIDER_REJECTED"


@dataclass(frozen=True)
class ZoneRef:
    name: str
    zone_id: str | None = None


@dataclass(frozen=True)
class RecordChange:
    key: str
    before: RecordData | None
    after: RecordData | None
    provider_id: str | None = None


def inverse(changes: Sequence[RecordChange], applied: dict[str, Applied]) -> list[RecordChange]:
    """The changes that undo `changes` once applied (for compensation)."""
    undo: list[RecordChange] = []
    for change in reversed(changes):
        done = applied.get(change.key)
        provider_id = done.provider_id if done else change.provider_id
        undo.append(RecordChange(change.key, change.after, change.before, provider_id))
    return undo


@dataclass(frozen=True)
class Applied:
    """A record as the provider stored it: its id there and, when the provider
    answered with it, its own rendering of the record."""

    provider_id: str | None
    record: RecordData | None = None


@dataclass(frozen=True)
class ExistingRecord:
    provider_id: str | None
    record: RecordData


@dataclass(frozen=True)
class OpenedZone:
    zone_id: str | None
    nameservers: list[str]
    existing: list[ExistingRecord] = field(default_factory=list)
    # True when this call created the zone, so a failed connect may remove it again.
    created: bool = False


class DnsProvider(ABC):
    kind: ClassVar[str]

    @abstractmethod
    async def open_zone(self, name: str) -> OpenedZone:
        """Find or create the zone for `name` and return the records it already holds."""

    @abstractmethod
    async def apply(
        self,
        zone: ZoneRef,
        changes: Sequence[RecordChange],
        current: Sequence[tuple[str, RecordData]],
    ) -> dict[str, Applied]:
        """Make `changes` at the provider, atomically where it can.

        `current` is the stored zone before the changes, as (key, record). Returns
        what the provider answered for every change whose `after` is set.
        """

    @abstractmethod
    async def nameservers(self, zone: ZoneRef) -> list[str]:
        """The names to set at the registrar."""

    async def close_zone(self, zone: ZoneRef) -> None:  # noqa: B027 (optional hook)
        """Stop serving the zone when its domain is removed (default: leave it)."""

    async def abandon_zone(
        self, zone: ZoneRef, opened: OpenedZone, undo: Sequence[RecordChange]
    ) -> None:
        """Compensate a connect that failed after the zone was opened."""
        if undo:
            await self.apply(
                zone, undo, [(f"x{i}", e.record) for i, e in enumerate(opened.existing)]
            )

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        """Release connections."""
