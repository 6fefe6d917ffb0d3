"""A private PostgreSQL server for the test session, from initdb/pg_ctl on PATH."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.servers.common import server_unavailable, unused_tcp_port


class PostgresServer:
    def __init__(self) -> None:
        self.port = unused_tcp_port()
        self.dir = Path(tempfile.mkdtemp(prefix="mailfleet-pg-"))
        self.data = self.dir / "data"
        # PostgreSQL refuses to run as root; run it as an ordinary user.
        self.run_as: list[str] = []
        if os.geteuid() == 0:
            user = "postgres" if _user_exists("postgres") else "nobody"
            shutil.chown(self.dir, user)
            self.run_as = ["runuser", "-u", user, "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self.run_as, *args], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> None:
        if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
            server_unavailable("PostgreSQL binaries not on PATH: apt-get install postgresql")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "pg.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        subprocess.run(
            [*self.run_as, "pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            cwd=self.dir,
            check=False,
        )
        shutil.rmtree(self.dir, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
