"""Input that fuzzing turned into 500s: each is a 400 naming the field."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import Account

HUGE = 10**20  # past SQLite's 64-bit integers


def paginated_routes(app: FastAPI) -> list[str]:
    routes = []
    for path, operations in app.openapi()["paths"].items():
        get = operations.get("get", {})
        if any(p["name"] == "skip" for p in get.get("parameters", [])):
            routes.append(path.replace("{", "").replace("}", ""))
    return routes


def field_of(response: httpx.Response) -> list[str]:
    """The fields a 400 names, in Mailfleet's envelope or a vendor dialect's."""
    body = response.json()
    error = body.get("error")
    if isinstance(error, dict):
        details = error.get("details")
    elif "payload" in body:  # Saleshandy's dialect
        details = body["payload"].get("errors")
    else:
        details = body.get("details")
    return [d.get("field") for d in details or []]


async def test_every_paginated_list_refuses_a_skip_past_64_bits(
    app: FastAPI, client: httpx.AsyncClient, owner: Account
) -> None:
    routes = paginated_routes(app)
    assert "/v1/mailboxes" in routes
    assert "/api/v1/inboxes" in routes  # the DeepLead dialect's own pagination
    for route in routes:
        response = await client.get(route, params={"skip": HUGE}, headers=owner.headers)
        assert response.status_code == 400, (route, response.text)
        assert field_of(response) == ["skip"], (route, response.text)


async def test_the_largest_skip_allowed_still_answers(
    client: httpx.AsyncClient, owner: Account
) -> None:
    for route in ("/v1/mailboxes", "/api/v1/inboxes"):
        response = await client.get(route, params={"skip": 2**31 - 1}, headers=owner.headers)
        assert response.status_code == 200, (route, response.text)


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/v1/cloudflare", {"apiToken": "tøken-" + "x" * 30}, "apiToken"),
        (
            "/v1/exports/accounts",
            {"platform": "instantly", "apiKey": "clé-0123456789", "baseUrl": "https://x.test"},
            "apiKey",
        ),
    ],
)
async def test_a_non_ascii_token_is_refused_before_it_reaches_a_header(
    client: httpx.AsyncClient, owner: Account, route: str, body: dict[str, Any], field: str
) -> None:
    response = await client.post(route, json=body, headers=owner.headers)
    assert response.status_code == 400, response.text
    assert field_of(response) == [field]
    secret = body.get("apiToken") or body["apiKey"]
    assert secret not in response.text


BULK_ROUTES = ["/v1/mailboxes/bulk", "/v1/email-accounts/connect"]


@pytest.mark.parametrize("route", BULK_ROUTES)
@pytest.mark.parametrize("depth", [40, 100_000])
async def test_deeply_nested_json_is_refused(
    client: httpx.AsyncClient, owner: Account, route: str, depth: int
) -> None:
    body = "[" * depth + "]" * depth
    response = await client.post(
        route, content=body, headers={**owner.headers, "content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert field_of(response) == ["body"]


@pytest.mark.parametrize(
    ("route", "row", "field"),
    [
        (
            "/v1/mailboxes/bulk",
            {"email": "box\\ud800@example.test", "smtp": {"host": "smtp.example.test"}},
            "0.email",
        ),
        (
            "/v1/email-accounts/connect",
            {"smtpEmailAddress": "box\\udfff@example.test", "smtpPassword": "x"},
            "0.smtpEmailAddress",
        ),
    ],
)
async def test_a_lone_surrogate_is_refused(
    client: httpx.AsyncClient, owner: Account, route: str, row: dict[str, Any], field: str
) -> None:
    # json.dumps would escape the backslash; the escape must reach the server as is.
    body = "[" + json.dumps(row).replace("\\\\u", "\\u") + "]"
    assert "\\ud" in body
    response = await client.post(
        route, content=body, headers={**owner.headers, "content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert field_of(response) == [field]
