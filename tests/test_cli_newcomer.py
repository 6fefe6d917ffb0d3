"""The newcomer's first commands, as a person runs them: bootstrap on a terminal
and in a script, migrate on an empty database, the first start's log."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import subprocess
import termios
import time
from pathlib import Path

from tests.test_cli import MAILFLEET, _clean_env


def _run(args: list[str], cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [*MAILFLEET, *args],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def _read_until(fd: int, marker: bytes, seen: bytearray) -> bytes:
    """Read the terminal until `marker` shows up (or the program closes it)."""
    deadline = time.monotonic() + 180
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the program exited and closed its side
            break
        if not chunk:
            break
        seen += chunk
    return bytes(seen)


def _type_when_hidden(fd: int, text: bytes) -> None:
    """Type once the program has turned the terminal's echo off, as a person
    would after the prompt: getpass discards what was typed before that."""
    deadline = time.monotonic() + 180
    while termios.tcgetattr(fd)[3] & termios.ECHO:
        assert time.monotonic() < deadline, "the password prompt never hid the input"
        time.sleep(0.05)
    os.write(fd, text)


def test_bootstrap_asks_for_the_password_on_a_terminal(tmp_path: Path) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*MAILFLEET, "admin", "bootstrap", "--email", "you@example.test", "--json"],
        cwd=tmp_path,
        env=_clean_env(),
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        # As a person's shell would: the terminal is the program's controlling
        # terminal, so getpass turns its echo off (otherwise it falls back to
        # stdin and warns, which is what this test is about).
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
    )
    os.close(terminal)
    seen = bytearray()
    try:
        assert b"Password:" in _read_until(controller, b"Password:", seen)
        _type_when_hidden(controller, b"correct-horse\n")
        assert b"confirmation" in _read_until(controller, b"confirmation", seen)
        _type_when_hidden(controller, b"correct-horse\n")
        output = _read_until(controller, b'"apiKey"', seen).decode()
        assert process.wait(timeout=60) == 0, output
    finally:
        if process.poll() is None:
            process.kill()
        os.close(controller)
    assert "correct-horse" not in output, "the password is not echoed"
    assert "GetPassWarning" not in output
    credentials = json.loads(output[output.index("{") : output.rindex("}") + 1])
    assert credentials["apiKey"].startswith("mf_user_")


def test_bootstrap_reads_a_piped_password_and_refuses_without_one(tmp_path: Path) -> None:
    empty = _run(["admin", "bootstrap", "--email", "you@example.test"], tmp_path, input="")
    assert empty.returncode == 2
    assert "no password" in empty.stderr
    assert "GetPassWarning" not in empty.stderr + empty.stdout

    piped = _run(
        ["admin", "bootstrap", "--email", "you@example.test", "--json"],
        tmp_path,
        input="correct-horse\n",
    )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["apiKey"].startswith("mf_user_")


def test_bootstrap_refuses_a_second_first_user_unless_forced(tmp_path: Path) -> None:
    args = ["admin", "bootstrap", "--password", "correct-horse", "--json", "--email"]
    first = _run([*args, "first@example.test"], tmp_path)
    assert first.returncode == 0, first.stderr
    second = _run([*args, "second@example.test"], tmp_path)
    assert second.returncode == 1
    assert "already has users" in second.stderr
    assert "--force" in second.stderr
    assert second.stdout == "", "no key was minted"
    forced = _run([*args, "second@example.test", "--force"], tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(forced.stdout)["userId"] != json.loads(first.stdout)["userId"]
    helped = _run(["admin", "bootstrap", "--help"], tmp_path)
    assert "--force" in helped.stdout


def test_migrate_says_it_created_the_schema(tmp_path: Path) -> None:
    created = _run(["migrate"], tmp_path)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("created the database schema (revision ")
    again = _run(["migrate"], tmp_path)
    assert again.stdout.startswith("the database schema is up to date (revision ")


def test_first_start_does_not_print_job_engine_migrations(tmp_path: Path) -> None:
    """A first `mailfleet worker` on an empty data directory, at the default level."""
    process = subprocess.Popen(
        [*MAILFLEET, "worker"],
        cwd=tmp_path,
        env=_clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if "mailfleet worker running" in line:
                break
        process.terminate()
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    log = "".join(lines)
    assert "mailfleet worker running" in log, log
    assert "Applying DBOS" not in log, log
    # DBOS's lines, if any, come in Mailfleet's one format (no second console format).
    assert "[    INFO]" not in log, log
    assert "created the database schema" in log
