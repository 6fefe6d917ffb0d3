"""GET /v1/mailboxes paged by keyset (`cursor`) and by offset (`skip`), with filters."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from mailfleet.db import Database
from mailfleet.mailboxes import repository as mailbox_repository
from mailfleet.models import Mailbox
from tests.conftest import Account, HeldMailbox, make_account

# Three share a creation time, so only the id tells their order apart.
SAME_MOMENT = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)


async def _fleet(
    database: Database, held_mailbox: HeldMailbox, owner: Account, n: int = 9
) -> list[str]:
    """`n` mailboxes, every third tagged "warm"; their ids newest first."""
    ids = []
    for i in range(n):
        tags = {"tags": ["warm"]} if i % 3 == 0 else {}
        ids.append(await held_mailbox(owner.workspace_id, f"m{i}@fleet.test", **tags))
    async with database.transaction() as session:
        for i, mailbox_id in enumerate(ids):
            moment = SAME_MOMENT if i in (2, 3, 4) else SAME_MOMENT + timedelta(minutes=i)
            await session.execute(
                update(Mailbox).where(Mailbox.id == mailbox_id).values(created_at=moment)
            )
    created = {i: SAME_MOMENT + timedelta(minutes=i) for i in range(n)}
    for i in (2, 3, 4):
        created[i] = SAME_MOMENT
    order = sorted(range(n), key=lambda i: (created[i], ids[i]), reverse=True)
    return [ids[i] for i in order]


async def _walk(client: httpx.AsyncClient, owner: Account, query: str) -> list[list[str]]:
    """Every page of the listing, following nextCursor from the first."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params = query + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(f"/v1/mailboxes?{params}", headers=owner.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        pages.append([m["id"] for m in body["data"]])
        cursor = body["pagination"]["nextCursor"]
        assert body["pagination"]["hasMore"] is (cursor is not None)
        if cursor is None:
            return pages


async def test_cursor_pages_cover_the_list_once_in_order(
    client: httpx.AsyncClient, owner: Account, database: Database, held_mailbox: HeldMailbox
) -> None:
    newest_first = await _fleet(database, held_mailbox, owner)
    other = await make_account(database, "other@fleet.test")
    await held_mailbox(other.workspace_id, "theirs@fleet.test")

    pages = await _walk(client, owner, "limit=2")
    assert [len(page) for page in pages] == [2, 2, 2, 2, 1]
    assert [i for page in pages for i in page] == newest_first

    first = await client.get("/v1/mailboxes?limit=4", headers=owner.headers)
    pagination = first.json()["pagination"]
    assert {k: v for k, v in pagination.items() if k != "nextCursor"} == {
        "total": 9,
        "limit": 4,
        "skip": 0,
        "hasMore": True,
    }
    after = await client.get(
        f"/v1/mailboxes?limit=100&cursor={pagination['nextCursor']}", headers=owner.headers
    )
    assert [m["id"] for m in after.json()["data"]] == newest_first[4:]
    # The total counts every match, not what is left after the cursor.
    assert after.json()["pagination"]["total"] == 9
    assert after.json()["pagination"]["nextCursor"] is None


async def test_cursor_pages_with_filters(
    client: httpx.AsyncClient, owner: Account, database: Database, held_mailbox: HeldMailbox
) -> None:
    newest_first = await _fleet(database, held_mailbox, owner)
    warm = await client.get("/v1/mailboxes?tag=warm&limit=100", headers=owner.headers)
    warm_ids = [m["id"] for m in warm.json()["data"]]
    assert len(warm_ids) == 3
    assert warm_ids == [i for i in newest_first if i in warm_ids]

    assert warm.json()["pagination"]["total"] == 3
    both = await client.get("/v1/mailboxes?tag=warm&search=m&limit=1", headers=owner.headers)
    assert both.json()["pagination"]["total"] == 3
    none = await client.get("/v1/mailboxes?tag=nope", headers=owner.headers)
    assert none.json()["pagination"]["total"] == 0

    pages = await _walk(client, owner, "tag=warm&limit=1")
    assert pages == [[i] for i in warm_ids]
    # A cursor carries its first page's total, for those filters only.
    first = await client.get("/v1/mailboxes?tag=warm&limit=1", headers=owner.headers)
    cursor = first.json()["pagination"]["nextCursor"]
    same = await client.get(f"/v1/mailboxes?tag=warm&cursor={cursor}", headers=owner.headers)
    assert same.json()["pagination"]["total"] == 3
    other = await client.get(f"/v1/mailboxes?cursor={cursor}", headers=owner.headers)
    assert other.json()["pagination"]["total"] == 9
    assert [m["id"] for m in other.json()["data"]] == newest_first[
        newest_first.index(warm_ids[0]) + 1 :
    ]
    pages = await _walk(client, owner, "status=inactive&domain=fleet.test&search=m&limit=4")
    assert [i for page in pages for i in page] == newest_first
    assert await _walk(client, owner, "status=active&limit=4") == [[]]


