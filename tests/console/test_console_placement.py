"""Placement tests from the console: started on the form (through the real service and
workflow, on the test mail network), followed live until completed, canceled; bad
input shown in the form; viewers refused."""

from __future__ import annotations

import asyncio
import re

import httpx
from sqlalchemy import update

from mailfleet.db import Database
from mailfleet.models import Mailbox, PlacementTest
from tests.conftest import Account, HeldMailbox, make_account
from tests.console.test_console_http import sign_in

# The placement tests' own mail network (Dovecot with Sieve, signing submission).
from tests.placement.conftest import (  # noqa: F401
    PlacementNet,
    placement_dovecot,
    placement_net,
    placement_submission,
    quick_reads,
    relay,
)


async def _follow(client: httpx.AsyncClient, test_path: str) -> str:
    """The results fragment once the test stops running (a bound on polls)."""
    for _ in range(600):
        fragment = await client.get(test_path + "/results")
        assert fragment.status_code == 200
        if "hx-trigger" not in fragment.text:
            return fragment.text
        await asyncio.sleep(0.1)
    raise AssertionError("the test never finished")


async def test_start_a_test_and_follow_it_to_the_end(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    placement_net: PlacementNet,  # noqa: F811
) -> None:
    sender = await placement_net.mailbox(owner.workspace_id, "ann", "alpha.test")
    seed = await placement_net.mailbox(owner.workspace_id, "seed", "gseed.test")
    async with database.transaction() as session:
        await session.execute(
            update(Mailbox).where(Mailbox.id == seed.id).values(placement_seed=True)
        )
    token = await sign_in(client, owner)

    listing = await client.get("/placement")
    assert 'href="/placement/new"' in listing.text
    form = await client.get("/placement/new")
    assert f'name="sender" value="{sender.id}"' in form.text
    assert f'name="seed" value="{seed.id}"' in form.text
    # A seed is never offered as a sender.
    assert f'name="sender" value="{seed.id}"' not in form.text

    started = await client.post(
        "/placement",
        data={
            "csrf_token": token,
            "name": "Console launch check",
            "subject": "Quick question",
            "text": "Hi,\n\nAre you the right person?\n",
            "sender": sender.id,
            "delivery_mode": "one-by-one",
            "timeout_minutes": "5",
        },
    )
    assert started.status_code == 303, started.text
    test_path = started.headers["location"]
    page = await client.get(test_path)
    assert "Console launch check" in page.text
    api = await client.get(
        "/v1/placement-tests/" + test_path.rsplit("/", 1)[1], headers=owner.headers
    )
    data = api.json()["data"]
    assert (data["senders"], data["seeds"], data["deliveryMode"]) == (1, 1, "one-by-one")
    assert data["timeoutMinutes"] == 5

    finished = await _follow(client, test_path)

    assert "data-test-status>completed<" in finished
    assert "Cancel the test" not in finished
    assert re.search(r"<td>1</td><td>1 \(100.0%\)</td>", finished), finished
    assert sender.email in finished


async def test_bad_input_is_shown_in_the_form(
    client: httpx.AsyncClient, owner: Account, held_mailbox: HeldMailbox
) -> None:
    held = await held_mailbox(owner.workspace_id, "held@example.test")
    token = await sign_in(client, owner)
    base = {"csrf_token": token, "name": "Kept name", "subject": "Hello", "timeout_minutes": "60"}

    no_sender = await client.post("/placement", data=base)
    inactive = await client.post("/placement", data={**base, "sender": held})
    too_long = await client.post(
        "/placement", data={**base, "sender": held, "timeout_minutes": "999"}
    )

    assert no_sender.status_code == 400
    assert "Senders" in no_sender.text
    assert 'value="Kept name"' in no_sender.text
    assert inactive.status_code == 400
    assert "not active" in inactive.text
    assert too_long.status_code == 400
    assert "Timeout (minutes)" in too_long.text
    listing = await client.get("/v1/placement-tests", headers=owner.headers)
    assert listing.json()["data"] == []


async def _running_test(database: Database, workspace_id: str, status: str = "waiting") -> str:
    async with database.transaction() as session:
        test = PlacementTest(
            workspace_id=workspace_id,
            name="Running",
            code="code-cancel",
            subject="Hello",
            status=status,
        )
        session.add(test)
        await session.flush()
        return test.id


async def test_cancel_a_running_test(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    test_id = await _running_test(database, owner.workspace_id)
    token = await sign_in(client, owner)
    page = await client.get(f"/placement/{test_id}")
    assert f'hx-get="/placement/{test_id}/results"' in page.text
    assert f'action="/placement/{test_id}/cancel"' in page.text

    canceled = await client.post(f"/placement/{test_id}/cancel", data={"csrf_token": token})
    again = await client.post(f"/placement/{test_id}/cancel", data={"csrf_token": token})

    assert canceled.status_code == 303
    api = await client.get(f"/v1/placement-tests/{test_id}", headers=owner.headers)
    assert api.json()["data"]["status"] == "canceled"
    assert again.status_code == 303
    page = await client.get(f"/placement/{test_id}")
    assert "data-test-status>canceled<" in page.text
    assert "hx-trigger" not in page.text
    assert "/cancel" not in page.text


async def test_canceling_a_completed_test_says_why(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    test_id = await _running_test(database, owner.workspace_id, status="completed")
    token = await sign_in(client, owner)
    refused = await client.post(f"/placement/{test_id}/cancel", data={"csrf_token": token})
    assert refused.status_code == 303
    page = await client.get(refused.headers["location"])
    assert "already completed" in page.text


async def test_a_viewer_sees_no_controls_and_is_refused(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    test_id = await _running_test(database, owner.workspace_id)
    viewer = await make_account(database, "viewer@example.test")
    added = await client.post(
        f"/v1/workspaces/{owner.workspace_id}/members",
        json={"email": viewer.email, "role": "viewer"},
        headers=owner.headers,
    )
    assert added.status_code == 201
    token = await sign_in(client, viewer)
    await client.post("/workspace", data={"csrf_token": token, "workspace_id": owner.workspace_id})

    for path in ("/placement", f"/placement/{test_id}", f"/placement/{test_id}/results"):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert "/placement/new" not in page.text
        forms = re.findall(r'<form[^>]*method="post"[^>]*action="([^"]+)"', page.text)
        assert set(forms) <= {"/workspace", "/logout"}, (path, forms)
    assert (await client.get("/placement/new")).status_code == 403
    started = await client.post("/placement", data={"csrf_token": token, "name": "x"})
    canceled = await client.post(f"/placement/{test_id}/cancel", data={"csrf_token": token})
    assert started.status_code == 403
    assert canceled.status_code == 403
    api = await client.get(f"/v1/placement-tests/{test_id}", headers=owner.headers)
    assert api.json()["data"]["status"] == "waiting"
