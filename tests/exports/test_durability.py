"""Nothing accepted is lost: an export whose enqueue a crash lost is picked up by
the sweeper; platform credentials are rotated with every other secret."""

from __future__ import annotations

import httpx

from mailfleet.config import Settings
from mailfleet.db import Database
from mailfleet.exports import service
from mailfleet.exports.schemas import MailboxExportRequest
from mailfleet.exports.workflows import requeue_unfinished_exports
from mailfleet.keyrotation import reencrypt_all
from mailfleet.kit.crypto import Keyring, generate_key
from mailfleet.models import PlatformAccount
from tests.conftest import Account
from tests.exports.conftest import API_KEY, add_account, make_mailboxes, wait_for_export
from tests.exports.fakes import FakePlatform, Reply
from tests.jobs.ticks import clear_of_sweeper_ticks


async def test_an_export_whose_enqueue_was_lost_is_swept_up(
    client: httpx.AsyncClient,
    owner: Account,
    database: Database,
    keyring: Keyring,
    fake: FakePlatform,
) -> None:
    fake.route("POST", "/v1/mailboxes", Reply(201, {"success": True, "data": {"_id": "remote-1"}}))
    account = await add_account(client, owner, "sendkit", fake.url, verify=False)
    await make_mailboxes(database, keyring, owner.workspace_id, 2)
    # Committed outside Database.transaction: its after-commit enqueue never runs,
    # as when the process dies right after the commit.
    await clear_of_sweeper_ticks()
    async with database.sessionmaker() as session:
        history, created = await service.push_export(
            session,
            owner.workspace_id,
            owner.user_id,
            MailboxExportRequest(platform_account_id=account["id"]),
        )
        await session.commit()
    assert created
    assert await requeue_unfinished_exports() >= 1
    done = await wait_for_export(client, owner, history.id)
    assert done["exportStatus"] == "COMPLETED"
    assert len(fake.requests("POST", "/v1/mailboxes")) == 2
    # Finished exports are not swept again; enqueueing one twice would be a no-op.
    assert history.id not in [h for h, _ in await _unfinished(database)]


async def _unfinished(database: Database) -> list[tuple[str, str]]:
    async with database.transaction() as session:
        return await service.unfinished_exports(session)


async def test_platform_credentials_are_rotated(
    client: httpx.AsyncClient, owner: Account, database: Database, settings: Settings
) -> None:
    created = await add_account(
        client,
        owner,
        "instantly",
        "http://127.0.0.1:9",
        verify=False,
        email="me@x.test",
        password="login-pw-9",
    )
    rotated = Keyring([("rotated", generate_key()), *settings.secret_keyring_entries()])
    counts = await reencrypt_all(database, rotated)
    assert counts["platform_accounts.api_key_enc"] == 1
    assert counts["platform_accounts.login_password_enc"] == 1
    async with database.transaction() as session:
        account = await session.get(PlatformAccount, created["id"])
        assert account is not None
        assert account.api_key_enc is not None
        assert account.login_password_enc is not None
        assert rotated.key_id_of(account.api_key_enc) == "rotated"
        assert rotated.decrypt(account.api_key_enc) == API_KEY
        assert rotated.decrypt(account.login_password_enc) == "login-pw-9"
