from __future__ import annotations

import contextvars

import httpx
import pytest

from mailfleet.db import Database
from tests.conftest import Account, make_account


async def test_health(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/health")
    assert response.status_code == 200
    assert response.json()["data"]["status"] == "ok"
    assert response.headers["x-request-id"]


async def test_user_key_works_in_both_headers(client: httpx.AsyncClient, owner: Account) -> None:
    for headers in ({"x-api-key": owner.api_key}, {"Authorization": f"Bearer {owner.api_key}"}):
        response = await client.get("/v1/users/me", headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["success"] is True
        assert body["data"]["email"] == owner.email
        assert body["data"]["defaultWorkspaceId"] == owner.workspace_id
        assert "passwordHash" not in body["data"]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": "mf_user_not-a-real-key"},
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ],
)
async def test_bad_credentials_are_401(
    client: httpx.AsyncClient, owner: Account, headers: dict[str, str]
) -> None:
    response = await client.get("/v1/users/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == "UNAUTHORIZED"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_login_returns_a_working_jwt(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.post(
        "/v1/auth/login", json={"email": owner.email.upper(), "password": owner.password}
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["tokenType"] == "Bearer"
    assert data["expiresAt"].endswith("Z")
    me = await client.get("/v1/users/me", headers={"Authorization": f"Bearer {data['token']}"})
    assert me.status_code == 200
    assert me.json()["data"]["id"] == owner.user_id


async def test_login_with_wrong_password_is_401(client: httpx.AsyncClient, owner: Account) -> None:
    for email, password in ((owner.email, "wrong-password"), ("nobody@example.test", "x")):
        response = await client.post("/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code == 401
        assert response.json()["error"]["message"] == "Invalid email or password"


async def test_api_key_lifecycle(client: httpx.AsyncClient, owner: Account) -> None:
    created = await client.post("/v1/api-keys", json={"name": "ci"}, headers=owner.headers)
    assert created.status_code == 201, created.text
    key = created.json()["data"]
    assert key["key"].startswith("mf_user_")
    assert key["displayPrefix"] == key["key"][: len(key["displayPrefix"])]

    used = await client.get("/v1/users/me", headers={"x-api-key": key["key"]})
    assert used.status_code == 200

    listed = await client.get("/v1/api-keys", headers=owner.headers)
    assert listed.status_code == 200
    rows = {row["id"]: row for row in listed.json()["data"]}
    assert key["id"] in rows
    assert all("key" not in row for row in rows.values()), "a listing never shows a secret"
    assert key["key"] not in listed.text
    assert rows[key["id"]]["lastUsedAt"] is not None

    revoked = await client.delete(f"/v1/api-keys/{key['id']}", headers=owner.headers)
    assert revoked.status_code == 200
    assert revoked.json()["data"]["revokedAt"] is not None
    after = await client.get("/v1/users/me", headers={"x-api-key": key["key"]})
    assert after.status_code == 401
    assert after.json()["error"]["code"] == "UNAUTHORIZED"


async def test_a_read_request_writes_nothing_and_its_key_use_is_flushed_later(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    """A GET stays a reader (on SQLite a writer would queue behind a bulk job's
    recording): the key's use is noted in memory, and written by the flush."""
    from sqlalchemy import event, select

    from mailfleet.accounts import usage
    from mailfleet.models import ApiKey

    in_request: contextvars.ContextVar[bool] = contextvars.ContextVar("in_request", default=False)
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        # Only this request's statements: the flush poller shares the engine.
        if in_request.get():
            statements.append(statement)

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", seen)
    token = in_request.set(True)
    try:
        response = await client.get("/v1/users/me", headers=owner.headers)
    finally:
        in_request.reset(token)
        event.remove(engine, "before_cursor_execute", seen)
    assert response.status_code == 200, response.text
    assert any("api_keys" in statement for statement in statements), statements
    writes = [s for s in statements if s.split(None, 1)[0].upper() in WRITE_VERBS]
    assert writes == []

    listed = await client.get("/v1/api-keys", headers=owner.headers)
    assert listed.json()["data"][0]["lastUsedAt"] is not None

    await usage.flush(database)
    async with database.transaction() as session:
        stamped = await session.scalar(select(ApiKey.last_used_at))
    assert stamped is not None


WRITE_VERBS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE"})


async def test_a_deactivated_users_key_is_refused(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    from sqlalchemy import update

    from mailfleet.models import User

    assert (await client.get("/v1/users/me", headers=owner.headers)).status_code == 200
    async with database.transaction() as session:
        await session.execute(update(User).where(User.id == owner.user_id).values(is_active=False))
    refused = await client.get("/v1/users/me", headers=owner.headers)
    assert refused.status_code == 401
    assert refused.json()["error"]["message"] == "Invalid or revoked API key"


async def test_only_a_digest_of_the_key_is_stored(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    from sqlalchemy import select

    from mailfleet.models import ApiKey

    async with database.transaction() as session:
        stored = list(await session.scalars(select(ApiKey)))
    assert stored
    for key in stored:
        assert owner.api_key not in (key.digest, key.display_prefix, key.name)
        assert len(key.digest) == 64


async def test_workspace_key_is_bound_to_its_workspace(
    client: httpx.AsyncClient, owner: Account
) -> None:
    other = await client.post("/v1/workspaces", json={"name": "Other"}, headers=owner.headers)
    other_id = other.json()["data"]["id"]
    created = await client.post(
        "/v1/api-keys", json={"scope": "workspace", "name": "ws"}, headers=owner.headers
    )
    assert created.status_code == 201, created.text
    ws_key = created.json()["data"]
    assert ws_key["key"].startswith("mf_ws_")
    assert ws_key["workspaceId"] == owner.workspace_id
    headers = {"x-api-key": ws_key["key"]}

    listed = await client.get("/v1/workspaces", headers=headers)
    assert [w["id"] for w in listed.json()["data"]] == [owner.workspace_id]

    for attempt in (
        client.put(f"/v1/workspaces/{other_id}", json={"name": "hijack"}, headers=headers),
        client.get(f"/v1/workspaces/{other_id}/members", headers=headers),
        client.get("/v1/api-keys", headers=headers),
        client.post("/v1/workspaces", json={"name": "new"}, headers=headers),
    ):
        response = await attempt
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "FORBIDDEN"


async def test_superuser_creates_users(client: httpx.AsyncClient, database: Database) -> None:
    from mailfleet.accounts import service as accounts

    async with database.transaction() as session:
        boot = await accounts.bootstrap(session, email="root@example.test", password="pw-123456")
    headers = {"x-api-key": boot.api_key}
    created = await client.post(
        "/v1/users", json={"email": "New@Example.test", "password": "pw-123456"}, headers=headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["data"]["email"] == "new@example.test"
    duplicate = await client.post(
        "/v1/users", json={"email": "new@example.test", "password": "pw-123456"}, headers=headers
    )
    assert duplicate.status_code == 409

    plain = await make_account(database, "plain@example.test")
    refused = await client.post(
        "/v1/users",
        json={"email": "x@example.test", "password": "pw-123456"},
        headers=plain.headers,
    )
    assert refused.status_code == 403
