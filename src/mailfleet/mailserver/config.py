"""Postfix and Dovecot configuration that reads Mailfleet's database.

Every lookup (domains, mailboxes, aliases with forwarding and catch-all, sender
logins, passdb, userdb) is a one-line query on the views of migration 0009, on
SQLite or PostgreSQL, so what the API changes is seen at the next lookup: no
reload, no generated map files to keep in sync.

Two layouts: `embedded` (what `mailfleet mailserver run` starts from the data dir:
queue, logs and sockets in a private run dir) and a system install (`mailfleet
mailserver config --out DIR`, for Debian's postfix and dovecot services).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import make_url

from mailfleet.config import Settings, SettingsError


@dataclass(frozen=True)
class Ports:
    smtp: int = 25
    submission: int = 587
    smtps: int = 465
    imap: int = 143
    imaps: int = 993


@dataclass(frozen=True)
class DatabaseTarget:
    """Where the views live, as Postfix's and Dovecot's SQL drivers name it."""

    dialect: str  # "sqlite" or "pgsql"
    sqlite_path: Path | None = None
    host: str = ""
    port: int = 5432
    dbname: str = ""
    user: str = ""
    password: str = field(default="", repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> DatabaseTarget:
        url = make_url(settings.app_database_url)
        if url.get_backend_name() == "sqlite":
            if not url.database:
                raise SettingsError("the mail server needs a SQLite database file, not memory")
            return cls("sqlite", sqlite_path=Path(url.database).resolve())
        host = url.host or str(url.query.get("host") or "localhost")
        return cls(
            "pgsql",
            host=host,
            port=url.port or 5432,
            dbname=url.database or "",
            user=url.username or "",
            password=url.password or "",
        )


@dataclass(frozen=True)
class MailServerConfig:
    config_dir: Path
    hostname: str
    listen: str
    ports: Ports
    tls_cert: Path
    tls_key: Path
    storage: Path
    database: DatabaseTarget
    mail_user: str
    filter_port: int
    reinject_port: int
    relayhost: str | None = None
    # Embedded: the private dir for Postfix's queue, Dovecot's state, sockets and logs.
    run_dir: Path | None = None

    @property
    def postfix_dir(self) -> Path:
        return self.config_dir / "postfix"

    @property
    def dovecot_dir(self) -> Path:
        return self.config_dir / "dovecot"

    @property
    def socket_dir(self) -> Path:
        if self.run_dir is not None:
            return self.run_dir / "sockets"
        # Debian's Postfix looks for sockets under its queue directory.
        return Path("/var/spool/postfix/private")

    @property
    def lmtp_socket(self) -> Path:
        return self.socket_dir / "mailfleet-lmtp"

    @property
    def auth_socket(self) -> Path:
        return self.socket_dir / "mailfleet-auth"


# ------------------------------------------------------------------- queries

_POSTFIX_QUERIES = {
    "domains": "SELECT domain FROM mailserver_domains WHERE domain = '%s'",
    "mailboxes": "SELECT maildir FROM mailserver_mailboxes WHERE email = '%s'",
    "aliases": "SELECT goto FROM mailserver_aliases WHERE address = '%s'",
    # A login may send as its own address only.
    "senders": "SELECT email FROM mailserver_mailboxes WHERE email = '%s'",
}


def _postfix_map(config: MailServerConfig, name: str) -> str:
    db = config.database
    lines = []
    if db.dialect == "sqlite":
        lines.append(f"dbpath = {db.sqlite_path}")
    else:
        lines += [
            # A host that is a path is libpq's socket directory.
            f"hosts = unix:{db.host}"
            if db.host.startswith("/")
            else f"hosts = inet:{db.host}:{db.port}",
            f"dbname = {db.dbname}",
            f"user = {db.user}",
            f"password = {db.password}",
        ]
    lines.append(f"query = {_POSTFIX_QUERIES[name]}")
    return "\n".join(lines) + "\n"


def _map_ref(config: MailServerConfig, name: str) -> str:
    # proxy: one proxymap process holds the connections; it runs as root (master.cf)
    # so these files and the SQLite database can stay root-only.
    return f"proxy:{config.database.dialect}:{config.postfix_dir / f'sql-{name}.cf'}"


def _pg_conninfo(db: DatabaseTarget) -> str:
    def quoted(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    parts = [f"host={quoted(db.host)}", f"port={db.port}", f"dbname={quoted(db.dbname)}"]
    if db.user:
        parts.append(f"user={quoted(db.user)}")
    if db.password:
        parts.append(f"password={quoted(db.password)}")
    return " ".join(parts)


def dovecot_sql(config: MailServerConfig) -> str:
    db = config.database
    connect = str(db.sqlite_path) if db.dialect == "sqlite" else _pg_conninfo(db)
    storage = str(config.storage).replace("'", "''")
    # Only the storage setting goes into the query text; Dovecot escapes %u itself.
    user_query = (
        "SELECT '" + storage + "/' || maildir AS home, "
        "'*:bytes=' || quota_bytes AS quota_rule "
        "FROM mailserver_mailboxes WHERE email = '%u'"
    )
    return (
        f"driver = {db.dialect}\n"  # noqa: S608 - settings only; %u is escaped by Dovecot
        f"connect = {connect}\n"
        "default_pass_scheme = ARGON2ID\n"
        "password_query = SELECT email AS user, password FROM mailserver_mailboxes "
        "WHERE email = '%u'\n"
        f"user_query = {user_query}\n"
        "iterate_query = SELECT email AS user FROM mailserver_mailboxes\n"
    )


# ------------------------------------------------------------------- postfix


def _service(config: MailServerConfig, port: int) -> str:
    if config.listen in ("0.0.0.0", "*", ""):  # noqa: S104
        return str(port)
    return f"{config.listen}:{port}"


def postfix_main_cf(config: MailServerConfig) -> str:
    maps = {name: _map_ref(config, name) for name in _POSTFIX_QUERIES}
    embedded = ""
    if config.run_dir is not None:
        run = config.run_dir
        embedded = f"""\
