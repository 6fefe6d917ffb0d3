"""The hosted-mail API's answers to bad input, and the configuration it writes.
No mail server needed: these check what is refused and what reaches the database."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
from sqlalchemy import func, select
from typer.testing import CliRunner

from mailfleet.db import Database
from mailfleet.kit.clock import utcnow
from mailfleet.kit.crypto import Keyring
from mailfleet.mailserver.passwords import verify_dovecot_hash
from mailfleet.models import Mailbox
from tests.conftest import Account, HeldMailbox
from tests.mailserver.conftest import connect_domain


async def mailbox_count(database: Database) -> int:
    async with database.transaction() as session:
        return await session.scalar(select(func.count()).select_from(Mailbox)) or 0


async def test_bad_input_is_refused_and_creates_nothing(
    client: httpx.AsyncClient, owner: Account, database: Database
) -> None:
    domain = await connect_domain(client, owner, "refuse-hosted.test")
    url = f"/v1/domains/{domain['id']}/mailboxes"
    good = {"username": "ann", "firstName": "Ann"}

    response = await client.post(
        url,
        json={"mailboxes": [good, {"username": "not valid@", "firstName": "X"}]},
        headers=owner.headers,
    )
    assert response.status_code == 400, response.text
    fields = [detail["field"] for detail in response.json()["error"]["details"]]
    assert fields == ["mailboxes.1.username"]

    response = await client.post(
        url,
        json={"mailboxes": [{"username": f"u{i}", "firstName": "U"} for i in range(1001)]},
        headers=owner.headers,
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "mailboxes"
    assert await mailbox_count(database) == 0

    # A duplicate fails alone: the rest of the batch is created.
    response = await client.post(
        url,
        json={
            "mailboxes": [good, {"username": "ANN", "firstName": "Ann"}, {**good, "username": "bo"}]
        },
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["summary"] == {"total": 3, "created": 2, "failed": 1}
    assert [result["status"] for result in data["results"]] == ["created", "failed", "created"]
    assert data["results"][1]["error"]["code"] == "CONFLICT"
    response = await client.post(url, json=good, headers=owner.headers)
    assert response.status_code == 409

    # The stored hash is one Dovecot verifies; the password itself is only in the answer.
    async with database.transaction() as session:
        stored = await session.scalar(select(Mailbox).where(Mailbox.email.like("ann@%")))
    assert stored is not None
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("{ARGON2ID}$argon2id$")
    assert verify_dovecot_hash(stored.password_hash, data["results"][0]["password"])

    # A hosted mailbox's servers are Mailfleet's; its password changes through the hash too.
    response = await client.put(
        f"/v1/mailboxes/{stored.id}",
        json={"smtp": {"password": "other-password-1"}},
        headers=owner.headers,
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "smtp"

    # Routing that would loop is refused, naming the field.
    response = await client.post(
        f"/v1/domains/{domain['id']}/catch-all",
        json={"destination": "nobody@refuse-hosted.test"},
        headers=owner.headers,
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "destination"
    response = await client.post(
        f"/v1/domains/{domain['id']}/email-forwarding",
        json={"forwardTo": "ann@refuse-hosted.test"},
        headers=owner.headers,
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "forwardTo"
    bo = data["results"][2]
    response = await client.post(
        f"/v1/domains/{domain['id']}/email-forwarding",
        json={"forwardTo": "ann@refuse-hosted.test", "mailboxIds": [bo["mailboxId"]]},
        headers=owner.headers,
    )
    assert response.status_code == 200, response.text
    response = await client.post(
        f"/v1/domains/{domain['id']}/email-forwarding",
        json={"forwardTo": bo["email"], "mailboxIds": [stored.id]},
        headers=owner.headers,
    )
    assert response.status_code == 400
    assert "loop" in response.json()["error"]["message"]
    response = await client.post(
        f"/v1/domains/{domain['id']}/email-forwarding",
        json={"forwardTo": "not an address"},
        headers=owner.headers,
    )
    assert response.status_code == 400

    # Only self-hosted domains host mailboxes.
    response = await client.post(
        "/v1/domains/connect",
        json={"domain": "google-hosted.test", "dnsProvider": "manual", "mailProvider": "google"},
        headers=owner.headers,
    )
    google = response.json()["data"][0]
    response = await client.post(
        f"/v1/domains/{google['id']}/mailboxes", json=good, headers=owner.headers
    )
    assert response.status_code == 409
    assert response.json()["error"]["reason"] == "DOMAIN_NOT_SELF_HOSTED"
    assert await mailbox_count(database) == 2


async def test_hosted_fields_refused_on_connected_mailbox(
    client: httpx.AsyncClient, owner: Account, held_mailbox: HeldMailbox
) -> None:
    mailbox_id = await held_mailbox(owner.workspace_id, "joe@elsewhere.test")
    response = await client.put(
        f"/v1/mailboxes/{mailbox_id}", json={"resetPassword": True}, headers=owner.headers
    )
    assert response.status_code == 400
    assert response.json()["error"]["details"][0]["field"] == "resetPassword"


def test_config_command_writes_secrets_only_to_0600_files(tmp_path: Path) -> None:
    from mailfleet.cli import app
    from mailfleet.config import get_settings

    env = {
        "MAILFLEET_DATA_DIR": str(tmp_path / "data"),
        "MAILFLEET_DATABASE_URL": "postgresql://mailuser:s3cret-pw@db.internal:6543/mailfleet",
        "MAILFLEET_MAIL_HOSTNAME": "mx.example.test",
        "MAILFLEET_SECRET_KEYS": "k1:" + "A" * 43 + "=",
        "MAILFLEET_JWT_SECRET": "j" * 40,
    }
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["mailserver", "config", "--out", str(tmp_path / "etc")], env=env
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    written = [Path(line) for line in result.stdout.split() if line.startswith("/")]
    assert {path.name for path in written} >= {
        "main.cf",
        "master.cf",
        "dovecot.conf",
        "sql.conf.ext",
        "sql-aliases.cf",
    }
    for path in written:
        mode = stat.S_IMODE(path.stat().st_mode)
        holds_secret = "s3cret-pw" in path.read_text()
        assert holds_secret == path.name.startswith("sql"), path
        assert mode == (0o600 if holds_secret else 0o644), (path, oct(mode))
    main_cf = (tmp_path / "etc" / "postfix" / "main.cf").read_text()
    assert "virtual_alias_maps = proxy:pgsql:" in main_cf
    assert "myhostname = mx.example.test" in main_cf


async def test_purge_removes_only_mail_past_its_retention(
    database: Database, tmp_path: Path
) -> None:
    from datetime import timedelta

    from mailfleet.kit.clock import utcnow
    from mailfleet.mailserver.storage import purge_due_mail
    from mailfleet.models import MailPurge

    due, kept = tmp_path / "a.test" / "due-id", tmp_path / "a.test" / "kept-id"
    for maildir in (due, kept):
        (maildir / "Maildir" / "cur").mkdir(parents=True)
    async with database.transaction() as session:
        for maildir, when in ((due, -1), (kept, 1)):
            session.add(
                MailPurge(
                    workspace_id="ws",
                    email=f"{maildir.name}@a.test",
                    maildir=f"a.test/{maildir.name}",
                    purge_after=utcnow() + timedelta(days=when),
                )
            )
        # A row naming a path outside the storage is dropped without touching it.
        session.add(
            MailPurge(
                workspace_id="ws", email="x@a.test", maildir="../outside", purge_after=utcnow()
            )
        )
    (tmp_path.parent / "outside").mkdir(exist_ok=True)
    async with database.transaction() as session:
        assert await purge_due_mail(session, tmp_path) == 2
    assert not due.exists()
    assert kept.exists()
    assert (tmp_path.parent / "outside").exists()
    async with database.transaction() as session:
        left = list(await session.scalars(select(MailPurge.email)))
    assert left == ["kept-id@a.test"]


async def test_signing_uses_the_active_key_read_at_signing_time(
    client: httpx.AsyncClient, owner: Account, database: Database, keyring: Keyring
) -> None:
    import dkim

    from mailfleet.dns.records import generate_dkim_key
    from mailfleet.mailserver.dkimfilter import from_domain, sign_message
    from mailfleet.mailserver.service import signing_key
    from mailfleet.models import DkimKey

    domain = await connect_domain(client, owner, "sign-hosted.test")
    raw = b"From: Ann <ann@sign-hosted.test>\r\nTo: x@y.test\r\nSubject: hi\r\n\r\nbody\r\n"
    assert from_domain(raw, "") == "sign-hosted.test"
    private_pem, public_key = generate_dkim_key()
    async with database.transaction() as session:
        first = await signing_key(session, keyring, "sign-hosted.test")
        session.add(
            DkimKey(
                domain_id=domain["id"],
                selector="mfnext",
                public_key=public_key,
                private_key_enc=keyring.encrypt(private_pem),
                status="pending",
            )
        )
    assert first is not None
    assert first.selector.startswith("mf")
    # A pending key (not yet published) never signs; once active it signs the next message.
    async with database.transaction() as session:
        assert (await signing_key(session, keyring, "sign-hosted.test")) == first
        for key in await session.scalars(select(DkimKey)):
            key.status = "active" if key.selector == "mfnext" else "retired"
            key.activated_at = utcnow()
    async with database.transaction() as session:
        current = await signing_key(session, keyring, "sign-hosted.test")
    assert current is not None
    assert current.selector == "mfnext"
    signed = sign_message(raw, current)
    record = f"v=DKIM1; k=rsa; p={public_key}".encode()
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: record)
    async with database.transaction() as session:
        assert await signing_key(session, keyring, "other.test") is None
