"""The console in a real browser: Debian's Chromium driven by Playwright against a
real `mailfleet serve`, with mail on the loopback SMTP/IMAP servers and DNS on a
loopback PowerDNS.

Each page's screenshot is saved under the test's output directory; with
MAILFLEET_CONSOLE_SCREENSHOTS=DIR they are also written to DIR: the README's
docs/console/*.png come from `MAILFLEET_CONSOLE_SCREENSHOTS=docs/console make
test-sqlite PYTEST_ARGS=tests/console/test_browser.py`.
"""

from __future__ import annotations

import asyncio
import imaplib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from aiosmtpd.smtp import Envelope
from playwright.async_api import Browser, Download, Page, async_playwright, expect

from mailfleet.console.context import SESSION_ONLY_PATHS
from tests.bulk.conftest import item, make_users
from tests.registrars.fakes import PORKBUN_KEY, PORKBUN_SECRET, FakePorkbun
from tests.servers.common import server_unavailable, unused_tcp_port
from tests.servers.dovecot import DovecotServer
from tests.servers.powerdns import PowerDnsServer
from tests.servers.powerdns import _binary as pdns_binary
from tests.servers.smtp import SmtpServer
from tests.test_cli import MAILFLEET, _clean_env

CHROMIUM = "/usr/bin/chromium"
OWNER = ("owner@console.test", "owner-password-1")
VIEWER = ("viewer@console.test", "viewer-password-1")
# Waiting for background work (a connection test, an import): generous, since the
# machine may be busy; never a measure of speed.
BACKGROUND_WAIT_MS = 60_000
T = TypeVar("T")


@dataclass
class Console:
    base: str
    api_key: str
    workspace_id: str
    second_workspace_id: str
    powerdns: PowerDnsServer | None

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}


def _api(console: Console, method: str, path: str, **kwargs: object) -> httpx.Response:
    response = httpx.request(
        method, console.base + path, headers=console.headers, timeout=30, **kwargs
    )
    assert response.status_code < 300, response.text
    return response


@asynccontextmanager
async def _in_thread(manager: AbstractContextManager[T]) -> AsyncIterator[T]:
    """Enter and leave a blocking context manager (starting servers, waiting for them)
    in a thread, so the session's event loop goes on running meanwhile."""
    value = await asyncio.to_thread(manager.__enter__)
    try:
        yield value
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


@contextmanager
def _no_powerdns() -> Iterator[None]:
    yield None


@pytest.fixture(scope="module")
async def powerdns() -> AsyncIterator[PowerDnsServer | None]:
    manager = _no_powerdns() if pdns_binary() is None else PowerDnsServer()
    async with _in_thread(manager) as server:
        yield server


@pytest.fixture(scope="module")
def porkbun() -> Iterator[FakePorkbun]:
    with FakePorkbun() as fake:
        yield fake


@pytest.fixture(scope="module")
async def console(
    tmp_path_factory: pytest.TempPathFactory,
    powerdns: PowerDnsServer | None,
    porkbun: FakePorkbun,
) -> AsyncIterator[Console]:
    directory = tmp_path_factory.mktemp("console-serve")
    async with _in_thread(_serve(directory, powerdns, porkbun)) as served:
        yield served