# Embedded (mailfleet mailserver run): a private queue and log, no syslog needed.
queue_directory = {run}/queue
data_directory = {run}/data
maillog_file = {run}/maillog
maillog_file_prefixes = {run}
inet_protocols = ipv4
"""
    relay = f"relayhost = {config.relayhost}\n" if config.relayhost else "relayhost =\n"
    return f"""\
# Generated by `mailfleet mailserver config`: Postfix reads Mailfleet's database.
compatibility_level = 3.6
myhostname = {config.hostname}
myorigin = $myhostname
mydestination =
local_recipient_maps =
local_transport = error:local delivery is disabled
mynetworks = 127.0.0.0/8
inet_interfaces = all
biff = no
append_dot_mydomain = no
recipient_delimiter = +
message_size_limit = 36700160
smtputf8_enable = no
{embedded}{relay}
virtual_mailbox_domains = {maps["domains"]}
virtual_mailbox_maps = {maps["mailboxes"]}
virtual_alias_maps = {maps["aliases"]}
smtpd_sender_login_maps = {maps["senders"]}
proxy_read_maps = $virtual_mailbox_domains $virtual_mailbox_maps $virtual_alias_maps
    $smtpd_sender_login_maps
virtual_transport = lmtp:unix:{config.lmtp_socket}

smtpd_tls_cert_file = {config.tls_cert}
smtpd_tls_key_file = {config.tls_key}
smtpd_tls_security_level = may
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_protocols = >=TLSv1
smtp_tls_security_level = may
smtpd_sasl_type = dovecot
smtpd_sasl_path = {config.auth_socket}
smtpd_sasl_auth_enable = no
smtpd_helo_required = yes
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
smtpd_recipient_restrictions = reject_non_fqdn_recipient, reject_unknown_recipient_domain,
    reject_unauth_destination
