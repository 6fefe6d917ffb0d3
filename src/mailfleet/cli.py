"""The `mailfleet` command. With no subcommand it serves, like `mailfleet serve`."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from mailfleet import __version__
from mailfleet.billing.cli import billing_app
from mailfleet.config import Settings, SettingsError, get_settings
from mailfleet.mailserver.cli import mailserver_app

app = typer.Typer(
    help="Mailfleet: self-hosted control plane for cold-email inbox infrastructure.",
    no_args_is_help=False,
    add_completion=False,
)
admin_app = typer.Typer(help="Administration: first user, accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Keys that encrypt secrets at rest.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(keys_app, name="keys")
mailboxes_app = typer.Typer(
    help="Mailboxes, through the HTTP API of any Mailfleet server.", no_args_is_help=True
)
app.add_typer(mailboxes_app, name="mailboxes")
app.add_typer(billing_app, name="billing")
app.add_typer(mailserver_app, name="mailserver")


def _settings() -> Settings:
    try:
        settings = get_settings()
        settings.check_startup()
    except SettingsError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    return settings


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        serve()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on [127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on [8000]")] = None,
) -> None:
    """Serve the API and run the background workers in one process."""
    import uvicorn

    from mailfleet.app import create_app

    settings = _settings()
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        # Mailfleet logs one access line per request itself, with its request id.
        access_log=False,
        proxy_headers=True,
        # Named rather than "auto", so a missing one fails the start instead of
        # quietly costing every request more CPU.
        loop="uvloop",
        http="httptools",
    )


@app.command()
def worker(
    health_port: Annotated[
        int | None,
        typer.Option(
            help="Serve GET /health, /health/ready and /metrics on this port "
            "(for probes and Prometheus)",
            show_default=False,
        ),
    ] = None,
    health_host: Annotated[
        str, typer.Option(help="Address the health port listens on")
    ] = "127.0.0.1",
) -> None:
    """Run background workers only (no HTTP). Start as many as you like on one PostgreSQL."""
    from mailfleet import runtime
    from mailfleet.health import serve_worker_health
    from mailfleet.kit import loops
    from mailfleet.logconfig import configure_logging

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)

    async def run() -> None:
        current = await runtime.start(settings, launch_jobs=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        server = None
        if health_port is not None:
            server = await serve_worker_health(health_host, health_port, current.database, settings)
            typer.echo(f"health on http://{health_host}:{health_port}/health/ready", err=True)
        typer.echo("mailfleet worker running; Ctrl-C to stop", err=True)
        await stop.wait()
        if server is not None:
            server.close()
            await server.wait_closed()
        await runtime.stop(current, jobs_launched=True)

    loops.run(run())


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema to the newest version."""
    from mailfleet.db import Database
    from mailfleet.migrate import upgrade_database

    settings = _settings()

    async def run() -> str:
        database = Database.from_settings(settings)
        try:
            return (await upgrade_database(database)).describe()
        finally:
            await database.dispose()

    typer.echo(asyncio.run(run()))


@admin_app.command("bootstrap")
def bootstrap(
    email: Annotated[str, typer.Option(help="The first user's email")],
    password: Annotated[
        str | None,
        typer.Option(
            help="Their password, 8+ characters. Omitted: asked for (twice) on a terminal, "
            "or read from the first line of standard input",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Create this superuser even though users exist already "
            "(without it, bootstrap refuses once anyone exists)",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """Create the first user (a superuser), their default workspace and a user API key
    (printed once). Refuses when users exist, unless --force."""
    from mailfleet.accounts import service as accounts
    from mailfleet.db import Database
    from mailfleet.kit.errors import MailfleetError
    from mailfleet.migrate import upgrade_database

    settings = _settings()
    if password is None:
        password = _read_password()
    if len(password) < 8:
        typer.secho("error: the password needs at least 8 characters", fg="red", err=True)
        raise typer.Exit(2)

    async def run() -> accounts.Bootstrap:
        database = Database.from_settings(settings)
        try:
            await upgrade_database(database)
            async with database.transaction() as session:
                return await accounts.bootstrap(
                    session, email=email, password=password, force=force
                )
        finally:
            await database.dispose()

    try:
        result = asyncio.run(run())
    except MailfleetError as exc:
        typer.secho(f"error: {exc.message}", fg="red", err=True)
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "userId": result.user.id,
                    "workspaceId": result.workspace.id,
                    "apiKey": result.api_key,
                }
            )
        )
        return
    typer.echo(f"user       {result.user.email} ({result.user.id})")
    typer.echo(f"workspace  {result.workspace.name} ({result.workspace.id})")
    typer.echo(f"API key    {result.api_key}")
    typer.echo("Store the key now: it is not shown again.")


