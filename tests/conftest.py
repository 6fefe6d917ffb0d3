"""Session-wide fixtures: the database backend, Mailfleet's app, a client.

MAILFLEET_TEST_DATABASE picks the backend (sqlite, the default, or postgresql);
`make test` runs the suite on both. Each test that touches the database starts
from empty tables.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete
from sqlalchemy.exc import DBAPIError

from mailfleet import jobs
from mailfleet.accounts import service as accounts
from mailfleet.app import create_app
from mailfleet.config import Settings
from mailfleet.db import Base, Database
from mailfleet.kit.crypto import Keyring
from tests.servers.dnsserver import LocalDnsServer
from tests.servers.postgres import PostgresServer
from tests.servers.tls import LoopbackTLS

BACKEND = os.environ.get("MAILFLEET_TEST_DATABASE", "sqlite")

pytest_plugins = ["tests.servers.fixtures"]


def pytest_report_header() -> str:
    return f"mailfleet database backend: {BACKEND}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use the database run on every backend; the rest run once.
    for item in items:
        if {"database", "client", "app", "settings"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


def make_test_settings(data_dir: Path, database_url: str | None, **overrides: Any) -> Settings:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    values: dict[str, Any] = {
        "env": "test",
        "data_dir": data_dir,
        "database_url": database_url,
        "secret_keys": f"test1:{key}",
        "jwt_secret": secrets.token_urlsafe(32),
        "allow_private_networks": True,
        "log_level": "INFO",
        "worker_id": f"pytest-{os.getpid()}",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="session")
def settings(
    request: pytest.FixtureRequest, dns_server: LocalDnsServer, loopback_tls: LoopbackTLS
) -> Iterator[Settings]:
    """The app's settings: every name it resolves goes to the test DNS server, and
    it trusts the test CA, so no test traffic leaves loopback."""
    data_dir = Path(tempfile.mkdtemp(prefix="mailfleet-test-"))
    if BACKEND == "postgresql":
        server: PostgresServer = request.getfixturevalue("postgres")
        url: str | None = server.create_database("mailfleet_test")
    elif BACKEND == "sqlite":
        url = None
    else:
        raise pytest.UsageError(f"MAILFLEET_TEST_DATABASE={BACKEND}: use sqlite or postgresql")
    yield make_test_settings(
        data_dir,
        url,
        dns_nameservers=[dns_server.nameserver],
        dns_timeout=1.0,
        tls_ca_file=loopback_tls.ca_pem,
    )
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with its lifespan entered once, and DBOS launched once, per session."""
    application = create_app(settings, start_jobs=False)
    async with application.router.lifespan_context(application):
        await jobs.launch(settings)
        try:
            yield application
        finally:
            jobs.shutdown()


@pytest.fixture
async def database(app: FastAPI) -> AsyncIterator[Database]:
    db: Database = app.state.database
    yield db
    # Login throttling counts per process: one test's failed logins are not the next's.
    from mailfleet.accounts.throttle import login_throttle

    login_throttle.reset()
    await empty_tables(db)


async def empty_tables(db: Database, attempts: int = 5) -> None:
    """Delete every row, children first. A background workflow the test started
    may still be writing; on PostgreSQL the two can deadlock, and the server then
    aborts one of them. If it aborts this one, empty the tables again."""
    for attempt in range(attempts):
        try:
            async with db.transaction() as session:
                for table in reversed(Base.metadata.sorted_tables):
                    await session.execute(delete(table))
            return
        except DBAPIError as error:
            if "deadlock detected" not in str(error) or attempt == attempts - 1:
                raise
            await asyncio.sleep(0.1)


@pytest.fixture
async def client(app: FastAPI, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://mailfleet.test") as c:
        yield c


@dataclass
class Account:
    user_id: str
    workspace_id: str
    api_key: str
    email: str
    password: str

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}


async def make_account(database: Database, email: str, password: str = "password-123") -> Account:
    async with database.transaction() as session:
        user, workspace = await accounts.create_user(session, email=email, password=password)
        created = await accounts.create_api_key(
            session, user, name="test", scope="user", workspace_id=None
        )
    return Account(user.id, workspace.id, created.secret, email, password)


@pytest.fixture
def keyring(app: FastAPI) -> Keyring:
    result: Keyring = app.state.keyring
    return result


HeldMailbox = Callable[..., Awaitable[str]]


@pytest.fixture
def held_mailbox(database: Database, keyring: Keyring) -> HeldMailbox:
    """Create a mailbox that stays "inactive": its connection test is never run
    (owned by a job that does not exist), so tests about listing and editing don't
    race the background verification."""
    from mailfleet.mailboxes import service
    from mailfleet.mailboxes.schemas import MailboxCreate

    async def create(workspace_id: str, email: str, **fields: Any) -> str:
        body = MailboxCreate.model_validate(
            {"email": email, "smtp": {"host": "held.test", "password": "x"}, **fields}
        )
        async with database.transaction() as session:
            mailbox = await service.create_mailbox(
                session, keyring, workspace_id, body, job_id="held-by-test"
            )
        return mailbox.id

    return create


@pytest.fixture
def short_mail_timeout(settings: Settings) -> Iterator[None]:
    """Mail logins give up after a second, for tests against servers that never answer."""
    previous = settings.mail_timeout
    settings.mail_timeout = 1.0
    yield
    settings.mail_timeout = previous


@pytest.fixture
async def owner(database: Database) -> Account:
    return await make_account(database, "owner@example.test")