@contextmanager
def _serve(
    directory: Path, powerdns: PowerDnsServer | None, porkbun: FakePorkbun
) -> Iterator[Console]:
    """`mailfleet serve` on SQLite in a fresh directory, a bootstrapped owner with a
    second workspace, and a viewer of the owner's default workspace. Domains are
    bought from the fake Porkbun; forwarded domains point at a documentation address."""
    env = _clean_env(
        MAILFLEET_ALLOW_PRIVATE_NETWORKS="true",
        MAILFLEET_WORKER_ID="console-test",
        MAILFLEET_REGISTRAR="porkbun",
        MAILFLEET_PORKBUN_API_KEY=PORKBUN_KEY,
        MAILFLEET_PORKBUN_SECRET_KEY=PORKBUN_SECRET,
        MAILFLEET_PORKBUN_API_URL=porkbun.url,
        MAILFLEET_PUBLIC_IP="192.0.2.80",
        # A placement test reads its seeds every half second and gives up 5 s after
        # its last send (the form's timeout is in minutes, 5 at least).
        MAILFLEET_PLACEMENT_POLL_INTERVAL="0.5",
        MAILFLEET_PLACEMENT_TIMEOUT_SECONDS="5",
    )
    if powerdns is not None:
        env.update(
            MAILFLEET_DNS_NAMESERVERS=powerdns.nameserver,
            MAILFLEET_PDNS_API_URL=powerdns.api_url,
            MAILFLEET_PDNS_API_KEY=powerdns.api_key,
            MAILFLEET_NAMESERVERS="ns1.mailfleet.test,ns2.mailfleet.test",
        )
    boot = subprocess.run(
        [*MAILFLEET, "admin", "bootstrap", "--json", "--email", OWNER[0], "--password", OWNER[1]],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    credentials = json.loads(boot.stdout)
    port = unused_tcp_port()
    log = (directory / "serve.log").open("ab")
    process = subprocess.Popen(
        [*MAILFLEET, "serve", "--port", str(port)],
        cwd=directory,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/v1/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    "mailfleet serve did not start:\n"
                    + (directory / "serve.log").read_text(errors="replace")[-3000:]
                )
            time.sleep(0.2)
        console = Console(base, credentials["apiKey"], credentials["workspaceId"], "", powerdns)
        second = _api(console, "POST", "/v1/workspaces", json={"name": "Agency B"})
        console.second_workspace_id = second.json()["data"]["id"]
        _api(console, "POST", "/v1/users", json={"email": VIEWER[0], "password": VIEWER[1]})
        _api(
            console,
            "POST",
            f"/v1/workspaces/{console.workspace_id}/members",
            json={"email": VIEWER[0], "role": "viewer"},
        )
        yield console
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for these tests: Debian's, never a downloaded one. Playwright's
    async API, on the session's event loop: while a page loads, that loop goes on
    running the job engine and the in-process app the session launched in it."""
    if not os.access(CHROMIUM, os.X_OK):
        server_unavailable(
            "chromium not installed: apt-get install chromium (or scripts/install-test-servers.sh)"
        )
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser: Browser, console: Console) -> AsyncIterator[Page]:
    context = await browser.new_context(
        base_url=console.base, viewport={"width": 1280, "height": 860}
    )
    context.set_default_timeout(30_000)
    tab = await context.new_page()
    yield tab
    await context.close()


class Shots:
    """Screenshots: into the test's directory, and into a chosen one when asked."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        wanted = os.environ.get("MAILFLEET_CONSOLE_SCREENSHOTS")
        self.publish = Path(wanted) if wanted else None

    async def take(self, page: Page, name: str) -> None:
        path = self.directory / f"{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        if self.publish is not None:
            self.publish.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, self.publish / f"{name}.png")


@pytest.fixture
def shots(tmp_path: Path) -> Shots:
    return Shots(tmp_path)


async def _downloaded(download: Awaitable[Download]) -> str:
    path = await (await download).path()
    return await asyncio.to_thread(path.read_text)


