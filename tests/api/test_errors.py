from __future__ import annotations

import httpx

from mailfleet.deps import SessionDep
from tests.conftest import Account


async def test_unknown_route_is_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/does-not-exist")
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "error": {"code": "NOT_FOUND", "message": "No route GET /v1/does-not-exist"},
    }
    assert response.headers["x-request-id"]


async def test_malformed_json_is_400_located_by_line_and_column(
    client: httpx.AsyncClient, owner: Account
) -> None:
    response = await client.post(
        "/v1/workspaces",
        content=b'{\n  "name": "ok",\n  "description": }',
        headers={**owner.headers, "content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["message"] == (
        "The request body is not valid JSON: Expecting value at line 3, column 18"
    )
    # The body is the field: never a character offset standing in for a field name.
    assert error["details"] == [
        {
            "field": "body",
            "in": "body",
            "message": "Expecting value at line 3, column 18",
            "type": "json_invalid",
            "line": 3,
            "column": 18,
        }
    ]


async def test_validation_error_names_the_field(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.post("/v1/workspaces", json={"name": ""}, headers=owner.headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] == "name"


async def test_unknown_fields_are_rejected(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.post(
        "/v1/workspaces", json={"name": "ok", "colour": "red"}, headers=owner.headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "colour"
    listed = await client.get("/v1/workspaces", headers=owner.headers)
    assert listed.json()["pagination"]["total"] == 1, "a rejected request changes nothing"


async def test_bad_pagination_is_400(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.get("/v1/workspaces?limit=5000", headers=owner.headers)
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "limit"


async def test_request_id_is_echoed_when_sane(client: httpx.AsyncClient) -> None:
    kept = await client.get("/v1/health", headers={"x-request-id": "abc-123"})
    assert kept.headers["x-request-id"] == "abc-123"
    replaced = await client.get("/v1/health", headers={"x-request-id": "bad id\twith junk"})
    assert replaced.headers["x-request-id"] != "bad id\twith junk"


async def test_unexpected_error_is_json_500_without_traceback(client: httpx.AsyncClient) -> None:
    from fastapi import APIRouter

    router = APIRouter()

    @router.get("/v1/_boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    app = client._transport.app  # type: ignore[attr-defined]
    app.include_router(router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            response = await c.get("/v1/_boom")
    finally:
        app.router.routes[:] = [
            r for r in app.router.routes if getattr(r, "path", "") != "/v1/_boom"
        ]
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["code"] == "INTERNAL_ERROR"
    assert body["error"]["requestId"] == response.headers["x-request-id"]
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text


async def test_a_row_removed_by_a_concurrent_request_is_409_not_500(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """Found by fuzzing: POST /v1/warmup/disable while another request deleted one of
    the mailboxes it was writing settings for hit the real foreign key and answered
    500. The route below makes the same write the real database refuses."""
    from fastapi import APIRouter

    from mailfleet.kit.clock import utcnow
    from mailfleet.models import WarmupSettings

    router = APIRouter()

    @router.post("/v1/_write_for_a_deleted_mailbox")
    async def write_for_a_deleted_mailbox(session: SessionDep) -> None:
        now = utcnow()
        session.add(
            WarmupSettings(
                mailbox_id="0" * 24,  # deleted meanwhile: no such mailbox
                workspace_id=owner.workspace_id,
                enabled=False,
                start_per_day=5,
                ramp_up_per_day=1,
                daily_target=20,
                reply_rate=30,
                window_start="08:00",
                window_end="18:00",
                timezone="UTC",
                state="paused",
                created_at=now,
                updated_at=now,
            )
        )
        await session.flush()

    app = client._transport.app  # type: ignore[attr-defined]
    app.include_router(router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            response = await c.post("/v1/_write_for_a_deleted_mailbox")
    finally:
        app.router.routes[:] = [
            r
            for r in app.router.routes
            if getattr(r, "path", "") != "/v1/_write_for_a_deleted_mailbox"
        ]
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error"]["code"] == "CONFLICT"
    assert "retry" in body["error"]["message"]
    assert "INSERT" not in response.text
