"""The one interface every sending-platform adapter implements.

An adapter sends the platform's documented API request for a batch of inboxes
and maps the answer to one `InboxResult` per inbox. Platforms that connect in the
background (Saleshandy) answer a batch with a request id; the export workflow
then polls the adapter until the platform reports every inbox.

Adapters hold decrypted credentials only for the length of one job step, never
log them, and scrub them from every message they return.
"""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from mailfleet.platforms.http import (
    HttpPolicy,
    PlatformClient,
    PlatformResponse,
    PlatformUnreachable,
)

ValidationStatus = Literal["valid", "invalid", "unreachable", "unchecked"]

_ALREADY_EXISTS = re.compile(
    r"already\s+(exists?|added|connected|present|in\s+use|registered|been\s+added)|duplicate",
    re.IGNORECASE,
)


class SplitName:
    """First and last name as platforms ask for them: the display name's first word
    and the rest; the address's local part when there is no display name."""

    display_name: str
    email: str

    @property
    def first_name(self) -> str:
        parts = self.display_name.split(None, 1)
        return parts[0] if parts else self.email.split("@", 1)[0]

    @property
    def last_name(self) -> str:
        parts = self.display_name.split(None, 1)
        return parts[1] if len(parts) > 1 else ""


@dataclass(frozen=True)
class ServerLogin:
    host: str
    port: int
    # Mailfleet's flag: implicit TLS on 465/993, STARTTLS on any other port.
    secure: bool
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class Inbox(SplitName):
    """One mailbox as a platform needs it, with decrypted passwords."""

    email: str
    display_name: str
    provider: str
    daily_limit: int
    smtp: ServerLogin
    imap: ServerLogin
    signature: str | None = None
    tags: tuple[str, ...] = ()

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.smtp.password, self.imap.password)


@dataclass(frozen=True)
class InboxResult:
    email: str
    connected: bool
    message: str
    remote_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "email": self.email,
            "connected": self.connected,
            "message": self.message,
            "remoteId": self.remote_id,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InboxResult:
        return cls(data["email"], data["connected"], data["message"], data.get("remoteId"))


@dataclass(frozen=True)
class Submission:
    """What a batch submit settled. Inboxes of the batch without a result wait for
    `request_id` (async platforms). `fatal` means the account itself failed (a
    refused key): the export stops sending."""

    results: list[InboxResult]
    request_id: str | None = None
    carry: dict[str, str] = field(default_factory=dict)
    fatal: str | None = None


@dataclass(frozen=True)
class Poll:
    done: bool
    results: list[InboxResult]


@dataclass(frozen=True)
class Validation:
    status: ValidationStatus
    message: str


@dataclass(frozen=True)
class AccountAccess:
    """A platform account's decrypted credentials and where its API lives."""

    base_url: str | None
    api_key: str | None = field(default=None, repr=False)
    login_email: str | None = None
    login_password: str | None = field(default=None, repr=False)

    @property
    def secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.api_key, self.login_password) if s)


def platform_message(response: PlatformResponse, client: PlatformClient) -> str:
    """The human message in a platform's answer: its JSON message or error fields,
    secrets scrubbed. Never the raw body: a platform may echo the request (secrets
    included, in whatever encoding), and the message is stored and shown to every
    member of the workspace."""
    data = response.json()
    found: list[str] = []

    def collect(value: Any) -> None:
        if isinstance(value, str) and value.strip():
            found.append(value.strip())
        elif isinstance(value, dict):
            for key in ("message", "error", "detail", "msg", "reason"):
                if key in value:
                    collect(value[key])
                    break
        elif isinstance(value, list):
            for item in value[:5]:
                collect(item)

    if isinstance(data, dict):
        # The first field that says something: NestJS-style bodies put the HTTP
        # phrase in "error" beside the real "message".
        for key in ("message", "error", "errors", "detail", "details", "reason", "msg"):
            if key in data:
                collect(data[key])
            if found:
                break
    if not found:
        return f"HTTP {response.status}, no message in the answer"
    return client.scrub("; ".join(dict.fromkeys(found)))[:500] or f"HTTP {response.status}"


# A 409 that asks for a retry is a conflict of the moment (Mailfleet's own answer to
# a row changed by a concurrent request is one), not a duplicate.
_TRANSIENT_CONFLICT = re.compile(r"\bretry\b|try\s+again|another\s+request|concurrent", re.I)


def already_exists(status: int, message: str) -> bool:
    """Whether a refusal means the inbox is already on the platform: its message
    says so, or a 409 (the documented duplicate answer) that does not ask for a retry."""
    if _ALREADY_EXISTS.search(message):
        return True
    return status == 409 and not _TRANSIENT_CONFLICT.search(message)


