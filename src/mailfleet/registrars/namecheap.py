"""Namecheap's XML API (https://www.namecheap.com/support/api/intro/).

Every command is an HTTP POST of form fields to one URL (api.namecheap.com, or
api.sandbox.namecheap.com for the sandbox): the global ApiUser, ApiKey,
UserName, ClientIp (an address on the account's allow-list) and Command, then
the command's own. POST keeps the key out of URLs, so out of every error and
log line. Answers are XML (`ApiResponse Status="OK"|"ERROR"`), parsed with
defusedxml.

domains.check answers availability and, for premium names, their price; the
regular price of a TLD comes from users.getPricing (cached, as Namecheap asks).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import httpx
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as parse_xml

from mailfleet.kit.names import registrable_domain
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

DEFAULT_BASE_URL = "https://api.namecheap.com/xml.response"
SANDBOX_BASE_URL = "https://api.sandbox.namecheap.com/xml.response"
_CHECK_BATCH = 50
_PRICING_CACHE_SECONDS = 3600.0
# Prices per (account, tld) and term in years, with the cache's expiry.
_pricing_cache: dict[str, tuple[float, dict[str, dict[int, int]]]] = {}


class NamecheapRegistrar:
    name = "namecheap"
    currency = "USD"
    max_years = 10

    def __init__(
        self,
        api_user: str,
        api_key: str,
        client_ip: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        username: str | None = None,
        timeout: float = 30.0,
        ca_file: str | Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._globals = {
            "ApiUser": api_user,
            "ApiKey": api_key,
            "UserName": username or api_user,
            "ClientIp": client_ip,
        }
        self._account = f"{base_url}\0{api_user}"
        self._url = base_url
        self._client = httpx.AsyncClient(
            timeout=timeout, verify=client_context(ca_file), transport=transport
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _command(self, command: str, **fields: str) -> Element:
        """The CommandResponse element of a successful answer."""
        try:
            response = await self._client.post(
                self._url, data={**self._globals, "Command": command, **fields}
            )
        except httpx.TimeoutException:
            raise RegistrarError("Namecheap did not answer in time", retryable=True) from None
        except httpx.HTTPError:
            raise RegistrarError("Namecheap could not be reached", retryable=True) from None
        if response.status_code == 429:
            raise RegistrarRateLimited("Namecheap's rate limit is used up", 60.0)
        try:
            root = parse_xml(response.content)
        except (ParseError, DefusedXmlException):
            raise RegistrarError(
                f"Namecheap answered HTTP {response.status_code} without readable XML",
                retryable=response.status_code >= 500,
            ) from None
        if root.get("Status") != "OK":
            errors = [(e.get("Number") or "", (e.text or "").strip()) for e in _all(root, "Error")]
            number, text = errors[0] if errors else ("", f"HTTP {response.status_code}")
            message = f"Namecheap: {text[:300]}" + (f" ({number})" if number else "")
            if "too many requests" in text.lower():
                raise RegistrarRateLimited(message, 60.0)
            raise RegistrarError(message, retryable=response.status_code >= 500)
        found = _first(root, "CommandResponse")
        if found is None:
            raise RegistrarError("Namecheap's answer had no CommandResponse")
        return found

    async def _pricing(self) -> dict[str, dict[int, int]]:
        cached = _pricing_cache.get(self._account)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        answer = await self._command(
            "namecheap.users.getPricing", ProductType="DOMAIN", ActionName="REGISTER"
        )
        prices: dict[str, dict[int, int]] = {}
        for category in _all(answer, "ProductCategory"):
            if (category.get("Name") or "").upper() != "REGISTER":
                continue
            for product in _all(category, "Product"):
                tld = (product.get("Name") or "").lower()
                terms = prices.setdefault(tld, {})
                for price in _all(product, "Price"):
                    amount = to_cents(price.get("YourPrice") or price.get("Price"))
                    duration = price.get("Duration") or ""
                    if amount is not None and duration.isdigit() and _in_years(price):
                        terms[int(duration)] = amount
        _pricing_cache[self._account] = (time.monotonic() + _PRICING_CACHE_SECONDS, prices)
        return prices

    async def supported_tlds(self) -> set[str]:
        return {tld for tld, terms in (await self._pricing()).items() if terms}

    async def check(self, names: Sequence[str], years: int) -> list[Availability]:
        prices = await self._pricing()
        for name in names:
            tld = _tld(name)
            if not prices.get(tld):
                raise UnsupportedTld(f"Namecheap does not sell .{tld} names")
        found: dict[str, Element] = {}
        for start in range(0, len(names), _CHECK_BATCH):
            batch = names[start : start + _CHECK_BATCH]
            answer = await self._command("namecheap.domains.check", DomainList=",".join(batch))
            for result in _all(answer, "DomainCheckResult"):
                found[(result.get("Domain") or "").lower()] = result
        results = []
        for name in names:
            checked = found.get(name)
            if checked is None:
                raise RegistrarError(f"Namecheap's availability answer left out {name}")
            result = checked
            premium = _true(result.get("IsPremiumName"))
            if premium:
                # A premium price is per year, like the regular ones.
                yearly = to_cents(result.get("PremiumRegistrationPrice"))
                cost = yearly * years if yearly is not None else None
            else:
                cost = prices[_tld(name)].get(years)
            description = (result.get("Description") or "").strip()
            results.append(
                Availability(
                    name=name,
                    available=_true(result.get("Available")),
                    premium=premium,
                    cost=cost,
                    currency=self.currency,
                    reason=description or None,
                )
            )
        return results

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
        if contact is None:
            raise RegistrarError("Namecheap needs a registrant contact to register a name")
        fields: dict[str, str] = {"DomainName": name, "Years": str(years)}
        for role in ("Registrant", "Tech", "Admin", "AuxBilling"):
            fields.update(_contact_fields(role, contact))
        fields["AddFreeWhoisguard"] = "yes"
        fields["WGEnabled"] = "yes"
        if premium:
            # Namecheap charges a premium name only at the price the caller states.
            fields["IsPremiumDomain"] = "true"
            fields["PremiumPrice"] = f"{cost // years // 100}.{cost // years % 100:02d}"
        answer = await self._command("namecheap.domains.create", **fields)
        result = _first(answer, "DomainCreateResult")
        if result is None or not _true(result.get("Registered")):
            raise RegistrarError(f"Namecheap did not register {name}")
        return Registration(
            name=name,
            order_ref=result.get("OrderID"),
            charged=to_cents(result.get("ChargedAmount")),
        )

    async def owns(self, name: str) -> bool:
        answer = await self._command(
            "namecheap.domains.getList", SearchTerm=name, PageSize="100", Page="1"
        )
        return any((d.get("Name") or "").lower() == name for d in _all(answer, "Domain"))

    async def set_nameservers(self, name: str, nameservers: Sequence[str]) -> None:
        sld, tld = _split(name)
        answer = await self._command(
            "namecheap.domains.dns.setCustom", SLD=sld, TLD=tld, Nameservers=",".join(nameservers)
        )
        result = _first(answer, "DomainDNSSetCustomResult")
        if result is None or not _true(result.get("Updated")):
            raise RegistrarError(f"Namecheap did not update the nameservers of {name}")


def _contact_fields(role: str, contact: Contact) -> dict[str, str]:
    fields = {
        "FirstName": contact.first_name,
        "LastName": contact.last_name,
        "Address1": contact.address1,
        "City": contact.city,
        "StateProvince": contact.state_province,
        "PostalCode": contact.postal_code,
        "Country": contact.country,
        "Phone": contact.phone,
        "EmailAddress": contact.email,
    }
    if contact.organization:
        fields["OrganizationName"] = contact.organization
    if contact.address2:
        fields["Address2"] = contact.address2
    return {f"{role}{key}": value for key, value in fields.items()}


def _local(tag: Any) -> str:
    text = str(tag)
    return text.rsplit("}", 1)[-1]


def _all(root: Element, tag: str) -> list[Element]:
    return [element for element in root.iter() if _local(element.tag) == tag]


def _first(root: Element, tag: str) -> Element | None:
    found = _all(root, tag)
    return found[0] if found else None


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def _in_years(price: Element) -> bool:
    return (price.get("DurationType") or "YEAR").upper() == "YEAR"


def _split(name: str) -> tuple[str, str]:
    """("brand", "co.uk") for brand.co.uk: Namecheap takes the SLD and TLD apart."""
    registrable = registrable_domain(name) or name
    sld, _, tld = registrable.partition(".")
    return sld, tld


def _tld(name: str) -> str:
    return _split(name)[1]
