"""Zones on the customer's Cloudflare account, through the official `cloudflare` SDK.

Cloudflare edits single records by id. One change goes to the record's own endpoint;
several go in one call to the batch endpoint, which Cloudflare applies atomically
(deletes, then puts, then posts), so a connect never leaves half its records behind.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import cloudflare
from cloudflare import AsyncCloudflare

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
from mailfleet.dns.records import (
    RECORD_TYPES,
    RecordData,
    RecordError,
    caa_parts,
    unquote_txt,
    validate_record,
)

log = logging.getLogger(__name__)
# At DEBUG the SDK logs request options (record bodies); Mailfleet logs ids only.
logging.getLogger("cloudflare").setLevel(logging.WARNING)

TIMEOUT = 20.0
PAGE_SIZE = 100
# Cloudflare's "automatic" TTL; it serves such records with 300 seconds.
AUTO_TTL = 1
AUTO_TTL_SECONDS = 300


@dataclass(frozen=True)
class CloudflareZone:
    id: str
    name: str
    status: str
    name_servers: list[str]


def make_client(api_token: str, base_url: str) -> AsyncCloudflare:
    client = AsyncCloudflare(api_token=api_token, base_url=base_url, timeout=TIMEOUT, max_retries=1)
    # The SDK falls back to CLOUDFLARE_* environment variables and prefers a global
    # key over the token; only the workspace's own token may be used.
    client.api_key = None
    client.api_email = None
    client.user_service_key = None
    return client


def _messages(body: object) -> str:
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            texts = [
                f"{e.get('message', '')} (code {e.get('code')})"
                for e in errors
                if isinstance(e, dict)
            ]
            if texts:
                return "; ".join(texts)[:500]
    return "no reason given"


class _Translate:
    """Turns SDK exceptions into Mailfleet's, with Cloudflare's own reason."""

    def __init__(self, action: str) -> None:
        self.action = action

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: Any, tb: Any) -> None:
        if exc is None:
            return
        if isinstance(exc, cloudflare.APIStatusError):
            reason = _messages(exc.body)
            if exc.status_code in (401, 403):
                raise DnsProviderRejected(
                    f"Cloudflare refused the API token ({self.action}): {reason}"
                ) from None
            if exc.status_code >= 500:
                raise DnsProviderError(
                    f"Cloudflare failed with HTTP {exc.status_code} ({self.action}): {reason}"
                ) from None
            raise DnsProviderRejected(f"Cloudflare could not {self.action}: {reason}") from None
        if isinstance(exc, cloudflare.APIConnectionError):
            raise DnsProviderError(f"Cloudflare could not be reached ({self.action})") from None
        if isinstance(exc, cloudflare.APIError):
            raise DnsProviderError(f"Cloudflare answered unexpectedly ({self.action})") from None


def record_body(record: RecordData) -> dict[str, Any]:
    """A record in the shape of Cloudflare's "Create DNS Record" request."""
    body: dict[str, Any] = {"name": record.name, "type": record.type, "ttl": record.ttl}
    if record.type == "SRV":
        weight, port, target = record.content.split(" ")
        body["data"] = {
            "priority": record.priority,
            "weight": int(weight),
            "port": int(port),
            "target": target,
        }
    elif record.type == "CAA":
        flags, tag, value = caa_parts(record.content)
        body["data"] = {"flags": flags, "tag": tag, "value": value}
    else:
        body["content"] = record.content
        if record.type == "MX":
            body["priority"] = record.priority
    return body


def record_from_cloudflare(zone: str, data: dict[str, Any]) -> RecordData | None:
    """A Cloudflare record in Mailfleet's form; None for types Mailfleet does not manage."""
    rtype = str(data.get("type", ""))
    if rtype not in RECORD_TYPES:
        return None
    ttl = int(data.get("ttl") or AUTO_TTL)
    ttl = AUTO_TTL_SECONDS if ttl == AUTO_TTL else ttl
    inner = data.get("data") if isinstance(data.get("data"), dict) else {}
    assert isinstance(inner, dict)
    priority = data.get("priority")
    content = str(data.get("content") or "")
    if rtype == "SRV":
        priority = inner.get("priority", priority)
        content = f"{inner.get('weight', 0)} {inner.get('port', 0)} {inner.get('target', '.')}"
    elif rtype == "CAA" and inner:
        content = f'{inner.get("flags", 0)} {inner.get("tag", "")} "{inner.get("value", "")}"'
    elif rtype == "TXT":
        content = unquote_txt(content)
    try:
        return validate_record(
            zone,
            rtype,
            str(data.get("name", "")) + ".",
            content,
            ttl=min(max(ttl, 60), 86400),
            priority=int(priority) if priority is not None and rtype in ("MX", "SRV") else None,
        )
    except RecordError:
        log.info("skipping a Cloudflare %s record Mailfleet cannot represent", rtype)
        return None


def _dump(model: object) -> dict[str, Any]:
    dump = getattr(model, "model_dump", None)
    return cast(dict[str, Any], dump(mode="json")) if callable(dump) else {}