async def sign_in(page: Page, email: str, password: str) -> None:
    await page.goto("/")
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.get_by_label("Email").fill(email)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def test_sign_in_add_a_mailbox_and_watch_it_turn_active(
    page: Page, console: Console, smtp_plain: SmtpServer, dovecot: DovecotServer, shots: Shots
) -> None:
    [(email, password)] = make_users(smtp_plain, dovecot, 1, domain="console.test")
    await page.goto("/")
    await shots.take(page, "login")
    await sign_in(page, *OWNER)

    await page.get_by_role("link", name="Mailboxes", exact=True).click()
    await page.get_by_role("link", name="Add a mailbox").click()
    await page.get_by_label("Email", exact=True).fill(email)
    await page.get_by_label("Display name").fill("Ana from the console")
    await page.get_by_label("SMTP host", exact=True).fill("127.0.0.1")
    await page.get_by_label("SMTP port", exact=True).fill(str(smtp_plain.port))
    await page.get_by_label("SMTP password", exact=True).fill(password)
    await page.get_by_label("Use TLS").first.uncheck()
    await page.get_by_label("IMAP host", exact=True).fill("127.0.0.1")
    await page.get_by_label("IMAP port", exact=True).fill(str(dovecot.port))
    await page.get_by_label("Use TLS").nth(1).uncheck()
    await page.get_by_role("button", name="Add and test").click()

    await expect(page.get_by_role("heading", name=email)).to_be_visible()
    # The status panel polls (htmx) until the background connection test is done.
    await expect(page.locator("#mailbox-status [data-status]")).to_have_text(
        "active", timeout=BACKGROUND_WAIT_MS
    )
    await expect(page.locator("#mailbox-status")).to_contain_text("SMTP")
    await shots.take(page, "mailbox")
    # The actions came with the status: an active mailbox can be paused.
    await page.get_by_role("button", name="Pause sending").click()
    await expect(page.locator("#mailbox-status [data-status]")).to_have_text("paused")
    await page.get_by_role("button", name="Resume sending").click()
    await expect(page.locator("#mailbox-status [data-status]")).to_have_text("active")
    # Warm it: on, ten a day at most.
    await page.get_by_label("Warm this mailbox").check()
    await page.get_by_label("Daily target").fill("10")
    await page.get_by_role("button", name="Save warmup").click()
    await expect(page.get_by_role("status")).to_have_text(f"Warmup on for {email}")
    await expect(page.get_by_label("Warm this mailbox")).to_be_checked()
    listed = _api(console, "GET", "/v1/mailboxes", params={"search": email}).json()["data"]
    assert [(m["email"], m["status"]) for m in listed] == [(email, "active")]
    warming = _api(console, "GET", f"/v1/mailboxes/{listed[0]['id']}/warmup").json()["data"]
    assert (warming["enabled"], warming["dailyTarget"]) == (True, 10)


async def test_import_a_csv_and_watch_the_progress_reach_the_end(
    page: Page,
    console: Console,
    smtp_plain: SmtpServer,
    dovecot: DovecotServer,
    shots: Shots,
    tmp_path: Path,
) -> None:
    users = make_users(smtp_plain, dovecot, 6, domain="import.console.test")
    rows = ["email,smtp_host,smtp_port,smtp_password,smtp_secure,imap_host,imap_port,imap_secure"]
    for email, password in users[:-1]:
        rows.append(
            f"{email},127.0.0.1,{smtp_plain.port},{password},false,127.0.0.1,{dovecot.port},false"
        )
    # One wrong password: the import reports it and goes on.
    rows.append(
        f"{users[-1][0]},127.0.0.1,{smtp_plain.port},wrong,false,127.0.0.1,{dovecot.port},false"
    )
    csv_file = tmp_path / "mailboxes.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    await sign_in(page, *OWNER)

    await page.goto("/mailboxes")
    await page.get_by_role("link", name="Import a CSV").click()
    await page.get_by_label("CSV file").set_input_files(str(csv_file))
    await page.get_by_role("button", name="Import").click()

    await expect(page.get_by_role("heading", name="Mailbox import")).to_be_visible()
    await expect(page.locator("[data-progress]")).to_have_text("6 / 6", timeout=BACKGROUND_WAIT_MS)
    await expect(page.locator("#import-progress [data-status]")).to_have_text("completed")
    await expect(page.locator('[data-count="connected"]')).to_have_text("5")
    await expect(page.locator('[data-count="failed"]')).to_have_text("1")
    await shots.take(page, "import")
    async with page.expect_download() as download:
        await page.get_by_role("link", name="Download the report (CSV)").click()
    report = await _downloaded(download.value)
    assert report.count("\n") == 7
    assert "AUTH_FAILED" in report

    # The list filters as you type (htmx swaps the table; the URL follows).
    await page.goto("/mailboxes")
    await page.get_by_label("Search").fill("import.console")
    summary = page.locator("#mailbox-table > p")
    # The failed row made no mailbox; it is in the report only.
    await expect(summary).to_have_text(re.compile(r"^5 mailboxes"))
    await expect(page.locator("#mailbox-table tbody tr")).to_have_count(5)
    await expect(page).to_have_url(re.compile(r"search=import\.console"))
    await page.get_by_label("Status").select_option("paused")
    await expect(summary).to_have_text("0 mailboxes")
    await page.get_by_label("Status").select_option("active")
    await expect(summary).to_have_text(re.compile(r"^5 mailboxes"))
    await shots.take(page, "mailboxes")