"""


_SUBMISSION_OPTIONS = (
    "smtpd_sasl_auth_enable=yes",
    "smtpd_tls_auth_only=yes",
    "smtpd_client_restrictions=permit_sasl_authenticated,reject",
    "smtpd_sender_restrictions=reject_sender_login_mismatch",
    "smtpd_relay_restrictions=permit_sasl_authenticated,reject",
    "smtpd_recipient_restrictions=permit_sasl_authenticated,reject",
    # Addresses are rewritten after signing, at re-injection, so forwarding and
    # aliases apply to the signed message.
    "receive_override_options=no_address_mappings",
)

# The internal services of Debian's master.cf, none chrooted (the maps and sockets
# live outside any chroot). proxymap runs as root ("n" in the unpriv column): it
# opens the root-only map files and database; every other process stays unprivileged.
_INTERNAL = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       n       n       -       -       proxymap
proxywrite unix -       n       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
  -o syslog_name=postfix/$service_name
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_master_cf(config: MailServerConfig) -> str:
    def options(items: tuple[str, ...] | list[str]) -> str:
        return "".join(f"  -o {item}\n" for item in items)

    dkim = f"content_filter=mailfleet-dkim:[127.0.0.1]:{config.filter_port}"
    submission = [*_SUBMISSION_OPTIONS, dkim]
    return (
        "# Generated by `mailfleet mailserver config`.\n"
        "# service type  private unpriv  chroot  wakeup  maxproc command + args\n"
        f"{_service(config, config.ports.smtp)} inet n - n - - smtpd\n"
        f"{_service(config, config.ports.submission)} inet n - n - - smtpd\n"
        + options(["syslog_name=postfix/submission", "smtpd_tls_security_level=encrypt"])
        + options(submission)
        + f"{_service(config, config.ports.smtps)} inet n - n - - smtpd\n"
        + options(["syslog_name=postfix/smtps", "smtpd_tls_wrappermode=yes"])
        + options(submission)
        # Signed mail comes back here from the DKIM filter; only loopback may use it.
        + f"127.0.0.1:{config.reinject_port} inet n - n - 10 smtpd\n"
        + options(
            [
                "syslog_name=postfix/reinject",
                "content_filter=",
                "smtpd_tls_security_level=none",
                "smtpd_sasl_auth_enable=no",
                "mynetworks=127.0.0.0/8",
                "smtpd_client_restrictions=permit_mynetworks,reject",
                "smtpd_relay_restrictions=permit_mynetworks,reject",
                "smtpd_recipient_restrictions=permit_mynetworks,reject",
                "smtpd_sender_restrictions=",
                "smtpd_authorized_xforward_hosts=127.0.0.0/8",
                "receive_override_options=no_unknown_recipient_checks,no_header_body_checks",
            ]
        )
        + "mailfleet-dkim unix - - n - 10 smtp\n"
        + options(
            [
                "syslog_name=postfix/dkim-filter",
                "smtp_send_xforward_command=yes",
                "disable_mime_output_conversion=yes",
                "smtp_tls_security_level=none",
            ]
        )
        + _INTERNAL
    )


# ------------------------------------------------------------------- dovecot


def _dovecot_listen(listen: str) -> str:
    return "*" if listen in ("0.0.0.0", "") else listen  # noqa: S104


def dovecot_conf(config: MailServerConfig) -> str:
    sockets = f"""\