class CloudflareProvider(DnsProvider):
    kind = "cloudflare"

    def __init__(self, api_token: str, base_url: str, account_id: str | None = None) -> None:
        self._client = make_client(api_token, base_url)
        self._account_id = account_id

    async def aclose(self) -> None:
        await self._client.close()

    async def verify_token(self) -> None:
        """Check the token with Cloudflare: user tokens verify at /user/tokens/verify,
        account-owned tokens only at their account's endpoint."""
        result: Any = None
        try:
            async with _Translate("verify the API token"):
                result = await self._client.user.tokens.verify()
        except DnsProviderRejected:
            if not self._account_id:
                raise
            async with _Translate("verify the API token"):
                result = await self._client.accounts.tokens.verify(account_id=self._account_id)
        if result is None or getattr(result, "status", "active") != "active":
            raise DnsProviderRejected("Cloudflare says the API token is not active")

    async def list_zones(self) -> list[CloudflareZone]:
        zones: list[CloudflareZone] = []
        page_number = 1
        async with _Translate("list zones"):
            while True:
                page = await self._client.zones.list(page=page_number, per_page=PAGE_SIZE)
                for zone in page.result:
                    zones.append(
                        CloudflareZone(
                            zone.id, zone.name, str(zone.status or ""), list(zone.name_servers)
                        )
                    )
                if len(page.result) < PAGE_SIZE:
                    return zones
                page_number += 1

    async def _find_zone(self, name: str) -> CloudflareZone | None:
        async with _Translate(f"look up zone {name}"):
            page = await self._client.zones.list(name=name)
        for zone in page.result:
            if zone.name.lower() == name:
                return CloudflareZone(
                    zone.id, zone.name, str(zone.status or ""), list(zone.name_servers)
                )
        return None

    async def open_zone(self, name: str) -> OpenedZone:
        zone = await self._find_zone(name)
        created = False
        if zone is None:
            if not self._account_id:
                raise DnsProviderRejected(
                    f"{name} is not a zone in this Cloudflare account; add it there, or save "
                    "the accountId with POST /v1/cloudflare so Mailfleet can create it"
                )
            async with _Translate(f"create zone {name}"):
                new = await self._client.zones.create(
                    account={"id": self._account_id}, name=name, type="full"
                )
            if new is None:
                raise DnsProviderError(f"Cloudflare did not return the new zone {name}")
            zone = CloudflareZone(new.id, new.name, str(new.status or ""), list(new.name_servers))
            created = True
        existing: list[ExistingRecord] = []
        page_number = 1
        async with _Translate(f"list the DNS records of {name}"):
            while True:
                page = await self._client.dns.records.list(
                    zone_id=zone.id, page=page_number, per_page=PAGE_SIZE
                )
                for item in page.result:
                    data = _dump(item)
                    record = record_from_cloudflare(name, data)
                    if record is not None:
                        existing.append(ExistingRecord(str(data.get("id")), record))
                if len(page.result) < PAGE_SIZE:
                    break
                page_number += 1
        return OpenedZone(zone.id, zone.name_servers, existing, created=created)

    async def apply(
        self,
        zone: ZoneRef,
        changes: Sequence[RecordChange],
        current: Sequence[tuple[str, RecordData]],
    ) -> dict[str, Applied]:
        zone_id = zone.zone_id
        if not zone_id:
            raise DnsProviderError(f"no Cloudflare zone id stored for {zone.name}")
        records = self._client.dns.records
        # The SDK overloads create/update per record type; bodies are built per type
        # by record_body, so the calls go through an untyped handle.
        untyped = cast(Any, records)
        if len(changes) == 1:
            change = changes[0]
            async with _Translate(f"change a DNS record of {zone.name}"):
                if change.after is None:
                    if change.provider_id:
                        await records.delete(change.provider_id, zone_id=zone_id)
                    return {}
                if change.before is not None and change.provider_id:
                    answer = await untyped.update(
                        change.provider_id, zone_id=zone_id, **record_body(change.after)
                    )
                else:
                    answer = await untyped.create(zone_id=zone_id, **record_body(change.after))
            return {change.key: self._applied(zone.name, answer)}

        deletes = [
            {"id": c.provider_id} for c in changes if c.after is None and c.provider_id is not None
        ]
        put_changes = [c for c in changes if c.after is not None and c.provider_id and c.before]
        post_changes = [
            c for c in changes if c.after is not None and not (c.provider_id and c.before)
        ]
        params: dict[str, Any] = {}
        if deletes:
            params["deletes"] = deletes
        if put_changes:
            params["puts"] = [
                {"id": c.provider_id, **record_body(cast(RecordData, c.after))} for c in put_changes
            ]
        if post_changes:
            params["posts"] = [record_body(cast(RecordData, c.after)) for c in post_changes]
        if not params:
            return {}
        async with _Translate(f"change the DNS records of {zone.name}"):
            answer = await untyped.batch(zone_id=zone_id, **params)
        applied: dict[str, Applied] = {}
        for kind, group in (("puts", put_changes), ("posts", post_changes)):
            answered = list(getattr(answer, kind, None) or [])
            for index, change in enumerate(group):
                applied[change.key] = (
                    self._applied(zone.name, answered[index])
                    if index < len(answered)
                    else Applied(change.provider_id, change.after)
                )
        return applied

    def _applied(self, zone_name: str, answer: object) -> Applied:
        data = _dump(answer)
        record_id = data.get("id")
        return Applied(
            str(record_id) if record_id else None, record_from_cloudflare(zone_name, data)
        )

    async def nameservers(self, zone: ZoneRef) -> list[str]:
        if not zone.zone_id:
            return []
        async with _Translate(f"read zone {zone.name}"):
            found = await self._client.zones.get(zone_id=zone.zone_id)
        return [ns.lower() for ns in found.name_servers] if found else []
