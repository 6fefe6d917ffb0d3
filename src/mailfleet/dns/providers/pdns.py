"""Zones hosted by Mailfleet on a PowerDNS authoritative server, through its HTTP API.

PowerDNS edits whole rrsets (all records of one name and type): a change is sent as
REPLACE of every affected rrset, rebuilt from the stored zone, in one PATCH, which
PowerDNS applies atomically.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

from mailfleet.dns.providers.base import (
    Applied,
    DnsProvider,
    DnsProviderError,
    DnsProviderRejected,
    ExistingRecord,
    OpenedZone,
    RecordChange,
    ZoneRef,
)
from mailfleet.dns.records import DEFAULT_TTL, RecordData, absolute

log = logging.getLogger(__name__)

TIMEOUT = 15.0


class PowerDnsProvider(DnsProvider):
    kind = "mailfleet"

    def __init__(
        self,
        api_url: str,
        api_key: str,
        nameservers: Sequence[str],
        server_id: str = "localhost",
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._nameservers = [ns.rstrip(".").lower() for ns in nameservers]
        self._base = f"{api_url.rstrip('/')}/api/v1/servers/{quote(server_id, safe='')}"
        # The key travels in a header only; httpx never puts headers in its errors.
        self._client = httpx.AsyncClient(
            headers={"X-API-Key": api_key, "Accept": "application/json"},
            timeout=TIMEOUT,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    def _zone_url(self, name: str) -> str:
        return f"{self._base}/zones/{quote(absolute(name), safe='')}"

    async def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise DnsProviderError(
                f"PowerDNS could not be reached ({type(exc).__name__})"
            ) from None
        if response.status_code >= 500:
            raise DnsProviderError(
                f"PowerDNS failed with HTTP {response.status_code}: {_error_text(response)}"
            )
        return response

    async def open_zone(self, name: str) -> OpenedZone:
        if not self._nameservers:
            raise DnsProviderRejected(
                "MAILFLEET_NAMESERVERS is empty: set the NS names customers delegate to"
            )
        body = {
            "name": absolute(name),
            "kind": "Native",
            "nameservers": [absolute(ns) for ns in self._nameservers],
        }
        response = await self._request("POST", f"{self._base}/zones", json=body)
        if response.status_code == 409:
            # The names are unique in Mailfleet's database, so an existing zone is one
            # a crash left behind after creating it and before our commit: start over.
            log.warning("PowerDNS already had zone %s; recreating it", name)
            await self._request("DELETE", self._zone_url(name))
            response = await self._request("POST", f"{self._base}/zones", json=body)
        _raise_for(response, f"create zone {name}")
        data = response.json()
        existing = [
            ExistingRecord(None, RecordData(name, "NS", ns, DEFAULT_TTL))
            for ns in self._nameservers
        ]
        return OpenedZone(
            zone_id=str(data.get("id") or absolute(name)),
            nameservers=list(self._nameservers),
            existing=existing,
            created=True,
        )

    async def apply(
        self,
        zone: ZoneRef,
        changes: Sequence[RecordChange],
        current: Sequence[tuple[str, RecordData]],
    ) -> dict[str, Applied]:
        state = dict(current)
        affected: set[tuple[str, str]] = set()
        for change in changes:
            for record in (change.before, change.after):
                if record is not None:
                    affected.add(record.rrset)
            if change.after is None:
                state.pop(change.key, None)
            else:
                state[change.key] = change.after
        rrsets: list[dict[str, Any]] = []
        for name, rtype in sorted(affected):
            records = [r for r in state.values() if r.rrset == (name, rtype)]
            if not records:
                rrsets.append({"name": absolute(name), "type": rtype, "changetype": "DELETE"})
                continue
            rrsets.append(
                {
                    "name": absolute(name),
                    "type": rtype,
                    # One TTL per rrset in DNS; the shortest keeps every record's promise.
                    "ttl": min(r.ttl for r in records),
                    "changetype": "REPLACE",
                    "records": [
                        {"content": r.zone_file_value(), "disabled": False}
                        for r in sorted(records, key=lambda r: r.zone_file_value())
                    ],
                }
            )
        if rrsets:
            response = await self._request(
                "PATCH", self._zone_url(zone.name), json={"rrsets": rrsets}
            )
            _raise_for(response, f"update zone {zone.name}")
        return {c.key: Applied(None, c.after) for c in changes if c.after is not None}

    async def nameservers(self, zone: ZoneRef) -> list[str]:
        return list(self._nameservers)

    async def close_zone(self, zone: ZoneRef) -> None:
        response = await self._request("DELETE", self._zone_url(zone.name))
        if response.status_code != 404:
            _raise_for(response, f"delete zone {zone.name}")

    async def abandon_zone(
        self, zone: ZoneRef, opened: OpenedZone, undo: Sequence[RecordChange]
    ) -> None:
        if opened.created:
            await self.close_zone(zone)


def _error_text(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])[:300]
    return response.reason_phrase


def _raise_for(response: httpx.Response, action: str) -> None:
    if response.status_code < 400:
        return
    if response.status_code in (401, 403):
        raise DnsProviderError(f"PowerDNS refused the API key ({action})")
    raise DnsProviderRejected(f"PowerDNS could not {action}: {_error_text(response)}")
