"""A placement test through the API, on a real mail path.

Two senders and three seeds on the test mail network: submission SMTP signs mail
from alpha.test with DKIM and writes the receiving side's Authentication-Results
from real DNS look-ups (tests/placement/mta.py), LMTP hands it to Dovecot, whose
Sieve files beta.test's sender into Junk and discards what alpha.test sends one
seed. The results must say inbox, spam and missing where the folders do, with the
authentication results of the real headers, and summaries that add up.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
from dbos import DBOS
from sqlalchemy import func, select

from mailfleet.config import Settings
from mailfleet.models import PlacementTest, WebhookEvent
from mailfleet.placement.service import workflow_id
from tests.conftest import Account
from tests.placement.conftest import PlacementNet
from tests.placement.mta import new_dkim_key
from tests.servers.http_receiver import HttpReceiver
from tests.warmup.conftest import NetMailbox

FOLDERS = ("inbox", "spam", "promotions", "other", "missing")


async def wait_for(
    client: httpx.AsyncClient, owner: Account, test_id: str, status: str
) -> dict[str, Any]:
    """The test once it reached `status` (a bound on polls, never a timed assertion)."""
    for _ in range(600):
        got = await client.get(f"/v1/placement-tests/{test_id}", headers=owner.headers)
        assert got.status_code == 200, got.text
        data: dict[str, Any] = got.json()["data"]
        if data["status"] == status:
            return data
        await asyncio.sleep(0.1)
    raise AssertionError(f"the test never reached {status}: {data['status']}")


async def make_seed(
    client: httpx.AsyncClient, owner: Account, net: PlacementNet, local: str, domain: str
) -> NetMailbox:
    seed = await net.mailbox(owner.workspace_id, local, domain)
    marked = await client.put(
        f"/v1/mailboxes/{seed.id}", json={"placementSeed": True}, headers=owner.headers
    )
    assert marked.status_code == 200, marked.text
    assert marked.json()["data"]["placementSeed"] is True
    return seed


def assert_adds_up(summary: dict[str, Any], parts: list[dict[str, Any]]) -> None:
    for key in (*FOLDERS, "messages", "waiting", "failed"):
        assert sum(part[key] for part in parts) == summary[key], key


async def test_a_placement_test_reports_each_folder_with_its_authentication(
    client: httpx.AsyncClient, owner: Account, placement_net: PlacementNet
) -> None:
    net = placement_net
    # alpha.test: DKIM key, SPF for 127.0.0.1, DMARC. beta.test: SPF without it (-all),
    # no DKIM key, DMARC: every check fails or is absent there.
    net.relay.publish_key("alpha.test", new_dkim_key())
    net.dns.set_records("alpha.test", "TXT", ["v=spf1 ip4:127.0.0.1 -all"])
    net.dns.set_records("_dmarc.alpha.test", "TXT", ["v=DMARC1; p=none"])
    net.dns.set_records("beta.test", "TXT", ["v=spf1 ip4:192.0.2.1 -all"])
    net.dns.set_records("_dmarc.beta.test", "TXT", ["v=DMARC1; p=reject"])
    # Seeds' providers come from their domains' MX records.
    net.dns.set_records("gseed.test", "MX", ["1 aspmx.l.google.com"])
    net.dns.set_records("mseed.test", "MX", ["0 mseed-test.mail.protection.outlook.com"])

    good = await net.mailbox(owner.workspace_id, "ann", "alpha.test")
    bad = await net.mailbox(owner.workspace_id, "bob", "beta.test")
    google = await make_seed(client, owner, net, "sg", "gseed.test")
    microsoft = await make_seed(client, owner, net, "sm", "mseed.test")
    other = await make_seed(client, owner, net, "so", "oseed.test")
    net.dovecot.set_junk_senders([bad.email])
    net.dovecot.set_extra_rules(
        f'if allof (address :is "from" "{good.email}", address :is "to" "{other.email}") '
        "{\n  discard;\n  stop;\n}\n"
    )

    seeds = await client.get("/v1/placement-tests/seeds", headers=owner.headers)
    assert seeds.status_code == 200, seeds.text
    providers = {s["email"]: s["provider"] for s in seeds.json()["data"]}
    assert providers == {
        google.email: "google",
        microsoft.email: "microsoft",
        other.email: "other",
    }

    receiver = HttpReceiver()
    with receiver:
        hook = await client.post(
            "/v1/webhooks",
            json={"url": receiver.url(), "eventTypes": ["placement_test.completed"]},
            headers=owner.headers,
        )
        assert hook.status_code == 201, hook.text
        created = await client.post(
            "/v1/placement-tests",
            json={
                "name": "before the campaign",
                "fromMailboxIds": [good.id, bad.id],
                "subject": "Quick question",
                "text": "Hi,\n\nAre you the right person to ask?\n",
                "html": "<p>Hi,</p><p>Are you the right person to ask?</p>",
                "timeoutMinutes": 5,
            },
            headers=owner.headers,
        )
        assert created.status_code == 202, created.text
        started = created.json()["data"]
        assert started["status"] == "sending"
        assert started["senders"] == 2
        assert started["seeds"] == 3
        assert len(started["results"]) == 6
        test = await wait_for(client, owner, started["id"], "completed")

    folder_of = {(r["senderEmail"], r["seedEmail"]): r["folder"] for r in test["results"]}
    assert folder_of == {
        (good.email, google.email): "inbox",
        (good.email, microsoft.email): "inbox",
        (good.email, other.email): "missing",
        (bad.email, google.email): "spam",
        (bad.email, microsoft.email): "spam",
        (bad.email, other.email): "spam",
    }
    for result in test["results"]:
        assert result["status"] == "sent"
        assert result["provider"] == providers[result["seedEmail"]]
        if result["folder"] == "missing":
            assert result["auth"] == {"spf": None, "dkim": None, "dmarc": None}
            assert result["arrivedAfterSeconds"] is None
            continue
        assert result["folderName"] == ("INBOX" if result["folder"] == "inbox" else "Junk")
        assert result["arrivedAfterSeconds"] >= 0
        if result["senderEmail"] == good.email:
            assert result["auth"] == {"spf": "pass", "dkim": "pass", "dmarc": "pass"}
        else:
            assert result["auth"] == {"spf": "fail", "dkim": "none", "dmarc": "fail"}

    summary = test["summary"]
    overall = summary["overall"]
    assert (overall["inbox"], overall["spam"], overall["missing"]) == (2, 3, 1)
    assert overall["messages"] == 6
    assert overall["waiting"] == 0
    assert overall["inboxRate"] == 33.3
    assert overall["spamRate"] == 50.0
    assert test["overall"] == overall
    by_provider = {p["provider"]: p for p in summary["providers"]}
    assert set(by_provider) == {"google", "microsoft", "other"}
    assert_adds_up(overall, summary["providers"])
    assert (by_provider["google"]["inbox"], by_provider["google"]["spam"]) == (1, 1)
    assert (by_provider["other"]["spam"], by_provider["other"]["missing"]) == (1, 1)
    by_sender = {s["email"]: s for s in summary["senders"]}
    assert_adds_up(overall, summary["senders"])
    assert (by_sender[good.email]["inbox"], by_sender[good.email]["missing"]) == (2, 1)
    assert by_sender[bad.email]["spamRate"] == 100.0
    assert by_sender[good.email]["domainAuth"]["domain"] == "alpha.test"

    # Each message went out once, and the seeds hold none of them any more.
    sent = Counter(
        (d.mail_from, rcpt)
        for d in net.submission.deliveries
        if d.login in (good.email, bad.email)
        for rcpt in d.rcpt_tos
    )
    assert len(sent) == 6
    assert set(sent.values()) == {1}
    for seed in (google, microsoft, other):
        assert net.held(seed, test["testCode"]) == []

    async with net.database.transaction() as session:
        events = list(
            await session.scalars(
                select(WebhookEvent).where(WebhookEvent.type == "placement_test.completed")
            )
        )
    assert [e.data["testId"] for e in events] == [test["id"]]
    assert (events[0].data["inbox"], events[0].data["missing"]) == (2, 1)

    listed = await client.get("/v1/placement-tests", headers=owner.headers)
    assert listed.status_code == 200
    assert [t["id"] for t in listed.json()["data"]] == [test["id"]]
    assert listed.json()["pagination"]["total"] == 1
    # A completed test cannot be canceled.
    late = await client.delete(f"/v1/placement-tests/{test['id']}", headers=owner.headers)
    assert late.status_code == 409


async def test_delete_cancels_a_running_test(
    client: httpx.AsyncClient, owner: Account, placement_net: PlacementNet, quick_reads: Settings
) -> None:
    net = placement_net
    # A long timeout: only the cancel can end this test.
    quick_reads.placement_timeout_seconds = 600
    sender = await net.mailbox(owner.workspace_id, "cal", "alpha.test")
    seed = await net.mailbox(owner.workspace_id, "sc", "oseed.test")
    net.dovecot.set_extra_rules(f'if address :is "to" "{seed.email}" {{\n  discard;\n  stop;\n}}\n')
    created = await client.post(
        "/v1/placement-tests",
        json={
            "name": "canceled",
            "fromMailboxIds": [sender.id],
            "seedMailboxIds": [seed.id],
            "subject": "Hello",
        },
        headers=owner.headers,
    )
    assert created.status_code == 202, created.text
    test_id = created.json()["data"]["id"]
    waiting = await wait_for(client, owner, test_id, "waiting")
    assert waiting["results"][0]["status"] == "sent"
    canceled = await client.delete(f"/v1/placement-tests/{test_id}", headers=owner.headers)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["data"]["status"] == "canceled"
    assert canceled.json()["data"]["canceledAt"]
    again = await client.delete(f"/v1/placement-tests/{test_id}", headers=owner.headers)
    assert again.status_code == 200

    handle = await DBOS.retrieve_workflow_async(workflow_id(test_id))
    assert await handle.get_result() == {"messages": 0}
    final = (await client.get(f"/v1/placement-tests/{test_id}", headers=owner.headers)).json()
    assert final["data"]["status"] == "canceled"
    assert final["data"]["results"][0]["folder"] is None
    async with net.database.transaction() as session:
        count = await session.scalar(select(func.count()).select_from(PlacementTest))
    assert count == 1