class PlatformAdapter(ABC):
    """A sending platform. Subclasses set the class attributes and either
    `connect_one` (one request per inbox) or `submit` (one request per batch)."""

    name: ClassVar[str]
    label: ClassVar[str]
    default_base_url: ClassVar[str]
    # GET this path to check the API key; None when the platform has no such endpoint.
    validation_path: ClassVar[str | None] = None
    # Inboxes per submit: one job step handles one batch.
    batch_size: ClassVar[int] = 100

    def __init__(self, access: AccountAccess, policy: HttpPolicy) -> None:
        self.access = access
        self.policy = policy

    @property
    def base_url(self) -> str:
        return self.access.base_url or self.default_base_url

    def missing_credentials(self) -> str | None:
        """Why this account cannot export, or None when it can."""
        if not self.access.api_key:
            return f"{self.label} connects inboxes through its API, which needs an API key"
        return None

    @abstractmethod
    def client(self, *extra_secrets: str) -> PlatformClient:
        """A client carrying this platform's authentication."""

    def _client(
        self,
        extra_secrets: tuple[str, ...],
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> PlatformClient:
        return PlatformClient(
            self.base_url,
            self.policy,
            headers=headers,
            params=params,
            secrets=(*self.access.secrets, *extra_secrets),
        )

    async def validate(self) -> Validation:
        """Ask the platform whether the API key works, when it has a way to ask."""
        missing = self.missing_credentials()
        if missing is not None:
            return Validation("unchecked", missing)
        if self.validation_path is None:
            return Validation(
                "unchecked",
                f"{self.label} has no endpoint to check a key with; the first export will tell",
            )
        async with self.client() as client:
            try:
                response = await client.request("GET", self.validation_path)
            except PlatformUnreachable as exc:
                return Validation("unreachable", f"{exc.code}: {exc.message}")
            if response.ok:
                return Validation("valid", f"{self.label} accepted the API key")
            message = platform_message(response, client)
            if response.status in (401, 403):
                return Validation(
                    "invalid", f"{self.label} refused the API key ({response.status}): {message}"
                )
            return Validation("unreachable", f"{self.label} answered {response.status}: {message}")

    async def submit(self, inboxes: list[Inbox], carry: dict[str, str]) -> Submission:
        """One request per inbox, a few at a time; a refused key stops the rest."""
        refused: list[str] = []
        slots = asyncio.Semaphore(self.policy.concurrency)
        secrets = tuple(s for inbox in inboxes for s in inbox.secrets)
        async with self.client(*secrets) as client:

            async def one(inbox: Inbox) -> InboxResult:
                async with slots:
                    if refused:
                        return InboxResult(inbox.email, False, refused[0])
                    try:
                        result, fatal = await self.connect_one(client, inbox)
                    except PlatformUnreachable as exc:
                        return InboxResult(inbox.email, False, f"{exc.code}: {exc.message}")
                    if fatal and not refused:
                        refused.append(result.message)
                    return result

            results = await asyncio.gather(*(one(inbox) for inbox in inboxes))
        return Submission(list(results), fatal=refused[0] if refused else None)

    async def connect_one(self, client: PlatformClient, inbox: Inbox) -> tuple[InboxResult, bool]:
        """Connect one inbox; the flag says the account itself was refused."""
        raise NotImplementedError(f"{self.label} submits inboxes in batches")

    async def poll(self, request_id: str, emails: list[str]) -> Poll:
        """Ask about a batch submitted in the background (async platforms only)."""
        raise NotImplementedError(f"{self.label} answers every inbox at once")

    def interpret(
        self,
        client: PlatformClient,
        response: PlatformResponse,
        inbox: Inbox,
        remote_id: str | None = None,
    ) -> tuple[InboxResult, bool]:
        """The usual mapping of one inbox's answer: 2xx connected, "already exists"
        connected, 401 refuses the account, anything else fails with the platform's
        message."""
        if response.ok:
            return InboxResult(inbox.email, True, f"Connected to {self.label}", remote_id), False
        message = platform_message(response, client)
        if already_exists(response.status, message):
            return (
                InboxResult(inbox.email, True, f"Already on {self.label}: {message}", remote_id),
                False,
            )
        if response.status == 429:
            return (
                InboxResult(
                    inbox.email,
                    False,
                    f"RATE_LIMITED: {self.label} still limited the rate after "
                    f"{response.attempts} attempts: {message}",
                ),
                False,
            )
        if response.status == 401:
            return (
                InboxResult(
                    inbox.email, False, f"{self.label} refused the API key (401): {message}"
                ),
                True,
            )
        return (
            InboxResult(inbox.email, False, f"{self.label} answered {response.status}: {message}"),
            False,
        )
