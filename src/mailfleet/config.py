"""Settings: one class, environment variables with the MAILFLEET_ prefix."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mailfleet.kit.crypto import load_or_create_key_file, parse_secret_keys


class SettingsError(Exception):
    """A setting is missing or unsafe; the message says which and how to fix it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILFLEET_", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("mailfleet-data")
    database_url: str | None = None
    secret_keys: str | None = Field(default=None, repr=False)
    jwt_secret: str | None = Field(default=None, repr=False)
    jwt_ttl_seconds: int = Field(default=12 * 3600, ge=60)
    # A console session unused this long ends (its absolute limit is jwt_ttl_seconds).
    console_idle_seconds: int = Field(default=2 * 3600, ge=60)
    allow_private_networks: bool = False
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # "text": one readable line per record; "json": one JSON object per line.
    log_format: Literal["text", "json"] = "text"
    # Bearer token for GET /metrics (and a worker's health port); unset: no metrics.
    metrics_token: str | None = Field(default=None, repr=False)
    # POST /v1/auth/login: failed logins allowed per client address and per
    # account within the window, before 429 RATE_LIMITED (counted per process).
    login_max_failures_per_address: int = Field(default=30, ge=1)
    login_max_failures_per_account: int = Field(default=10, ge=1)
    login_failure_window: float = Field(default=900.0, gt=0)
    dns_nameservers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    dns_timeout: float = Field(default=3.0, gt=0)
    tls_ca_file: Path | None = None
    mail_timeout: float = Field(default=15.0, gt=0)
    verify_concurrency: int = Field(default=50, ge=1)
    verify_per_host: int = Field(default=5, ge=1)
    # Seconds to wait before each retry of a failed webhook delivery (the first
    # attempt is immediate); jittered by +-20%. The default spans about a day.
    webhook_retry_delays: Annotated[list[float], NoDecode] = Field(
        # 5 s, 30 s, 2, 10 and 30 min, then 1, 2, 4, 8 and 8 h.
        default_factory=lambda: (
            [5.0, 30.0] + [60.0 * m for m in (2, 10, 30, 60, 120, 240, 480, 480)]
        ),
        max_length=30,
    )
    # Domains: the PowerDNS server that hosts zones for dnsProvider "mailfleet", the NS
    # names customers set at their registrar, and the address forwarded domains point at.
    pdns_api_url: str | None = None
    pdns_api_key: str | None = Field(default=None, repr=False)
    pdns_server_id: str = "localhost"
    nameservers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    public_ip: str | None = None
    cloudflare_api_url: str = "https://api.cloudflare.com/client/v4"
    dns_recheck_interval: float = Field(default=6 * 3600.0, ge=60)
    # Buying domains: the registrar (None: buying is off) and its credentials, each
    # registrar's API base URL (its sandbox, a proxy, or a fake in tests), one request's
    # deadline, and the markup added to the registrar's price.
    registrar: Literal["porkbun", "namecheap"] | None = None
    porkbun_api_key: str | None = Field(default=None, repr=False)
    porkbun_secret_key: str | None = Field(default=None, repr=False)
    porkbun_api_url: str = "https://api.porkbun.com/api/json/v3"
    namecheap_api_user: str | None = None
    namecheap_api_key: str | None = Field(default=None, repr=False)
    namecheap_client_ip: str | None = None
    namecheap_username: str | None = None
    namecheap_api_url: str = "https://api.namecheap.com/xml.response"
    registrar_timeout: float = Field(default=30.0, gt=0)
    domain_markup_percent: float = Field(default=0.0, ge=0, le=1000)
    # Exports to sending platforms: one HTTP request's deadline; attempts per request
    # (429, 5xx and timeouts are retried); the first backoff, doubled per retry; the
    # longest wait, Retry-After included; requests at once to one platform account.
    platform_timeout: float = Field(default=30.0, gt=0)
    platform_max_attempts: int = Field(default=5, ge=1, le=20)
    platform_retry_delay: float = Field(default=1.0, ge=0)
    platform_max_retry_delay: float = Field(default=60.0, ge=0)
    platform_concurrency: int = Field(default=4, ge=1, le=100)
    # Platforms that connect inboxes in the background (Saleshandy): seconds between
    # status checks, and how long to wait for the platform before giving up.
    export_poll_interval: float = Field(default=10.0, gt=0)
    export_poll_timeout: float = Field(default=3600.0, gt=0)
    # Billing. Off: every workspace holds the unlimited "self-hosted" plan and
    # nothing charges anyone. On: plans, subscriptions and the wallet apply.
    billing: Literal["off", "on"] = "off"
    billing_currency: str = Field(default="USD", pattern=r"^[A-Za-z]{3}$")
    billing_grace_days: int = Field(default=3, ge=0)
    billing_return_url: str | None = None
    payment_provider: Literal["manual", "stripe"] = "manual"
    stripe_secret_key: str | None = Field(default=None, repr=False)
    stripe_webhook_secret: str | None = Field(default=None, repr=False)
    stripe_api_base: str | None = None
    # Bulk connect: mailboxes per job and the largest upload; logins in flight per
    # worker across all bulk jobs, and per mail host name (SMTP or IMAP) per worker;
    # mailboxes per chunk (one checkpoint each); attempts for a transient failure,
    # and the first wait before a retry, doubled for each one after.
    bulk_max_items: int = Field(default=10_000, ge=1)
    bulk_max_upload_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    bulk_concurrency: int = Field(default=200, ge=1)
    bulk_per_host: int = Field(default=20, ge=1)
    bulk_chunk_size: int = Field(default=100, ge=1, le=1000)
    bulk_max_attempts: int = Field(default=3, ge=1, le=10)
    bulk_retry_delay: float = Field(default=2.0, ge=0)
    # Bulk logins run in a child process (mail.login_process), off the event loop
    # that answers requests; off, they run in this process as single tests do.
    bulk_login_process: bool = True
    # Hosted mail (`mailfleet mailserver`): the host name published as MX target and
    # given to clients as their SMTP/IMAP host (default: this machine's FQDN); its TLS
    # certificate and key (outside production a self-signed pair is generated into the
    # data dir when unset); an optional smarthost for outbound mail where port 25 is
    # blocked ("[host]:port"); where mail is stored (default DATA_DIR/mail); the quota
    # of a new mailbox in MiB (0: none); how long a deleted mailbox's mail is kept.
    mail_hostname: str | None = None
    mail_tls_cert: Path | None = None
    mail_tls_key: Path | None = None
    mail_relayhost: str | None = None
    mail_storage_dir: Path | None = None
    mail_default_quota_mb: int = Field(default=5120, ge=0)
    mail_deleted_retention_days: int = Field(default=30, ge=0)
    # Where `mailfleet mailserver run` listens; the ports are also what hosted
    # mailboxes are told to use (submission and IMAPS).
    mail_listen: str = "0.0.0.0"  # noqa: S104 - a mail server serves the world
    mail_smtp_port: int = Field(default=25, ge=1, le=65535)
    mail_submission_port: int = Field(default=587, ge=1, le=65535)
    mail_smtps_port: int = Field(default=465, ge=1, le=65535)
    mail_imap_port: int = Field(default=143, ge=1, le=65535)
    mail_imaps_port: int = Field(default=993, ge=1, le=65535)
    # Loopback ports of the DKIM signing filter and of Postfix's re-injection
    # listener that takes signed mail back.
    mail_dkim_filter_port: int = Field(default=10027, ge=1, le=65535)
    mail_reinject_port: int = Field(default=10028, ge=1, le=65535)
    # The system user that owns mail storage (created by the README's install step);
    # `mailserver run` falls back to "dovecot" when it does not exist.
    mail_user: str = "vmail"
    # Seconds between warmup rounds (planning, sending, reading folders); 0: none.
    warmup_interval: float = Field(default=900.0, ge=0)
    # Seconds a warmup message stays in the receiver's folders once seen.
    warmup_retention: float = Field(default=172800.0, ge=0)
    # Mailboxes one warmup round works on at once (SMTP or IMAP sessions).
    warmup_concurrency: int = Field(default=50, ge=1)
    # Seconds between two reads of a placement test's seeds while messages are missing.
    placement_poll_interval: float = Field(default=15.0, gt=0)
    # Mailboxes one placement test sends from or reads at once (SMTP or IMAP sessions).
    placement_concurrency: int = Field(default=20, ge=1)
    # Overrides every placement test's timeoutMinutes with this many seconds: for
    # tests and trials on local servers, where 5 minutes (the API's least) is long.
    placement_timeout_seconds: float | None = Field(default=None, gt=0)
    worker_id: str | None = None
    # The queues this process takes work from (comma-separated names; all when
    # unset): e.g. `default` on an API-only `serve`, `mailbox_verification,bulk_connect`
    # on dedicated login workers.
    worker_queues: Annotated[list[str] | None, NoDecode] = None
    # Seconds without a heartbeat after which a worker counts as dead and the
    # others hand its unfinished workflows back to their queues (heartbeats come
    # every 5 s, so at least three must be missed).
    worker_dead_after: float = Field(default=60.0, ge=15)
    host: str = "127.0.0.1"
    port: int = 8000

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_format(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("dns_nameservers", mode="before")
    @classmethod
    def _split_nameservers(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("worker_queues", mode="before")
    @classmethod
    def _split_queues(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()] or None
        return value

    @field_validator("nameservers", mode="before")
    @classmethod
    def _split_ns_names(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [str(part).strip().rstrip(".").lower() for part in value]
        return value

    @field_validator("public_ip")
    @classmethod
    def _check_public_ip(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        import ipaddress

        return str(ipaddress.ip_address(value.strip()))

    @field_validator("webhook_retry_delays", mode="before")
    @classmethod
    def _split_delays(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_retry_delays")
    @classmethod
    def _non_negative_delays(cls, value: list[float]) -> list[float]:
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays are seconds, 0 or more")
        return value

    @field_validator("billing_currency")
    @classmethod
    def _upper_currency(cls, value: str) -> str:
        return value.upper()

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def mail_host(self) -> str:
        """The mail server's public host name: MAILFLEET_MAIL_HOSTNAME or this machine's."""
        if self.mail_hostname:
            return self.mail_hostname.strip().rstrip(".").lower()
        import socket

        return socket.getfqdn().lower()

    @property
    def resolved_mail_storage_dir(self) -> Path:
        return (self.mail_storage_dir or self.resolved_data_dir / "mail").expanduser().resolve()

    @property
    def is_sqlite(self) -> bool:
        return self.app_database_url.startswith("sqlite")

    @property
    def app_database_url(self) -> str:
        """The SQLAlchemy async URL of the application database."""
        url = self.database_url or f"sqlite:///{self.resolved_data_dir / 'mailfleet.db'}"
        return _with_driver(url, sqlite="sqlite+aiosqlite", postgres="postgresql+asyncpg")

    @property
    def system_database_url(self) -> str:
        """DBOS's system database: a SQLite file beside ours, or the same PostgreSQL database.

        DBOS drives its database with synchronous SQLAlchemy and psycopg, so the URL
        names those drivers.
        """
        if self.is_sqlite:
            app_file = Path(self.app_database_url.split(":///", 1)[1])
            return f"sqlite:///{app_file.with_name(app_file.stem + '-jobs.db')}"
        return _with_driver(self.app_database_url, sqlite="sqlite", postgres="postgresql+psycopg")

    def secret_keyring_entries(self) -> list[tuple[str, bytes]]:
        """Keys for secrets at rest: MAILFLEET_SECRET_KEYS, or the generated key file."""
        if self.secret_keys:
            return parse_secret_keys(self.secret_keys)
        if self.is_production:
            raise SettingsError(
                "MAILFLEET_SECRET_KEYS is required in production; generate one with "
                "`mailfleet keys generate` and keep it outside the data directory"
            )
        return load_or_create_key_file(self.resolved_data_dir / "secret.keys")

    def jwt_signing_secret(self) -> str:
        if self.jwt_secret:
            if self.is_production and len(self.jwt_secret) < 32:
                raise SettingsError("MAILFLEET_JWT_SECRET must be at least 32 characters")
            return self.jwt_secret
        if self.is_production:
            raise SettingsError(
                "MAILFLEET_JWT_SECRET is required in production (32+ random characters)"
            )
        return _load_or_create_text_secret(self.resolved_data_dir / "jwt.secret")

    def check_startup(self) -> None:
        """Refuse to start with generated or empty secrets in production."""
        self.secret_keyring_entries()
        self.jwt_signing_secret()
        if self.is_production and self.database_url is None:
            raise SettingsError("MAILFLEET_DATABASE_URL is required in production")
        stripe_ready = bool(self.stripe_secret_key and self.stripe_webhook_secret)
        if self.billing == "on" and self.payment_provider == "stripe" and not stripe_ready:
            raise SettingsError(
                "MAILFLEET_PAYMENT_PROVIDER=stripe needs MAILFLEET_STRIPE_SECRET_KEY and "
                "MAILFLEET_STRIPE_WEBHOOK_SECRET"
            )


def _with_driver(url: str, *, sqlite: str, postgres: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise SettingsError(f"database URL has no scheme: {scheme[:20]!r}")
    base = scheme.split("+", 1)[0]
    if base == "sqlite":
        return f"{sqlite}://{rest}"
    if base in ("postgresql", "postgres"):
        return f"{postgres}://{rest}"
    raise SettingsError(f"unsupported database {base!r}: use sqlite or postgresql")


def _load_or_create_text_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
