"""`mailfleet mailserver ...`: the hosted mail server (Postfix + Dovecot + DKIM signing)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from mailfleet.config import Settings, SettingsError, get_settings

mailserver_app = typer.Typer(
    help="The mail server of self-hosted domains: Postfix and Dovecot reading Mailfleet's "
    "database.",
    no_args_is_help=True,
)


def _settings() -> Settings:
    try:
        settings = get_settings()
        settings.check_startup()
    except SettingsError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    return settings


@mailserver_app.command("config")
def write_system_config(
    out: Annotated[Path, typer.Option("--out", help="Directory to write postfix/ and dovecot/")],
    listen: Annotated[str | None, typer.Option(help="Address to listen on [all]")] = None,
) -> None:
    """Write Postfix and Dovecot configuration for a system install (Debian's services)."""
    from mailfleet.mailserver.config import config_from_settings, write_config

    settings = _settings()
    try:
        config = config_from_settings(settings, out.resolve(), listen=listen)
    except SettingsError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    for path in write_config(config):
        typer.echo(str(path))
    typer.echo(
        f"DKIM signing: run `mailfleet mailserver dkim-filter` (listens on 127.0.0.1:"
        f"{config.filter_port}); mail storage: {config.storage} owned by {config.mail_user}",
        err=True,
    )


@mailserver_app.command("run")
def run(
    listen: Annotated[str | None, typer.Option(help="Address to listen on [0.0.0.0]")] = None,
    smtp_port: Annotated[int | None, typer.Option(help="Inbound SMTP [25]")] = None,
    submission_port: Annotated[int | None, typer.Option(help="Submission, STARTTLS [587]")] = None,
    smtps_port: Annotated[int | None, typer.Option(help="Submission, implicit TLS [465]")] = None,
    imap_port: Annotated[int | None, typer.Option(help="IMAP, STARTTLS [143]")] = None,
    imaps_port: Annotated[int | None, typer.Option(help="IMAP, implicit TLS [993]")] = None,
) -> None:
    """Run Postfix, Dovecot and DKIM signing in the foreground until Ctrl-C or SIGTERM."""
    from mailfleet.logconfig import configure_logging
    from mailfleet.mailserver.config import Ports
    from mailfleet.mailserver.runner import (
        EmbeddedMailServer,
        MailServerError,
        RunOptions,
        run_until_stopped,
    )

    settings = _settings()
    configure_logging(settings.log_level)
    ports = Ports(
        smtp=smtp_port or settings.mail_smtp_port,
        submission=submission_port or settings.mail_submission_port,
        smtps=smtps_port or settings.mail_smtps_port,
        imap=imap_port or settings.mail_imap_port,
        imaps=imaps_port or settings.mail_imaps_port,
    )
    server = EmbeddedMailServer(settings, RunOptions(listen=listen, ports=ports))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_until_stopped(server, stop)

    try:
        asyncio.run(main())
    except (MailServerError, SettingsError) as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


@mailserver_app.command("dkim-filter")
def dkim_filter() -> None:
    """Only the DKIM signing filter, for a system install whose Postfix and Dovecot run
    as Debian's services (`mailfleet mailserver config`)."""
    from mailfleet.db import Database
    from mailfleet.kit.crypto import Keyring
    from mailfleet.logconfig import configure_logging
    from mailfleet.mailserver.dkimfilter import start_filter

    settings = _settings()
    configure_logging(settings.log_level)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        database = Database.from_settings(settings)
        keyring = Keyring(settings.secret_keyring_entries())
        server = await start_filter(
            database, keyring, settings.mail_dkim_filter_port, settings.mail_reinject_port
        )
        typer.echo(f"DKIM filter on 127.0.0.1:{settings.mail_dkim_filter_port}", err=True)
        await stop.wait()
        server.close()
        await database.dispose()

    asyncio.run(main())