async def test_skip_still_pages(
    client: httpx.AsyncClient, owner: Account, database: Database, held_mailbox: HeldMailbox
) -> None:
    newest_first = await _fleet(database, held_mailbox, owner)
    seen = []
    for skip in range(0, 9, 4):
        response = await client.get(f"/v1/mailboxes?limit=4&skip={skip}", headers=owner.headers)
        body = response.json()
        seen += [m["id"] for m in body["data"]]
        assert body["pagination"]["total"] == 9
        assert body["pagination"]["skip"] == skip
        assert body["pagination"]["hasMore"] is (skip + 4 < 9)
    assert seen == newest_first
    past_the_end = await client.get("/v1/mailboxes?skip=50", headers=owner.headers)
    assert past_the_end.json()["data"] == []
    assert past_the_end.json()["pagination"]["total"] == 9


async def test_a_deep_skip_reads_keys_first_and_answers_the_same(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    held_mailbox: HeldMailbox,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From DEEP_SKIP on, a page's keys are cut first and its rows read after
    (`_keys_first`): the same bodies as the one-select page, filters, tags' names,
    totals and all."""
    await _fleet(database, held_mailbox, owner)
    queries = [
        f"limit={limit}&skip={skip}{filters}"
        for limit, skip in ((4, 1), (4, 4), (4, 8), (2, 7), (4, 50))
        for filters in ("", "&tag=warm", "&status=inactive&search=m", "&domain=fleet.test")
    ]

    async def bodies() -> list[Any]:
        answers = []
        for query in queries:
            response = await client.get(f"/v1/mailboxes?{query}", headers=owner.headers)
            assert response.status_code == 200, response.text
            answers.append(response.json())
        return answers

    shallow = await bodies()
    monkeypatch.setattr(mailbox_repository, "DEEP_SKIP", 1)
    deep = await bodies()
    assert deep == shallow
    tagged = shallow[queries.index("limit=4&skip=1&tag=warm")]
    assert tagged["pagination"]["total"] == 3
    assert [m["tags"] for m in tagged["data"]] == [["warm"], ["warm"]]
    assert sum(len(body["data"]) for body in shallow) > 20


def _encoded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        _encoded(b"[1, 2]"),
        _encoded(b'["2026-01-01T00:00:00", "abc", null, ""]'),  # no time zone
        _encoded(b'["yesterday", "abc", null, ""]'),
        _encoded(b'["2026-01-01T00:00:00+00:00", "", null, ""]'),
        _encoded(b'{"a": 1}'),
        _encoded(b'["2026-01-01T00:00:00+00:00", "abc", -1, ""]'),
        _encoded(b'["2026-01-01T00:00:00+00:00", "abc", null, 5]'),
        _encoded(b"\xff\xfe"),
    ],
)
async def test_a_bad_cursor_is_400_naming_it(
    client: httpx.AsyncClient, owner: Account, cursor: str
) -> None:
    response = await client.get("/v1/mailboxes", params={"cursor": cursor}, headers=owner.headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert [d["field"] for d in error["details"]] == ["cursor"]


async def test_cursor_with_skip_is_400_naming_skip(
    client: httpx.AsyncClient, owner: Account, database: Database, held_mailbox: HeldMailbox
) -> None:
    await _fleet(database, held_mailbox, owner, n=3)
    first = await client.get("/v1/mailboxes?limit=1", headers=owner.headers)
    cursor = first.json()["pagination"]["nextCursor"]
    response = await client.get(
        "/v1/mailboxes", params={"cursor": cursor, "skip": 1}, headers=owner.headers
    )
    assert response.status_code == 400, response.text
    assert [d["field"] for d in response.json()["error"]["details"]] == ["skip"]
