from __future__ import annotations

import httpx
from fastapi import APIRouter

from mailfleet.db import Database
from mailfleet.deps import WorkspaceDep
from tests.conftest import Account, make_account


async def test_create_list_update(client: httpx.AsyncClient, owner: Account) -> None:
    created = await client.post(
        "/v1/workspaces", json={"name": "Agency A", "description": "clients"}, headers=owner.headers
    )
    assert created.status_code == 201, created.text
    workspace = created.json()["data"]
    assert workspace["role"] == "owner"
    assert workspace["createdAt"].endswith("Z")

    listed = await client.get("/v1/workspaces?limit=1", headers=owner.headers)
    body = listed.json()
    assert body["pagination"] == {"total": 2, "limit": 1, "skip": 0, "hasMore": True}
    assert len(body["data"]) == 1

    updated = await client.put(
        f"/v1/workspaces/{workspace['id']}", json={"name": "Agency B"}, headers=owner.headers
    )
    assert updated.status_code == 200
    assert updated.json()["data"]["name"] == "Agency B"
    assert updated.json()["data"]["description"] == "clients"


async def test_workspace_selected_by_header(client: httpx.AsyncClient, owner: Account) -> None:
    created = await client.post("/v1/workspaces", json={"name": "Second"}, headers=owner.headers)
    second = created.json()["data"]["id"]
    members = await client.get(
        f"/v1/workspaces/{second}/members", headers={**owner.headers, "x-workspace-id": second}
    )
    assert members.status_code == 200
    assert [m["role"] for m in members.json()["data"]] == ["owner"]


async def test_non_member_gets_404(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    stranger = await make_account(database, "stranger@example.test")
    response = await client.put(
        f"/v1/workspaces/{owner.workspace_id}", json={"name": "mine now"}, headers=stranger.headers
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NOT_FOUND"


async def test_roles(client: httpx.AsyncClient, owner: Account, database: Database) -> None:
    viewer = await make_account(database, "viewer@example.test")
    member = await make_account(database, "member@example.test")
    for account, role in ((viewer, "viewer"), (member, "member")):
        added = await client.post(
            f"/v1/workspaces/{owner.workspace_id}/members",
            json={"email": account.email, "role": role},
            headers=owner.headers,
        )
        assert added.status_code == 201, added.text

    as_viewer = {**viewer.headers, "x-workspace-id": owner.workspace_id}
    as_member = {**member.headers, "x-workspace-id": owner.workspace_id}
    listed = await client.get(f"/v1/workspaces/{owner.workspace_id}/members", headers=as_viewer)
    assert listed.status_code == 200
    assert sorted(m["role"] for m in listed.json()["data"]) == ["member", "owner", "viewer"]

    for headers in (as_viewer, as_member):
        refused = await client.put(
            f"/v1/workspaces/{owner.workspace_id}", json={"name": "x"}, headers=headers
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "FORBIDDEN"
        refused = await client.post(
            f"/v1/workspaces/{owner.workspace_id}/members",
            json={"email": "owner@example.test", "role": "admin"},
            headers=headers,
        )
        assert refused.status_code == 403

    promoted = await client.put(
        f"/v1/workspaces/{owner.workspace_id}/members/{member.user_id}",
        json={"role": "admin"},
        headers=owner.headers,
    )
    assert promoted.status_code == 200
    renamed = await client.put(
        f"/v1/workspaces/{owner.workspace_id}", json={"name": "by admin"}, headers=as_member
    )
    assert renamed.status_code == 200

    owner_demoted = await client.put(
        f"/v1/workspaces/{owner.workspace_id}/members/{owner.user_id}",
        json={"role": "viewer"},
        headers=as_member,
    )
    assert owner_demoted.status_code == 403

    removed = await client.delete(
        f"/v1/workspaces/{owner.workspace_id}/members/{viewer.user_id}", headers=owner.headers
    )
    assert removed.status_code == 200
    gone = await client.get(f"/v1/workspaces/{owner.workspace_id}/members", headers=as_viewer)
    assert gone.status_code == 404


async def test_viewer_write_through_workspace_context_is_403(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    """The generic guard: any non-GET through a workspace-scoped route is refused for viewers."""
    viewer = await make_account(database, "viewer2@example.test")
    await client.post(
        f"/v1/workspaces/{owner.workspace_id}/members",
        json={"email": viewer.email, "role": "viewer"},
        headers=owner.headers,
    )
    router = APIRouter()

    @router.post("/v1/_probe")
    async def probe(ctx: WorkspaceDep) -> dict[str, str]:
        return {"role": ctx.role}

    @router.get("/v1/_probe")
    async def probe_read(ctx: WorkspaceDep) -> dict[str, str]:
        return {"role": ctx.role}

    app = client._transport.app  # type: ignore[attr-defined]
    app.include_router(router)
    try:
        headers = {**viewer.headers, "x-workspace-id": owner.workspace_id}
        assert (await client.get("/v1/_probe", headers=headers)).json() == {"role": "viewer"}
        write = await client.post("/v1/_probe", headers=headers)
        assert write.status_code == 403
        assert "read-only" in write.json()["error"]["message"]
    finally:
        app.router.routes[:] = [
            r for r in app.router.routes if getattr(r, "path", "") != "/v1/_probe"
        ]
