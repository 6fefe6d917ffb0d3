"""A private PowerDNS authoritative server on loopback, with its HTTP API.

Started from Debian's pdns-server with the SQLite backend (pdns-backend-sqlite3),
in a temp dir, on free ports: DNS (UDP and TCP) on `dns_port`, the API on
`api_url`. Caches are off, so a record the API changes is served at once.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from tests.servers.common import server_unavailable

SCHEMA = Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql")
INSTALL = "apt-get install pdns-server pdns-backend-sqlite3 (or scripts/install-test-servers.sh)"


def _binary() -> str | None:
    found = shutil.which("pdns_server")
    if found:
        return found
    return "/usr/sbin/pdns_server" if os.access("/usr/sbin/pdns_server", os.X_OK) else None


def _free_udp_tcp_port() -> int:
    """A port free for both TCP and UDP, as a DNS server listens on both."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            with socket.socket() as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for UDP and TCP")


def _free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PowerDnsServer:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mailfleet-pdns-"))
        self.dns_port = _free_udp_tcp_port()
        self.api_port = _free_tcp_port()
        self.api_key = secrets.token_hex(16)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def nameserver(self) -> str:
        """The DNS address in the form `make_resolver` and MAILFLEET_DNS_NAMESERVERS take."""
        return f"127.0.0.1:{self.dns_port}"

    def start(self) -> None:
        binary = _binary()
        if binary is None or not SCHEMA.exists():
            server_unavailable(f"PowerDNS is not installed: {INSTALL}")
        assert binary is not None
        database = self.dir / "pdns.db"
        with sqlite3.connect(database) as connection:
            connection.executescript(SCHEMA.read_text())
        (self.dir / "pdns.conf").write_text(
            "\n".join(
                [
                    "launch=gsqlite3",
                    f"gsqlite3-database={database}",
                    "local-address=127.0.0.1",
                    f"local-port={self.dns_port}",
                    "api=yes",
                    f"api-key={self.api_key}",
                    "webserver=yes",
                    "webserver-address=127.0.0.1",
                    f"webserver-port={self.api_port}",
                    "webserver-allow-from=127.0.0.0/8",
                    "daemon=no",
                    "guardian=no",
                    f"socket-dir={self.dir}",
                    "disable-syslog=yes",
                    "loglevel=3",
                    # Tests change records and look them up at once.
                    "cache-ttl=0",
                    "negquery-cache-ttl=0",
                    "query-cache-ttl=0",
                    "zone-cache-refresh-interval=0",
                    "receiver-threads=1",
                    "distributor-threads=1",
                    "",
                ]
            )
        )
        # pdns may drop to its own user; it must be able to write the database.
        for path in (self.dir, database):
            path.chmod(0o777 if path.is_dir() else 0o666)
        self._log = (self.dir / "pdns.log").open("wb")
        self.process = subprocess.Popen(
            [binary, f"--config-dir={self.dir}"],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.dir,
        )
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"pdns_server exited:\n{self.log_tail()}")
            try:
                response = httpx.get(
                    f"{self.api_url}/api/v1/servers/localhost",
                    headers={"X-API-Key": self.api_key},
                    timeout=1,
                )
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pdns_server did not start:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self) -> str:
        path = self.dir / "pdns.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if hasattr(self, "_log"):
            self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PowerDnsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # The API, for tests that edit zones behind Mailfleet's back.

    def api(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.api_url}/api/v1/servers/localhost{path}",
            headers={"X-API-Key": self.api_key},
            timeout=10,
            **kwargs,  # type: ignore[arg-type]
        )

    def zones(self) -> list[str]:
        response = self.api("GET", "/zones")
        response.raise_for_status()
        return [str(zone["name"]).rstrip(".") for zone in response.json()]

    def delete_all_zones(self) -> None:
        for zone in self.zones():
            self.api("DELETE", f"/zones/{zone}.")

    def create_zone(self, name: str, rrsets: list[dict[str, object]] | None = None) -> None:
        response = self.api(
            "POST",
            "/zones",
            json={
                "name": f"{name}.",
                "kind": "Native",
                "nameservers": [f"ns1.{name}."],
                "rrsets": rrsets or [],
            },
        )
        response.raise_for_status()

    def replace(self, zone: str, name: str, rtype: str, contents: list[str]) -> None:
        """Set one rrset directly, as someone editing the zone outside Mailfleet would."""
        response = self.api(
            "PATCH",
            f"/zones/{zone}.",
            json={
                "rrsets": [
                    {
                        "name": f"{name}.",
                        "type": rtype,
                        "ttl": 300,
                        "changetype": "REPLACE",
                        "records": [{"content": c, "disabled": False} for c in contents],
                    }
                ]
            },
        )
        assert response.status_code == 204, response.text
