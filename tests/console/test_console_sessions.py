"""Console sessions live on the server: sign-out, expiry and member removal end them,
whatever copies of the cookie exist."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select, update

from mailfleet.config import Settings
from mailfleet.console.session import SESSION_COOKIE, SESSION_SALT, session_digest
from mailfleet.db import Database
from mailfleet.kit.clock import utcnow
from mailfleet.models import ConsoleSession
from tests.conftest import Account, make_account
from tests.console.test_console_http import change_password, sign_in


@asynccontextmanager
async def copy_of(app: FastAPI, client: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """Another browser holding a copy of the client's session cookie."""
    cookie = client.cookies[SESSION_COOKIE]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://mailfleet.test", cookies={SESSION_COOKIE: cookie}
    ) as other:
        yield other


async def _rows(database: Database) -> list[ConsoleSession]:
    async with database.transaction() as session:
        return list(await session.scalars(select(ConsoleSession)))


async def test_a_copied_cookie_is_refused_after_sign_out(
    app: FastAPI, client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings
) -> None:
    token = await sign_in(client, owner)
    async with copy_of(app, client) as thief:
        assert (await thief.get("/")).status_code == 200

        signed_out = await client.post("/logout", data={"csrf_token": token})
        assert signed_out.status_code == 303

        refused = await thief.get("/")
        assert refused.status_code == 303
        assert refused.headers["location"] == "/login"
        # Nor does it take a write, token and all.
        write = await thief.post("/settings/api-keys", data={"csrf_token": token, "name": "x"})
        assert write.status_code == 303
        assert write.headers["location"].startswith("/login")
    assert await _rows(database) == []


async def test_the_server_keeps_only_a_digest_of_the_cookie(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings
) -> None:
    await sign_in(client, owner)
    signer = URLSafeTimedSerializer(settings.jwt_signing_secret(), salt=SESSION_SALT)
    raw = signer.loads(client.cookies[SESSION_COOKIE])
    [row] = await _rows(database)
    assert row.user_id == owner.user_id
    assert row.id == session_digest(raw) != raw
    assert raw not in (row.id, row.csrf)


async def test_an_idle_session_is_refused(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings
) -> None:
    await sign_in(client, owner)
    idle = timedelta(seconds=settings.console_idle_seconds)
    async with database.transaction() as session:
        await session.execute(
            update(ConsoleSession).values(last_seen_at=utcnow() - idle + timedelta(minutes=5))
        )
    # Used within the idle limit: still signed in, and the use counts as activity.
    assert (await client.get("/")).status_code == 200
    [row] = await _rows(database)
    assert utcnow() - row.last_seen_at < timedelta(minutes=1)

    async with database.transaction() as session:
        await session.execute(
            update(ConsoleSession).values(last_seen_at=utcnow() - idle - timedelta(seconds=1))
        )
    refused = await client.get("/mailboxes")
    assert refused.status_code == 303
    assert refused.headers["location"] == "/login?next=%2Fmailboxes"


async def test_a_session_past_its_lifetime_is_refused_however_busy(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    await sign_in(client, owner)
    async with database.transaction() as session:
        await session.execute(
            update(ConsoleSession).values(
                last_seen_at=utcnow(), expires_at=utcnow() - timedelta(seconds=1)
            )
        )
    assert (await client.get("/")).status_code == 303


async def test_signing_in_clears_expired_sessions(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    await sign_in(client, owner)
    async with database.transaction() as session:
        await session.execute(update(ConsoleSession).values(expires_at=utcnow()))
    client.cookies.clear()
    await sign_in(client, owner)
    [row] = await _rows(database)
    assert row.expires_at > utcnow()


async def test_a_removed_member_is_signed_out(
    app: FastAPI, client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    member = await make_account(database, "member@example.test")
    added = await client.post(
        f"/v1/workspaces/{owner.workspace_id}/members",
        json={"email": member.email, "role": "member"},
        headers=owner.headers,
    )
    assert added.status_code == 201
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailfleet.test") as browser:
        token = await sign_in(browser, member)
        switched = await browser.post(
            "/workspace", data={"csrf_token": token, "workspace_id": owner.workspace_id}
        )
        assert switched.status_code == 303
        page = await browser.get("/")
        assert "data-role>member<" in page.text
        await sign_in(client, owner)

        removed = await client.delete(
            f"/v1/workspaces/{owner.workspace_id}/members/{member.user_id}",
            headers=owner.headers,
        )
        assert removed.status_code == 200

        assert (await browser.get("/")).status_code == 303
    # The owner's own session is untouched.
    assert (await client.get("/")).status_code == 200


async def test_changing_the_password_ends_the_other_sessions(
    app: FastAPI, client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    token = await sign_in(client, owner)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailfleet.test") as laptop:
        await sign_in(laptop, owner)
        async with copy_of(app, laptop) as thief:
            assert (await thief.get("/")).status_code == 200
            assert len(await _rows(database)) == 2

            wrong = await change_password(client, token, "not-it", "a-new-passphrase")
            assert wrong.status_code == 303
            page = await client.get("/settings")
            assert "The current password is wrong" in page.text
            short = await change_password(client, token, owner.password, "short")
            assert short.status_code == 303
            assert "New password: " in (await client.get("/settings")).text
            typo = await client.post(
                "/settings/password",
                data={
                    "csrf_token": token,
                    "current_password": owner.password,
                    "new_password": "a-new-passphrase",
                    "confirm_password": "a-new-passphrasf",
                },
            )
            assert typo.status_code == 303
            assert "The new passwords differ" in (await client.get("/settings")).text
            # Refused changes end nothing.
            assert (await thief.get("/")).status_code == 200

            changed = await change_password(client, token, owner.password, "a-new-passphrase")
            assert changed.status_code == 303
            assert changed.headers["location"] == "/settings"
            assert "other sessions are signed out" in (await client.get("/settings")).text

            for other in (thief, laptop):
                refused = await other.get("/")
                assert refused.status_code == 303
                assert refused.headers["location"] == "/login"
    [kept] = await _rows(database)
    assert kept.user_id == owner.user_id
    assert (await client.get("/")).status_code == 200

    old = await client.post(
        "/v1/auth/login", json={"email": owner.email, "password": owner.password}
    )
    assert old.status_code == 401
    new = await client.post(
        "/v1/auth/login", json={"email": owner.email, "password": "a-new-passphrase"}
    )
    assert new.status_code == 200