async def test_connect_a_domain_and_edit_a_dns_record(
    page: Page, console: Console, shots: Shots
) -> None:
    if console.powerdns is None:
        server_unavailable(
            "pdns_server not installed: apt-get install pdns-server pdns-backend-sqlite3"
        )
    powerdns = console.powerdns
    await sign_in(page, *OWNER)
    await page.get_by_role("link", name="Domains", exact=True).click()
    await page.get_by_label("Domain", exact=True).fill("console-demo.test")
    await page.get_by_label("DNS hosted by").select_option("mailfleet")
    await page.get_by_role("button", name="Connect").click()
    await expect(page.get_by_role("heading", name="console-demo.test")).to_be_visible()

    # The add form's fields (each record's row has its own Name and Content too).
    await page.locator("#new-type").select_option("TXT")
    await page.locator("#new-name").fill("hello")
    await page.locator("#new-content").fill("first-value")
    await page.get_by_role("button", name="Add", exact=True).click()
    await expect(page.get_by_role("status")).to_have_text("Record added")

    row = page.locator("tr", has=page.locator('input[value="first-value"]'))
    await row.get_by_label("Content").fill("edited-in-the-console")
    await row.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("status")).to_have_text("Record saved")
    zone = powerdns.api("GET", "/zones/console-demo.test.").json()
    txt = {
        rrset["name"]: [r["content"] for r in rrset["records"]]
        for rrset in zone["rrsets"]
        if rrset["type"] == "TXT"
    }
    assert txt["hello.console-demo.test."] == ['"edited-in-the-console"']

    await page.get_by_role("button", name="Check DNS now").click()
    await expect(page.get_by_role("status")).to_contain_text("DNS checked")
    await shots.take(page, "domain")
    await page.get_by_role("link", name="Domains", exact=True).click()
    await shots.take(page, "domains")


async def test_buy_a_domain_then_host_mail_and_forward_it(
    page: Page, console: Console, porkbun: FakePorkbun, shots: Shots
) -> None:
    if console.powerdns is None:
        server_unavailable(
            "pdns_server not installed: apt-get install pdns-server pdns-backend-sqlite3"
        )
    await sign_in(page, *OWNER)
    await page.get_by_role("link", name="Domains", exact=True).click()
    await page.get_by_role("link", name="Buy a domain").click()
    await page.get_by_label("Name").fill("browserbrand")
    await page.get_by_label("Endings").fill("com,io")
    await page.get_by_role("button", name="Search").click()
    await expect(page.locator('[data-result="browserbrand.io"] [data-price]')).to_have_text(
        "USD 28.12"
    )
    await page.get_by_label("Buy browserbrand.com").check()
    await page.get_by_label("Mail provider").select_option("self-hosted")
    await shots.take(page, "domain-buy")
    await page.get_by_role("button", name="Buy the ticked names").click()
    await expect(page.get_by_role("status")).to_have_text("Buying browserbrand.com")

    # The order's panel polls itself until the name is registered and connected.
    status = page.locator("[data-item-status]")
    await expect(status).to_have_text("connected", timeout=BACKGROUND_WAIT_MS)
    await expect(page.locator("[data-order-status]")).to_have_text("completed")
    assert len(porkbun.posts("/domain/create/browserbrand.com")) == 1
    await shots.take(page, "domain-order")

    await page.get_by_role("link", name="browserbrand.com").click()
    await expect(page.get_by_role("heading", name="browserbrand.com")).to_be_visible()
    await page.get_by_label("Username").fill("ana")
    await page.get_by_label("First name").fill("Ana")
    await page.get_by_role("button", name="Add mailbox").click()
    await expect(page.locator("[data-new-password]")).not_to_be_empty()
    await expect(page.locator("#hosted")).to_contain_text("ana@browserbrand.com")

    await page.get_by_label("Forward to").fill("https://www.example.com/")
    await page.get_by_role("button", name="Start forwarding").click()
    await expect(page.get_by_role("status")).to_contain_text(
        "now forwards to https://www.example.com/"
    )
    await page.get_by_role("button", name="Check propagation now").click()
    await expect(page.locator("[data-ns-status]")).to_have_text("propagated")
    await shots.take(page, "domain-hosted")


