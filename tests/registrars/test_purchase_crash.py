"""A name is bought once and paid once even when `mailfleet serve` is SIGKILLed after
the registrar carried out the create and before its answer was recorded.

The fake Porkbun registers the name, then holds its answer; the test kills the
server while it waits, lets the fake answer the dead connection, and restarts the
server. The resumed workflow must ask Porkbun whether the name is ours (listAll)
instead of creating it again, and the wallet must show one charge, no refund."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.bulk.test_bulk_crash import Server, _bootstrap
from tests.conftest import BACKEND
from tests.registrars.fakes import PORKBUN_KEY, PORKBUN_SECRET, FakePorkbun
from tests.servers.dnsserver import LocalDnsServer
from tests.servers.postgres import PostgresServer
from tests.test_cli import _clean_env


@pytest.fixture
def fake_porkbun() -> Iterator[FakePorkbun]:
    with FakePorkbun() as fake:
        yield fake
        fake.release_creates()


@pytest.fixture
def crash_env(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    fake_porkbun: FakePorkbun,
    dns_server: LocalDnsServer,
) -> tuple[dict[str, str], str]:
    env = _clean_env(
        MAILFLEET_ALLOW_PRIVATE_NETWORKS="true",
        MAILFLEET_WORKER_ID="registrar-crash-test",
        # Lookups (the bought domain's DNS check) stay on loopback.
        MAILFLEET_DNS_NAMESERVERS=dns_server.nameserver,
        MAILFLEET_DNS_TIMEOUT="1",
        MAILFLEET_BILLING="on",
        MAILFLEET_REGISTRAR="porkbun",
        MAILFLEET_PORKBUN_API_KEY=PORKBUN_KEY,
        MAILFLEET_PORKBUN_SECRET_KEY=PORKBUN_SECRET,
        MAILFLEET_PORKBUN_API_URL=fake_porkbun.url,
        MAILFLEET_NAMESERVERS="ns1.mailfleet.test,ns2.mailfleet.test",
    )
    if BACKEND == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        name = f"registrar_crash_{uuid.uuid4().hex[:8]}"
        env["MAILFLEET_DATABASE_URL"] = server.create_database(name)
        return env, f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/{name}"
    return env, f"sqlite:///{tmp_path / 'mailfleet-data' / 'mailfleet.db'}"


class SlowStartServer(Server):
    # Cold starts on a machine shared with other work (imports, migrations, DBOS).
    startup_timeout = 240.0


def _sigkill_after_the_registrar_answered_buys_and_charges_once(
    tmp_path: Path, crash_env: tuple[dict[str, str], str], fake_porkbun: FakePorkbun
) -> None:
    env, app_url = crash_env
    credentials = _bootstrap(tmp_path, env)
    headers = {"x-api-key": credentials["apiKey"]}
    server = SlowStartServer(tmp_path, env)
    try:
        server.start()
        granted = httpx.post(
            f"{server.base}/v1/wallet/credits",
            json={"amount": 5000, "reason": "crash test funds"},
            headers=headers,
            timeout=30,
        )
        assert granted.status_code == 201, granted.text
        fake_porkbun.hold_creates()
        bought = httpx.post(
            f"{server.base}/v1/domains/purchase",
            json={"domains": ["crashbrand.com"], "dnsProvider": "manual", "mailProvider": "google"},
            headers=headers,
            timeout=60,
        )
        assert bought.status_code == 201, bought.text
        order_id = bought.json()["data"]["id"]
        assert fake_porkbun.create_arrived.wait(120), server.log()[-3000:]
        # Porkbun has registered the name; its answer has not reached Mailfleet.
        assert fake_porkbun.owned == {"crashbrand.com"}
        server.kill()
        fake_porkbun.release_creates()

        server.start()
        deadline = time.monotonic() + 180
        while True:
            response = httpx.get(
                f"{server.base}/v1/domains/orders/{order_id}", headers=headers, timeout=30
            )
            assert response.status_code == 200, response.text
            order = response.json()["data"]
            if order["status"] == "completed":
                break
            assert time.monotonic() < deadline, (order, server.log()[-3000:])
            time.sleep(0.5)
        wallet = httpx.get(f"{server.base}/v1/wallet", headers=headers, timeout=30).json()
    finally:
        server.stop()

    [item] = order["items"]
    assert item["status"] == "connected", item
    assert item["refunded"] is False
    # Registered once: the resumed step asked whether the name was ours first.
    assert len(fake_porkbun.posts("/domain/create/")) == 1
    assert len(fake_porkbun.posts("/domain/listAll")) >= 1
    assert fake_porkbun.nameservers["crashbrand.com"] == [
        "ns1.mailfleet.test",
        "ns2.mailfleet.test",
    ]
    # Paid once: one charge of the quoted price, nothing given back.
    assert wallet["data"]["balance"] == 5000 - 968
    engine = sa.create_engine(app_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text(
                "SELECT kind, amount, idempotency_key FROM billing_wallet_entries "
                "ORDER BY created_at, id"
            )
        ).all()
    engine.dispose()
    assert [(kind, amount) for kind, amount, _ in rows] == [("credit", 5000), ("charge", -968)]
    assert rows[1][2] == f"domain-order:{order_id}"


@pytest.mark.db
@pytest.mark.timeout(600)
async def test_sigkill_after_the_registrar_answered_buys_and_charges_once(
    tmp_path: Path, crash_env: tuple[dict[str, str], str], fake_porkbun: FakePorkbun
) -> None:
    # In a thread, so the session's event loop (where the job engine was launched)
    # keeps running while the servers are started and killed: a sweep firing
    # during a long synchronous test broke the next test on PostgreSQL.
    await asyncio.to_thread(
        _sigkill_after_the_registrar_answered_buys_and_charges_once,
        tmp_path,
        crash_env,
        fake_porkbun,
    )
