"""The CLI and a real `mailfleet serve` process on a loopback port."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailfleet.config import Settings
from tests.mailboxes.test_mailboxes_api import (
    SEED_EXAMPLE,
    SEED_RESPONSE_KEYS,
    mailbox_body,
    new_user,
)
from tests.servers.common import unused_tcp_port
from tests.servers.dnsserver import LocalDnsServer
from tests.servers.dovecot import DovecotServer
from tests.servers.smtp import SmtpServer

ROOT = Path(__file__).resolve().parents[1]
MAILFLEET = [sys.executable, "-m", "mailfleet.cli"]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILFLEET_")}
    env.update(extra)
    return env


@pytest.fixture
def served(tmp_path: Path, dns_names: LocalDnsServer) -> Iterator[tuple[str, dict[str, str]]]:
    """`mailfleet serve` in an empty directory, configured only so that the mail
    servers it tests are the loopback ones (private networks allowed, names
    resolved by the test DNS server)."""
    env = _clean_env(
        MAILFLEET_DNS_NAMESERVERS=dns_names.nameserver, MAILFLEET_ALLOW_PRIVATE_NETWORKS="true"
    )
    boot = subprocess.run(
        [
            *MAILFLEET,
            "admin",
            "bootstrap",
            "--email",
            "admin@example.test",
            "--password",
            "correct-horse",
            "--json",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    credentials = json.loads(boot.stdout)
    port = unused_tcp_port()
    process = subprocess.Popen(
        [*MAILFLEET, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{base}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            output = process.stdout.read().decode() if process.stdout else ""
            raise AssertionError(f"mailfleet serve did not start:\n{output[-3000:]}")
        time.sleep(0.2)
    credentials["secretsToCheck"] = ""
    try:
        yield base, credentials
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log = process.stdout.read().decode() if process.stdout else ""
        # Secrets never reach a log line.
        for secret in [
            credentials["apiKey"],
            "correct-horse",
            *credentials["secretsToCheck"].split(),
        ]:
            assert secret not in log


def test_serve_with_no_configuration(served: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, credentials = served
    assert {"userId", "workspaceId", "apiKey"} <= set(credentials)
    assert credentials["apiKey"].startswith("mf_user_")
    assert httpx.get(f"{base}/docs", timeout=30).status_code == 200
    spec = httpx.get(f"{base}/openapi.json", timeout=30).json()
    assert "/v1/users/me" in spec["paths"]
    for headers in (
        {"x-api-key": credentials["apiKey"]},
        {"Authorization": f"Bearer {credentials['apiKey']}"},
    ):
        me = httpx.get(f"{base}/v1/users/me", headers=headers)
        assert me.status_code == 200
        assert me.json()["data"]["id"] == credentials["userId"]
    data = tmp_path / "mailfleet-data"
    assert (data / "mailfleet.db").exists()
    for secret_file in ("secret.keys", "jwt.secret"):
        assert (data / secret_file).stat().st_mode & 0o777 == 0o600


def _poll_test(base: str, headers: dict[str, str], mailbox_id: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while True:
        result = httpx.get(f"{base}/v1/mailboxes/{mailbox_id}/connection-test", headers=headers)
        data: dict[str, object] = result.json()["data"]
        if data["status"] != "pending":
            return data
        assert time.monotonic() < deadline, data
        time.sleep(0.2)


def test_served_mailbox_verification(
    served: tuple[str, dict[str, str]], smtp_plain: SmtpServer, dovecot: DovecotServer
) -> None:
    """The seed's example verbatim against a real server, then a good mailbox."""
    base, credentials = served
    headers = {"X-Api-Key": credentials["apiKey"]}
    seed = httpx.post(f"{base}/v1/mailboxes", json=SEED_EXAMPLE, headers=headers)
    assert seed.status_code == 201, seed.text
    assert set(seed.json()["data"]) >= SEED_RESPONSE_KEYS
    failed = _poll_test(base, headers, seed.json()["data"]["_id"])
    assert failed["status"] == "failed"
    assert failed["mailboxDeleted"] is True

    email, password = new_user(smtp_plain, dovecot)
    credentials["secretsToCheck"] = f"{password} app-password-here"
    good = httpx.post(
        f"{base}/v1/mailboxes",
        json=mailbox_body(email, password, smtp_plain, dovecot),
        headers=headers,
    )
    assert _poll_test(base, headers, good.json()["data"]["_id"])["status"] == "success"
    active = httpx.get(f"{base}/v1/mailboxes?status=active", headers=headers).json()
    assert [m["email"] for m in active["data"]] == [email]


def test_production_refuses_generated_secrets(tmp_path: Path) -> None:
    result = subprocess.run(
        [*MAILFLEET, "migrate"],
        cwd=tmp_path,
        env=_clean_env(MAILFLEET_ENV="production"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MAILFLEET_SECRET_KEYS is required in production" in result.stderr
    assert not (tmp_path / "mailfleet-data").exists(), "nothing generated in production"


def test_keys_generate_output_is_accepted_by_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [*MAILFLEET, "keys", "generate"], capture_output=True, text=True, timeout=60, check=True
    )
    entry = result.stdout.strip()
    settings = Settings(secret_keys=entry, data_dir=tmp_path)
    assert len(settings.secret_keyring_entries()) == 1


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_every_setting_is_documented() -> None:
    readme = _readme()
    missing = [
        f"MAILFLEET_{name.upper()}"
        for name in Settings.model_fields
        if f"MAILFLEET_{name.upper()}" not in readme
    ]
    assert not missing, f"settings missing from README.md: {missing}"


def test_every_command_is_documented() -> None:
    from typer.main import get_command

    from mailfleet.cli import app

    readme = _readme()
    root = get_command(app)
    missing = []
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        names = [f"{name} {sub}" for sub in subcommands] if subcommands else [name]
        missing += [n for n in names if not re.search(rf"mailfleet {re.escape(n)}\b", readme)]
    assert not missing, f"commands missing from README.md: {missing}"