async def test_switch_workspace_then_sign_out(page: Page, console: Console, shots: Shots) -> None:
    await sign_in(page, *OWNER)
    await shots.take(page, "overview")
    await page.get_by_role("link", name="Exports", exact=True).click()
    await page.get_by_label("Status").select_option("active")
    async with page.expect_download() as download:
        await page.get_by_role("button", name="Export").click()
    exported = await _downloaded(download.value)
    assert exported.startswith("email,")
    await page.reload()
    await expect(page.locator("[data-export-status]").first).to_have_text("COMPLETED")
    await shots.take(page, "exports")
    await page.get_by_label("Workspace").select_option(console.second_workspace_id)
    await page.get_by_role("button", name="Switch").click()
    await expect(page.get_by_role("status")).to_have_text("Switched to Agency B")
    # The switch stays on the page it was made from; Agency B has no export yet.
    await expect(page.locator("#export-history")).to_contain_text("No export yet")
    await page.get_by_role("link", name="Overview", exact=True).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Agency B")
    await page.get_by_role("link", name="Mailboxes", exact=True).click()
    await expect(page.locator("#mailbox-table")).to_contain_text("0 mailboxes")
    await page.get_by_role("link", name="Keys & members").click()
    await shots.take(page, "settings")

    await page.get_by_role("button", name="Sign out").click()
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.goto("/mailboxes")
    await expect(page).to_have_url(re.compile(r"/login\?next=%2Fmailboxes$"))


async def test_a_viewer_sees_no_write_controls_and_a_forged_post_is_refused(
    page: Page, console: Console
) -> None:
    mailbox = _api(console, "GET", "/v1/mailboxes", params={"limit": 1}).json()["data"]
    await sign_in(page, *VIEWER)
    await page.get_by_label("Workspace").select_option(console.workspace_id)
    await page.get_by_role("button", name="Switch").click()
    await expect(page.locator("[data-role]")).to_have_text("viewer")

    paths = ["/", "/mailboxes", "/domains", "/exports", "/webhooks", "/settings"]
    paths += [f"/mailboxes/{m['id']}" for m in mailbox]
    paths += ["/domains/buy?query=viewerbrand", "/domains/orders"]
    domains = _api(console, "GET", "/v1/domains", params={"limit": 5}).json()["data"]
    paths += [f"/domains/{d['id']}" for d in domains]
    for path in paths:
        await page.goto(path)
        actions = await page.locator('form[method="post"]').evaluate_all(
            "forms => forms.map(f => f.getAttribute('action'))"
        )
        # Only the viewer's own session: switching, signing out, their password.
        assert set(actions) <= SESSION_ONLY_PATHS, (path, actions)
        for name in ("Add a mailbox", "Import a CSV", "Connect", "Delete", "Create a key", "Buy"):
            await expect(page.get_by_role("button", name=name)).to_have_count(0)
            await expect(page.get_by_role("link", name=name)).to_have_count(0)

    # A forged write with the viewer's own valid session and token: refused by role.
    token = await page.locator('input[name="csrf_token"]').first.get_attribute("value")
    assert token
    target = mailbox[0]["id"] if mailbox else "none"
    forged = await page.request.post(f"/mailboxes/{target}/delete", form={"csrf_token": token})
    assert forged.status == 403
    # And a write without the session's token (another site's form): refused too.
    cross_site = await page.request.post("/domains", form={"domain": "forged.test"})
    assert cross_site.status == 403
    if mailbox:
        _api(console, "GET", f"/v1/mailboxes/{target}")


