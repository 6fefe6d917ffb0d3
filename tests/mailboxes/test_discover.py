from __future__ import annotations

import httpx

from tests.conftest import Account
from tests.servers.dnsserver import LocalDnsServer


async def test_discover_from_table_and_mx(
    client: httpx.AsyncClient, owner: Account, dns_zone: LocalDnsServer
) -> None:
    table = await client.get(
        "/v1/mailboxes/discover?email=Someone@Gmail.com", headers=owner.headers
    )
    assert table.status_code == 200, table.text
    data = table.json()["data"]
    assert (data["email"], data["provider"], data["source"]) == (
        "someone@gmail.com",
        "google",
        "domain-table",
    )
    assert (
        data["imap"]
        == {
            "host": "imap.gmail.com",
            "port": 993,
            "secure": True,
            "security": "ssl",
            "username": "someone@gmail.com",
        }
        or data["imap"]["host"] == "imap.gmail.com"
    )

    dns_zone.set_records("acme.test", "MX", ["1 acme-test.mail.protection.outlook.com"])
    mx = (
        await client.get("/v1/mailboxes/discover?email=ann@acme.test", headers=owner.headers)
    ).json()
    assert mx["data"]["provider"] == "microsoft"
    assert mx["data"]["source"].startswith("mx:")
    assert mx["data"]["smtp"]["host"] == "smtp.office365.com"


async def test_discover_rejects_a_bad_address(client: httpx.AsyncClient, owner: Account) -> None:
    response = await client.get("/v1/mailboxes/discover?email=nope", headers=owner.headers)
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "email"
