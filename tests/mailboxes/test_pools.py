from __future__ import annotations

import httpx

from tests.conftest import Account, HeldMailbox


async def test_pools_crud_and_mailbox_filter(
    client: httpx.AsyncClient, owner: Account, held_mailbox: HeldMailbox
) -> None:
    created = await client.post("/v1/pools", json={"name": "Main"}, headers=owner.headers)
    assert created.status_code == 201, created.text
    pool = created.json()["data"]
    through_api = await client.post(
        "/v1/mailboxes",
        json={
            "email": "api@pool.test",
            "smtp": {"host": "127.0.0.1", "password": "x"},
            "poolId": pool["id"],
        },
        headers=owner.headers,
    )
    assert through_api.json()["data"]["poolId"] == pool["id"]
    await client.delete(f"/v1/mailboxes/{through_api.json()['data']['id']}", headers=owner.headers)

    await held_mailbox(owner.workspace_id, "p@pool.test", poolId=pool["id"])
    outside = await held_mailbox(owner.workspace_id, "q@pool.test")
    listed = (await client.get("/v1/pools", headers=owner.headers)).json()["data"]
    assert [(p["name"], p["inboxCount"]) for p in listed] == [("Main", 1)]
    filtered = await client.get(f"/v1/mailboxes?poolId={pool['id']}", headers=owner.headers)
    assert [m["email"] for m in filtered.json()["data"]] == ["p@pool.test"]

    moved = await client.put(
        f"/v1/mailboxes/{outside}", json={"poolId": pool["id"]}, headers=owner.headers
    )
    assert moved.json()["data"]["poolId"] == pool["id"]
    renamed = await client.put(
        f"/v1/pools/{pool['id']}", json={"name": "Renamed"}, headers=owner.headers
    )
    assert renamed.json()["data"]["name"] == "Renamed"
    unknown = await client.post(
        "/v1/mailboxes",
        json={
            "email": "r@pool.test",
            "smtp": {"host": "127.0.0.1", "password": "x"},
            "poolId": "nope",
        },
        headers=owner.headers,
    )
    assert unknown.status_code == 404
    deleted = await client.delete(f"/v1/pools/{pool['id']}", headers=owner.headers)
    assert deleted.status_code == 200
    remaining = (await client.get("/v1/mailboxes", headers=owner.headers)).json()["data"]
    assert {m["email"] for m in remaining} == {"p@pool.test", "q@pool.test"}
    assert {m["poolId"] for m in remaining} == {None}
