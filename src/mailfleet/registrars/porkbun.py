"""Porkbun's JSON API v3 (https://porkbun.com/api/json/v3/documentation).

Every call is a POST with the key pair in the JSON body (never in the URL, so no
error or log line can carry it). checkDomain answers availability and the
one-year price; create takes that price in pennies with agreeToTerms and refuses
a price that changed; listAll pages the account's domains by 1000; updateNs
replaces the nameservers. checkDomain is rate limited per account: its answer
says how many checks the window allows (`limits`), and a check past that is not
sent until the window ends.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from mailfleet.kit.tls import client_context
from mailfleet.registrars.base import (
    Availability,
    Contact,
    RegistrarError,
    RegistrarRateLimited,
    Registration,
    UnsupportedTld,
    to_cents,
)

DEFAULT_BASE_URL = "https://api.porkbun.com/api/json/v3"
_PAGE = 1000
_TLD_CACHE_SECONDS = 3600.0

# Per account (a digest of its key), across this process's requests: the time
# until which checkDomain must not be called, and the TLD list with its expiry.
_check_blocked_until: dict[str, float] = {}
_tld_cache: dict[str, tuple[float, set[str]]] = {}


class PorkbunRegistrar:
    name = "porkbun"
    currency = "USD"
    # create registers for the TLD's minimum term; the API takes no duration.
    max_years = 1

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float = 30.0,
        ca_file: str | Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._auth = {"apikey": api_key, "secretapikey": secret_key}
        self._account = hashlib.sha256(f"{base_url}\0{api_key}".encode()).hexdigest()
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            timeout=timeout,
            verify=client_context(ca_file),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(
        self, path: str, fields: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        try:
            response = await self._client.post(
                path, json={**self._auth, **(fields or {})}, headers=headers
            )
        except httpx.TimeoutException:
            raise RegistrarError("Porkbun did not answer in time", retryable=True) from None
        except httpx.HTTPError:
            raise RegistrarError("Porkbun could not be reached", retryable=True) from None
        if response.status_code == 429:
            retry_after = _seconds(response.headers.get("retry-after"), 10.0)
            raise RegistrarRateLimited("Porkbun's rate limit is used up", retry_after)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise RegistrarError(
                f"Porkbun answered HTTP {response.status_code} without JSON",
                retryable=response.status_code >= 500,
            )
        if data.get("status") != "SUCCESS":
            message = str(data.get("message") or f"HTTP {response.status_code}")[:300]
            raise RegistrarError(f"Porkbun: {message}", retryable=response.status_code >= 500)
        return data

    async def supported_tlds(self) -> set[str]:
        cached = _tld_cache.get(self._account)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        data = await self._post("/pricing/get")
        pricing = data.get("pricing")
        tlds = {str(tld).lower() for tld in pricing} if isinstance(pricing, dict) else set()
        _tld_cache[self._account] = (time.monotonic() + _TLD_CACHE_SECONDS, tlds)
        return tlds

    async def check(self, names: Sequence[str], years: int) -> list[Availability]:
        tlds = await self.supported_tlds()
        results = []
        for name in names:
            if name.rsplit(".", 1)[-1] not in tlds:
                raise UnsupportedTld(f"Porkbun does not sell .{name.rsplit('.', 1)[-1]} names")
            try:
                results.append(await self._check_one(name))
            except RegistrarRateLimited as exc:
                raise RegistrarRateLimited(exc.message, exc.retry_after, results) from None
        return results

    async def _check_one(self, name: str) -> Availability:
        blocked = _check_blocked_until.get(self._account, 0.0) - time.monotonic()
        if blocked > 0:
            raise RegistrarRateLimited("Porkbun's availability check limit is used up", blocked)
        data = await self._post(f"/domain/checkDomain/{name}")
        self._note_limits(data.get("limits"))
        answer = data.get("response")
        if not isinstance(answer, dict):
            raise RegistrarError("Porkbun's availability answer had no response object")
        return Availability(
            name=name,
            available=answer.get("avail") == "yes",
            premium=answer.get("premium") == "yes",
            cost=to_cents(answer.get("price")),
            currency=self.currency,
        )

    def _note_limits(self, limits: Any) -> None:
        if not isinstance(limits, dict):
            return
        try:
            used, limit = int(limits.get("used", 0)), int(limits.get("limit", 0))
            window = float(limits.get("TTL", 0))
        except (TypeError, ValueError):
            return
        if limit and used >= limit:
            _check_blocked_until[self._account] = time.monotonic() + window

    async def register(
        self,
        name: str,
        years: int,
        cost: int,
        *,
        premium: bool,
        contact: Contact | None,
        idempotency_key: str,
    ) -> Registration:
        # Porkbun registers with the account's default contact; the key makes a
        # retried create within its window answer the first one's result.
        data = await self._post(
            f"/domain/create/{name}",
            {"cost": cost, "agreeToTerms": "yes"},
            headers={"Idempotency-Key": idempotency_key},
        )
        order = data.get("orderId")
        return Registration(
            name=name,
            order_ref=str(order) if order is not None else None,
            charged=data.get("cost") if isinstance(data.get("cost"), int) else None,
        )

    async def owns(self, name: str) -> bool:
        start = 0
        while True:
            data = await self._post("/domain/listAll", {"start": str(start), "includeLabels": "no"})
            domains = data.get("domains") or []
            if any(
                isinstance(d, dict) and str(d.get("domain", "")).lower() == name for d in domains
            ):
                return True
            if len(domains) < _PAGE:
                return False
            start += _PAGE

    async def set_nameservers(self, name: str, nameservers: Sequence[str]) -> None:
        await self._post(f"/domain/updateNs/{name}", {"ns": list(nameservers)})


def _seconds(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value else default
    except ValueError:
        return default