service lmtp {{
  unix_listener {config.lmtp_socket} {{
    mode = 0600
    user = postfix
    group = postfix
  }}
}}
service auth {{
  unix_listener {config.auth_socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""
    run = ""
    if config.run_dir is not None:
        run = f"""\
base_dir = {config.run_dir}/dovecot
state_dir = {config.run_dir}/dovecot-state
log_path = {config.run_dir}/dovecot.log
instance_name = mailfleet-{hashlib.sha256(str(config.run_dir).encode()).hexdigest()[:8]}
"""
    mailboxes = "".join(
        f"  mailbox {name} {{\n    auto = subscribe\n    special_use = \\{name}\n  }}\n"
        for name in ("Drafts", "Sent", "Trash", "Junk")
    )
    return f"""\
# Generated by `mailfleet mailserver config`: Dovecot reads Mailfleet's database.
{run}protocols = imap lmtp
listen = {_dovecot_listen(config.listen)}
ssl = required
ssl_cert = <{config.tls_cert}
ssl_key = <{config.tls_key}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_username_format = %Lu
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
mail_uid = {config.mail_user}
mail_gid = {config.mail_user}
first_valid_uid = 1
mail_location = maildir:~/Maildir
mail_plugins = $mail_plugins quota
postmaster_address = postmaster@{config.hostname}
hostname = {config.hostname}
namespace inbox {{
  inbox = yes
  separator = /
{mailboxes}}}
passdb {{
  driver = sql
  args = {config.dovecot_dir / "sql.conf.ext"}
}}
userdb {{
  driver = sql
  args = {config.dovecot_dir / "sql.conf.ext"}
}}
plugin {{
  quota = maildir:User quota
}}
service imap-login {{
  inet_listener imap {{
    port = {config.ports.imap}
  }}
  inet_listener imaps {{
    port = {config.ports.imaps}
    ssl = yes
  }}
}}
{sockets}"""


# ------------------------------------------------------------------- writing


def write_config(config: MailServerConfig) -> list[Path]:
    """Write every file; the ones holding database credentials are 0600, and the
    directories 0700, all owned by whoever runs this (root for a mail server)."""
    files = {
        config.postfix_dir / "main.cf": postfix_main_cf(config),
        config.postfix_dir / "master.cf": postfix_master_cf(config),
        config.dovecot_dir / "dovecot.conf": dovecot_conf(config),
        config.dovecot_dir / "sql.conf.ext": dovecot_sql(config),
    }
    for name in _POSTFIX_QUERIES:
        files[config.postfix_dir / f"sql-{name}.cf"] = _postfix_map(config, name)
    written = []
    for directory in (config.config_dir, config.postfix_dir, config.dovecot_dir):
        directory.mkdir(parents=True, exist_ok=True)
        # Postfix refuses a config dir that others may write; 0755 lets its
        # unprivileged processes read main.cf, while secrets sit in 0600 files.
        directory.chmod(0o755)
    for path, text in files.items():
        secret = path.name.startswith("sql")
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if secret else 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        tmp.chmod(0o600 if secret else 0o644)
        tmp.replace(path)
        written.append(path)
    return written


def config_from_settings(
    settings: Settings,
    config_dir: Path,
    *,
    listen: str | None = None,
    ports: Ports | None = None,
    run_dir: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    mail_user: str | None = None,
) -> MailServerConfig:
    return MailServerConfig(
        config_dir=config_dir,
        hostname=settings.mail_host,
        listen=listen if listen is not None else settings.mail_listen,
        ports=ports
        or Ports(
            smtp=settings.mail_smtp_port,
            submission=settings.mail_submission_port,
            smtps=settings.mail_smtps_port,
            imap=settings.mail_imap_port,
            imaps=settings.mail_imaps_port,
        ),
        tls_cert=tls_cert or settings.mail_tls_cert or Path("/etc/ssl/certs/mail.pem"),
        tls_key=tls_key or settings.mail_tls_key or Path("/etc/ssl/private/mail.key"),
        storage=settings.resolved_mail_storage_dir,
        database=DatabaseTarget.from_settings(settings),
        mail_user=mail_user or settings.mail_user,
        filter_port=settings.mail_dkim_filter_port,
        reinject_port=settings.mail_reinject_port,
        relayhost=settings.mail_relayhost,
        run_dir=run_dir,
    )
