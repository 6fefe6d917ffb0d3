"""POST /v1/users/me/password: the current password proves it is you, the new one
must be long enough, wrong guesses are throttled as logins are, and afterwards
only the new password signs in, and no login token issued before."""

from __future__ import annotations

from datetime import timedelta

import httpx
import jwt

from mailfleet.accounts import security
from mailfleet.config import Settings
from mailfleet.kit.clock import utcnow
from tests.conftest import Account

URL = "/v1/users/me/password"


async def login(client: httpx.AsyncClient, email: str, password: str) -> int:
    response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    return response.status_code


async def test_change_the_password(client: httpx.AsyncClient, owner: Account) -> None:
    changed = await client.post(
        URL,
        json={"currentPassword": owner.password, "newPassword": "a-new-passphrase"},
        headers=owner.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["success"] is True
    assert "a-new-passphrase" not in changed.text
    assert await login(client, owner.email, owner.password) == 401
    assert await login(client, owner.email, "a-new-passphrase") == 200
    # The key it was changed with still works: keys are revoked on their own.
    assert (await client.get("/v1/users/me", headers=owner.headers)).status_code == 200


async def token(client: httpx.AsyncClient, email: str, password: str) -> dict[str, str]:
    response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return {"authorization": f"Bearer {response.json()['data']['token']}"}


async def me(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    return (await client.get("/v1/users/me", headers=headers)).status_code


async def test_a_change_ends_the_login_tokens_issued_before_it(
    client: httpx.AsyncClient, owner: Account, settings: Settings
) -> None:
    asking = await token(client, owner.email, owner.password)
    other = await token(client, owner.email, owner.password)
    # One signed as before token epochs (no "ep" claim): epoch 0, like every user's start.
    now = utcnow()
    claims = {"sub": owner.user_id, "iat": now, "exp": now + timedelta(hours=1)}
    legacy_token = jwt.encode(
        {**claims, "aud": security.JWT_AUDIENCE},
        settings.jwt_signing_secret(),
        algorithm=security.JWT_ALGORITHM,
    )
    legacy = {"authorization": f"Bearer {legacy_token}"}
    assert [await me(client, h) for h in (asking, other, legacy)] == [200, 200, 200]

    changed = await client.post(
        URL,
        json={"currentPassword": owner.password, "newPassword": "a-new-passphrase"},
        headers=asking,
    )
    assert changed.status_code == 200, changed.text

    for stale in (asking, other, legacy):
        refused = await client.get("/v1/users/me", headers=stale)
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["message"] == "Invalid or expired token"
    fresh = await token(client, owner.email, "a-new-passphrase")
    assert await me(client, fresh) == 200
    assert await me(client, owner.headers) == 200  # API keys stay

    # And again: the token from after the first change ends with the second.
    again = await client.post(
        URL,
        json={"currentPassword": "a-new-passphrase", "newPassword": "a-third-passphrase"},
        headers=owner.headers,
    )
    assert again.status_code == 200, again.text
    assert await me(client, fresh) == 401
    assert await me(client, await token(client, owner.email, "a-third-passphrase")) == 200


async def test_refusals_name_the_problem(client: httpx.AsyncClient, owner: Account) -> None:
    short = await client.post(
        URL, json={"currentPassword": owner.password, "newPassword": "short"}, headers=owner.headers
    )
    assert short.status_code == 400, short.text
    error = short.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [detail["field"] for detail in error["details"]] == ["newPassword"]

    missing = await client.post(URL, json={"newPassword": "long-enough-1"}, headers=owner.headers)
    assert missing.status_code == 400
    assert missing.json()["error"]["details"][0]["field"] == "currentPassword"

    wrong = await client.post(
        URL,
        json={"currentPassword": "not-the-password", "newPassword": "long-enough-1"},
        headers=owner.headers,
    )
    assert wrong.status_code == 403, wrong.text
    assert wrong.json()["error"]["code"] == "FORBIDDEN"
    assert "current password" in wrong.json()["error"]["message"]

    nobody = await client.post(
        URL, json={"currentPassword": owner.password, "newPassword": "long-enough-1"}
    )
    assert nobody.status_code == 401

    created = await client.post(
        "/v1/api-keys", json={"scope": "workspace", "name": "ws"}, headers=owner.headers
    )
    ws_headers = {"x-api-key": created.json()["data"]["key"]}
    by_workspace_key = await client.post(
        URL,
        json={"currentPassword": owner.password, "newPassword": "long-enough-1"},
        headers=ws_headers,
    )
    assert by_workspace_key.status_code == 403
    # Nothing of it changed the password.
    assert await login(client, owner.email, owner.password) == 200


async def test_wrong_current_passwords_are_throttled_as_logins(
    client: httpx.AsyncClient, owner: Account, settings: Settings
) -> None:
    limit = settings.login_max_failures_per_account
    settings.login_max_failures_per_account = 3
    try:
        wrong = {"currentPassword": "guess", "newPassword": "long-enough-1"}
        for _ in range(3):
            answer = await client.post(URL, json=wrong, headers=owner.headers)
            assert answer.status_code == 403
        right = {"currentPassword": owner.password, "newPassword": "long-enough-1"}
        throttled = await client.post(URL, json=right, headers=owner.headers)
        assert throttled.status_code == 429, throttled.text
        assert throttled.json()["error"]["code"] == "RATE_LIMITED"
        # The same count as the login form's: it waits too.
        assert await login(client, owner.email, owner.password) == 429
    finally:
        settings.login_max_failures_per_account = limit
    assert await login(client, owner.email, "long-enough-1") == 401
