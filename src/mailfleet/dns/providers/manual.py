"""Manual DNS: Mailfleet stores the records and shows them; the customer copies them
to whatever hosts their DNS. Nothing is written anywhere else."""

from __future__ import annotations

from collections.abc import Sequence

from mailfleet.dns.providers.base import Applied, DnsProvider, OpenedZone, RecordChange, ZoneRef
from mailfleet.dns.records import RecordData


class ManualProvider(DnsProvider):
    kind = "manual"

    async def open_zone(self, name: str) -> OpenedZone:
        return OpenedZone(zone_id=None, nameservers=[])

    async def apply(
        self,
        zone: ZoneRef,
        changes: Sequence[RecordChange],
        current: Sequence[tuple[str, RecordData]],
    ) -> dict[str, Applied]:
        return {c.key: Applied(None, c.after) for c in changes if c.after is not None}

    async def nameservers(self, zone: ZoneRef) -> list[str]:
        return []
