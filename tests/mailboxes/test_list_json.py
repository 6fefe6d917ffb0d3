"""`GET /v1/mailboxes` has the database write each row's JSON (`kit.sqljson`): every
row must be what `MailboxOut` renders for the same mailbox, on both databases, for
every kind of value a field can hold."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from pydantic import BaseModel, create_model
from sqlalchemy import column, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.orm import selectinload

from mailfleet.db import Database
from mailfleet.kit.sqljson import model_json
from mailfleet.mailboxes.router import listing_json, mailbox_out
from mailfleet.mailboxes.schemas import MailboxOut
from mailfleet.models import Domain, Mailbox
from tests.conftest import Account, HeldMailbox


async def test_each_listed_row_is_what_mailbox_out_renders(
    client: httpx.AsyncClient, database: Database, owner: Account, held_mailbox: HeldMailbox
) -> None:
    plain = await held_mailbox(owner.workspace_id, "plain@json.test")
    varied = await held_mailbox(
        owner.workspace_id,
        "chloé.ünal@json.test",
        displayName='Chloé "Q" Ünal \\ / \t',
        signature="Best,\nChloé — <b>ops</b>",
        tags=["ops", "dns ✓"],
        dailySendLimit=17,
    )
    async with database.transaction() as session:
        domain = Domain(
            workspace_id=owner.workspace_id,
            name="json.test",
            unicode_name="json.test",
            dns_provider="powerdns",
            mail_provider="self_hosted",
        )
        session.add(domain)
        await session.flush()
        await session.execute(
            update(Mailbox)
            .where(Mailbox.id == varied)
            .values(
                sending_enabled=False,
                placement_seed=True,
                setup_status={"dns": {"ok": True, "checked": [1, 2.5, None]}, "note": "é"},
                # Milliseconds are cut, not rounded, as kit.clock.isoformat cuts them.
                last_verified_at=datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC),
                created_at=datetime(2026, 1, 2, 3, 4, 5, 123999, tzinfo=UTC),
                hosted_domain_id=domain.id,
                first_name="Chloé",
                quota_bytes=5 * 1024**3,
                forward_to="boss@json.test",
            )
        )

    listed = await client.get("/v1/mailboxes", headers=owner.headers)
    assert listed.status_code == 200, listed.text
    rows = {row["id"]: row for row in listed.json()["data"]}
    async with database.transaction() as session:
        mailboxes = (
            await session.scalars(
                select(Mailbox)
                .options(selectinload(Mailbox.tags))
                .where(Mailbox.id.in_([plain, varied]))
            )
        ).all()
        expected = {m.id: mailbox_out(m).model_dump(mode="json", by_alias=True) for m in mailboxes}
    for mailbox_id, want in expected.items():
        got = rows[mailbox_id]
        # Tags in any order: the model lists them as loaded, the database as linked.
        assert sorted(got.pop("tags")) == sorted(want.pop("tags"))
        assert got == want
    assert rows[varied]["lastVerifiedAt"] == "2026-11-30T23:59:59.999Z"
    assert rows[varied]["createdAt"] == "2026-01-02T03:04:05.123Z"
    assert rows[varied]["hosted"] is True
    assert rows[plain]["setupStatus"] is None
    assert rows[varied]["placementSeed"] is True
    assert rows[varied]["setupStatus"]["dns"]["checked"] == [1, 2.5, None]


def test_a_model_field_the_rows_cannot_give_is_refused() -> None:
    class WithList(BaseModel):
        items: list[str] = ["a"]

    with pytest.raises(TypeError, match="items"):
        model_json(WithList, {}, {})


def test_a_model_of_more_fields_than_postgresql_takes_is_refused() -> None:
    wide = create_model("Wide", **{f"f{i}": (int, 0) for i in range(51)})
    with pytest.raises(TypeError, match="over 50 fields"):
        model_json(wide, {}, {})


def test_every_field_of_mailbox_out_is_rendered() -> None:
    """A field added to MailboxOut is rendered by the database too (or the build of
    its row fails), never silently missing from the list."""
    keys = {
        field.serialization_alias or field.alias or name
        for name, field in MailboxOut.model_fields.items()
        if not field.exclude and field.exclude_if is None
    }
    columns = {c.key: column(c.key) for c in Mailbox.__table__.columns}
    rendered = str(
        listing_json(columns, column("tag_names")).compile(
            dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}
        )
    )
    for key in keys:
        assert f"'{key}'" in rendered, key
