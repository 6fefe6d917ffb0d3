"""GET /v1/domains/available against the Porkbun and Namecheap fakes: exact requests,
prices with the markup, suggestions, the registrar's rate limit respected."""

from __future__ import annotations

import httpx

from mailfleet.config import Settings
from tests.conftest import Account
from tests.registrars.fakes import (
    NAMECHEAP_IP,
    NAMECHEAP_KEY,
    NAMECHEAP_USER,
    PORKBUN_KEY,
    PORKBUN_SECRET,
    FakeNamecheap,
    FakePorkbun,
)

AUTH = {"apikey": PORKBUN_KEY, "secretapikey": PORKBUN_SECRET}


async def test_search_by_brand_with_markup_and_suggestions(
    client: httpx.AsyncClient, porkbun: FakePorkbun, owner: Account, settings: Settings
) -> None:
    settings.domain_markup_percent = 10.0
    porkbun.set_name("brand.io", avail="no")
    porkbun.set_name("getbrand.com", price="2500.00", premium="yes")
    response = await client.get(
        "/v1/domains/available", params={"query": "Brand", "tlds": "com,io"}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["query"] == "brand"
    assert data["results"] == [
        {
            "domain": "brand.com",
            "unicodeName": "brand.com",
            "available": True,
            "premium": False,
            # 9.68 USD plus 10 %, rounded up to the cent.
            "price": {"amount": 1065, "currency": "USD", "years": 1},
            "reason": None,
            "retryAfter": None,
        },
        {
            "domain": "brand.io",
            "unicodeName": "brand.io",
            "available": False,
            "premium": False,
            "price": {"amount": 3094, "currency": "USD", "years": 1},
            "reason": None,
            "retryAfter": None,
        },
    ]
    suggested = {s["domain"]: s for s in data["suggestions"]}
    assert set(suggested) == {
        "getbrand.com",
        "trybrand.com",
        "mailbrand.com",
        "usebrand.com",
        "brandhq.com",
        "brandmail.com",
        "brandteam.com",
    }
    assert suggested["getbrand.com"]["premium"] is True
    assert suggested["getbrand.com"]["price"]["amount"] == 275000
    # Exactly what Porkbun's documents ask: POSTs with the key pair in the JSON body.
    [pricing] = porkbun.posts("/pricing/get")
    assert pricing.method == "POST"
    checks = porkbun.posts("/domain/checkDomain/")
    assert [c.path for c in checks[:2]] == [
        "/domain/checkDomain/brand.com",
        "/domain/checkDomain/brand.io",
    ]
    assert all(c.body == AUTH and c.method == "POST" for c in checks)
    assert all("apikey" not in c.path and PORKBUN_KEY not in c.path for c in porkbun.requests)
    assert PORKBUN_SECRET not in response.text

    # Asked again within the cache's life: no second check of the same names.
    again = await client.get(
        "/v1/domains/available", params={"query": "brand", "tlds": "com,io"}, headers=owner.headers
    )
    assert again.json()["data"]["results"] == data["results"]
    assert len(porkbun.posts("/domain/checkDomain/")) == len(checks)


async def test_rate_limit_is_respected_and_names_are_validated(
    client: httpx.AsyncClient, porkbun: FakePorkbun, owner: Account
) -> None:
    porkbun.check_limit = 2
    response = await client.get(
        "/v1/domains/available",
        params={"domains": "one.com,two.com,three.com,brand.xyz"},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    results = {r["domain"]: r for r in response.json()["data"]["results"]}
    assert results["one.com"]["available"] is True
    assert results["two.com"]["available"] is True
    # The window's two checks are used: the third is not sent, and says why.
    assert results["three.com"]["available"] is None
    assert results["three.com"]["reason"] == "rate_limited"
    assert results["three.com"]["retryAfter"] > 0
    assert results["brand.xyz"] == {
        "domain": "brand.xyz",
        "unicodeName": "brand.xyz",
        "available": False,
        "premium": False,
        "price": None,
        "reason": "porkbun does not sell .xyz names",
        "retryAfter": None,
    }
    assert len(porkbun.posts("/domain/checkDomain/")) == 2

    for params, field in (
        ({"domains": "not a name"}, "domains.0"),
        ({"domains": "ok.com,brand.test"}, "domains.1"),
        ({"domains": "example.com"}, "domains.0"),
        ({"domains": "mail.brand.com"}, "domains.0"),
        ({"query": "brand", "tlds": ",".join(["com"] * 11)}, "tlds"),
        ({}, "query"),
    ):
        bad = await client.get("/v1/domains/available", params=params, headers=owner.headers)
        assert bad.status_code == 400, (params, bad.text)
        assert bad.json()["error"]["details"][0]["field"] == field, params


async def test_not_configured_is_a_409(
    client: httpx.AsyncClient, registrar_settings: Settings, owner: Account
) -> None:
    registrar_settings.registrar = None
    response = await client.get(
        "/v1/domains/available", params={"query": "brand"}, headers=owner.headers
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "NOT_CONFIGURED"
    assert "MAILFLEET_REGISTRAR" in response.json()["error"]["message"]


async def test_namecheap_check_and_pricing_requests(
    client: httpx.AsyncClient, namecheap: FakeNamecheap, owner: Account
) -> None:
    namecheap.set_name("brand.io", premium=True, premium_price="1300.0000")
    namecheap.set_name("taken.com", available=False)
    response = await client.get(
        "/v1/domains/available",
        params={"domains": "brand.com,brand.io,taken.com", "years": 2},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    results = {r["domain"]: r for r in response.json()["data"]["results"]}
    assert results["brand.com"]["price"] == {"amount": 2056, "currency": "USD", "years": 2}
    assert results["brand.io"]["premium"] is True
    assert results["brand.io"]["price"]["amount"] == 260000
    assert results["taken.com"]["available"] is False
    globals_ = {
        "ApiUser": NAMECHEAP_USER,
        "ApiKey": NAMECHEAP_KEY,
        "UserName": NAMECHEAP_USER,
        "ClientIp": NAMECHEAP_IP,
    }
    [pricing] = namecheap.commands("namecheap.users.getPricing")
    assert pricing.method == "POST"
    assert pricing.path == "/xml.response"
    assert pricing.body == {
        **globals_,
        "Command": "namecheap.users.getPricing",
        "ProductType": "DOMAIN",
        "ActionName": "REGISTER",
    }
    [check] = namecheap.commands("namecheap.domains.check")
    assert check.body == {
        **globals_,
        "Command": "namecheap.domains.check",
        "DomainList": "brand.com,brand.io,taken.com",
    }
    assert NAMECHEAP_KEY not in response.text