def _seed_network(
    smtp: SmtpServer, dovecot: DovecotServer, boxes: dict[str, str], junk: str
) -> None:
    """Mail through `smtp` reaches its recipients' Dovecot mailboxes: each message is
    appended to the recipient's INBOX, or to Junk for `junk` (read by name as spam)."""

    def deliver(envelope: Envelope) -> None:
        message = envelope.original_content or b""
        for recipient in envelope.rcpt_tos:
            if recipient not in boxes:
                continue
            folder = "Junk" if recipient == junk else "INBOX"
            with imaplib.IMAP4("127.0.0.1", dovecot.port) as imap:
                imap.login(recipient, boxes[recipient])
                imap.create(folder)  # NO when it is there already
                status, _ = imap.append(folder, "", None, message)
                assert status == "OK"

    smtp.deliver = deliver


def _active(console: Console, mailbox_ids: list[str]) -> None:
    deadline = time.monotonic() + BACKGROUND_WAIT_MS / 1000
    while True:
        statuses = [
            _api(console, "GET", f"/v1/mailboxes/{mailbox_id}").json()["data"]["status"]
            for mailbox_id in mailbox_ids
        ]
        if all(status == "active" for status in statuses):
            return
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)


async def test_start_a_placement_test_and_follow_it_to_its_results(
    page: Page, console: Console, smtp_plain: SmtpServer, dovecot: DovecotServer, shots: Shots
) -> None:
    users = make_users(smtp_plain, dovecot, 3, domain="placement.test")
    (sender, _), (inbox_seed, _), (junk_seed, _) = users
    ids = []
    for email, password in users:
        created = _api(
            console, "POST", "/v1/mailboxes", json=item(email, password, smtp_plain, dovecot)
        )
        ids.append(created.json()["data"]["id"])
    await asyncio.to_thread(_active, console, ids)
    for seed_id in ids[1:]:
        _api(console, "PUT", f"/v1/mailboxes/{seed_id}", json={"placementSeed": True})
    _seed_network(smtp_plain, dovecot, dict(users), junk_seed)
    try:
        await sign_in(page, *OWNER)
        await page.get_by_role("link", name="Placement", exact=True).click()
        await page.get_by_role("link", name="Start a placement test").click()
        await page.get_by_label("Name").fill("Browser placement")
        await page.get_by_label("Subject").fill("Quarterly numbers")
        await page.get_by_label("Message").fill("Hello, here are the numbers.")
        await page.get_by_label(sender).check()
        # No seed ticked: every active seed of the workspace.
        await expect(page.get_by_label(inbox_seed)).not_to_be_checked()
        await page.get_by_role("button", name="Start the test").click()

        await expect(page.get_by_role("heading", name="Browser placement")).to_be_visible()
        # The results poll (htmx) until the test completes: both seeds were read.
        await expect(page.locator("[data-test-status]")).to_have_text(
            "completed", timeout=BACKGROUND_WAIT_MS
        )
        # One copy in the first seed's INBOX, the other in the second's Junk.
        by_provider = page.locator("#placement-results table").first.locator("tbody td")
        await expect(by_provider).to_have_text(["2", "1 (50.0%)", "1 (50.0%)", "0", "0", "0", "0"])
        await expect(page.locator("#placement-results")).to_contain_text(sender)
        await shots.take(page, "placement")
    finally:
        smtp_plain.deliver = None
    [test] = _api(console, "GET", "/v1/placement-tests").json()["data"]
    assert test["name"] == "Browser placement"
    assert test["status"] == "completed"