def _read_password() -> str:
    """Ask on a terminal; otherwise take the first line of standard input, so a
    script can pipe a password in without it showing in the process list."""
    if sys.stdin is not None and sys.stdin.isatty():
        value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return value
    line = sys.stdin.readline() if sys.stdin is not None else ""
    if not line.strip():
        typer.secho(
            "error: no password: give --password, run on a terminal to be asked for it, "
            "or write it on standard input",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    return line.rstrip("\r\n")


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new secret key in MAILFLEET_SECRET_KEYS format (prepend it to rotate)."""
    from mailfleet.kit.crypto import format_secret_key, generate_key, new_key_id

    typer.echo(format_secret_key(new_key_id(), generate_key()))


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret under the newest key.

    With the embedded key file, a new key is generated and prepended first. With
    MAILFLEET_SECRET_KEYS, prepend a new key (`mailfleet keys generate`) to the
    variable, then run this; drop the old key once it reports nothing left.
    """
    from mailfleet.db import Database
    from mailfleet.keyrotation import reencrypt_all
    from mailfleet.kit.crypto import Keyring, add_key_to_file
    from mailfleet.migrate import upgrade_database

    settings = _settings()
    if not settings.secret_keys:
        new_id = add_key_to_file(settings.resolved_data_dir / "secret.keys")
        typer.echo(f"new key {new_id} added to {settings.resolved_data_dir / 'secret.keys'}")
    keyring = Keyring(settings.secret_keyring_entries())

    async def run() -> dict[str, int]:
        database = Database.from_settings(settings)
        try:
            await upgrade_database(database)
            return await reencrypt_all(database, keyring)
        finally:
            await database.dispose()

    counts = asyncio.run(run())
    total = sum(counts.values())
    for column, count in sorted(counts.items()):
        typer.echo(f"{column}: {count} re-encrypted")
    typer.echo(f"{total} secrets now under key {keyring.newest_key_id}")


@mailboxes_app.command("import")
def mailboxes_import(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="A CSV in Mailfleet's, Instantly's or Smartlead's column layout",
        ),
    ],
    workspace: Annotated[
        str | None, typer.Option(help="Workspace id (default: your key's workspace)")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Follow the job with a progress bar")
    ] = True,
    url: Annotated[
        str, typer.Option(envvar="MAILFLEET_URL", help="The Mailfleet server")
    ] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="MAILFLEET_API_KEY", help="An API key", show_default=False),
    ] = None,
    report: Annotated[
        Path | None,
        typer.Option(help="Where to save the report CSV [next to FILE]", dir_okay=False),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        typer.Option(help="Sending the same file again with this key finds the same job"),
    ] = None,
) -> None:
    """Connect every mailbox of a CSV file in one bulk job, and follow it to the end.

    Ctrl-C stops watching, not the job; it prints how to follow the job.
    """
    from rich.console import Console

    from mailfleet.bulk.importer import run_import

    if not api_key:
        typer.secho("error: give --api-key or set MAILFLEET_API_KEY", fg="red", err=True)
        raise typer.Exit(2)
    status = run_import(
        file,
        url=url,
        api_key=api_key,
        workspace=workspace,
        wait=wait,
        report=report,
        idempotency_key=idempotency_key,
        console=Console(),
    )
    raise typer.Exit(status)


def main() -> None:
    # Uvicorn installs its own signal handlers; keep Ctrl-C from tracebacks elsewhere.
    threading.current_thread().name = "mailfleet"
    app()


if __name__ == "__main__":
    main()
