"""HTTP to sending platforms: netguard, a pinned address, retries that honour rate limits.

A platform's base URL may be one a user typed (a self-hosted SendKit, another
Mailfleet), so every host passes netguard and the request goes to the address the
guard approved, the name kept in the Host header and TLS SNI: a second lookup by
the HTTP client could answer with a private address (DNS rebinding).

429 waits what Retry-After asks; 5xx, timeouts and connection failures back off
exponentially. Every wait is capped by MAILFLEET_PLATFORM_MAX_RETRY_DELAY. Texts
that leave this module (error messages) have the account's secrets scrubbed out,
in the forms a platform echoes them (as sent, URL-encoded, JSON-escaped), since a
platform may echo what it was sent.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt

from mailfleet import __version__
from mailfleet.config import Settings
from mailfleet.kit.netguard import IPAddress, NetguardError, guard_host
from mailfleet.kit.tls import client_context

log = logging.getLogger(__name__)

USER_AGENT = f"Mailfleet/{__version__} (platform export)"
# Platform answers are small JSON documents; a report CSV of a large batch is the
# biggest thing read. Anything larger is refused rather than held in memory.
MAX_ANSWER_BYTES = 10 * 1024 * 1024
_REDACTED = "[redacted]"
# Not for secrets: it only spreads retries so many workers do not retry in step.
_jitter = random.Random()  # noqa: S311


@dataclass(frozen=True)
class HttpPolicy:
    allow_private: bool
    nameservers: tuple[str, ...] | None
    tls_ca_file: str | None
    timeout: float
    max_attempts: int
    retry_delay: float
    max_retry_delay: float
    concurrency: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpPolicy:
        return cls(
            allow_private=settings.allow_private_networks,
            nameservers=tuple(settings.dns_nameservers) or None,
            tls_ca_file=str(settings.tls_ca_file) if settings.tls_ca_file else None,
            timeout=settings.platform_timeout,
            max_attempts=settings.platform_max_attempts,
            retry_delay=settings.platform_retry_delay,
            max_retry_delay=settings.platform_max_retry_delay,
            concurrency=settings.platform_concurrency,
        )


class PlatformUnreachable(Exception):
    """No answer from the platform after every attempt; ``code`` says why in one word.

    ``sent`` is whether the request may have reached the platform (its bytes
    started to go out): a POST that may have arrived is not sent again.
    """

    def __init__(self, code: str, message: str, *, sent: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.sent = sent
        self.attempts = 1


@dataclass(frozen=True)
class PlatformResponse:
    status: int
    headers: httpx.Headers
    body: bytes
    attempts: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The parsed body, or None when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return max(0.0, (moment - current).total_seconds())


_DEFAULT_PORTS = {"http": 80, "https": 443}
# Methods whose repetition has the effect of one (RFC 9110): safe to send again
# after a timeout. POST and PATCH are not.
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# Failures that another try cannot change.
_FINAL_CODES = frozenset({"FORBIDDEN_TARGET", "INVALID_TARGET", "TOO_LARGE"})


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def secret_forms(secret: str) -> set[str]:
    """`secret` as a platform may echo it back: as sent, URL-encoded (either case of
    hex, `+` or `%20` for spaces) and JSON-escaped (one or two levels, ASCII or not)."""
    forms = {secret, quote(secret, safe=""), quote(secret), quote_plus(secret, safe="")}
    for text in (secret, json.dumps(secret)[1:-1]):
        forms.add(json.dumps(text)[1:-1])
        forms.add(json.dumps(text, ensure_ascii=False)[1:-1])
    forms |= {_PERCENT.sub(lambda m: m.group().lower(), form) for form in forms}
    return forms


_PERCENT = re.compile(r"%[0-9A-F]{2}")


class PlatformClient:
    """HTTP to one platform account: its base URL, its auth headers or query
    parameters (sent only to the base URL's origin), and the secrets to scrub."""

    def __init__(
        self,
        base_url: str,
        policy: HttpPolicy,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.base_url = httpx.URL(base_url.rstrip("/"))
        self.policy = policy
        self._auth_headers = dict(headers or {})
        self._auth_params = dict(params or {})
        forms = {form for s in secrets if s and len(s) >= 4 for form in secret_forms(s)}
        # Longest first, so a form containing another is replaced whole.
        self._secrets = sorted(forms, key=len, reverse=True)
        self._addresses: dict[str, list[IPAddress]] = {}
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> PlatformClient:
        # trust_env=False: a proxy from the environment would connect by name again.
        self._client = httpx.AsyncClient(
            timeout=self.policy.timeout,
            follow_redirects=False,
            verify=client_context(self.policy.tls_ca_file),
            trust_env=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _REDACTED)
        return text

    def resolve(self, url: str) -> httpx.URL:
        """An absolute URL as given, or a path under the base URL."""
        if url.startswith(("http://", "https://")):
            return httpx.URL(url)
        path = url if url.startswith("/") else "/" + url
        return httpx.URL(str(self.base_url) + path)

    async def request(
        self,
        method: str,
        url: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> PlatformResponse:
        """Send with retries; the last answer when retries ran out on 429 or 5xx.

        Raises PlatformUnreachable when no answer came (guard refusal, network,
        timeout). The account's credentials go only to the base URL's origin: a
        report link on another host gets none. `idempotency_key`, for a platform
        that honours one, goes out as `Idempotency-Key` and lets a POST be sent
        again after a timeout.
        """
        target = self.resolve(url)
        if target.scheme not in ("http", "https") or target.userinfo:
            raise PlatformUnreachable("INVALID_TARGET", "the platform gave an unusable URL")
        same_origin = _origin(target) == _origin(self.base_url)
        query: dict[str, str | int] = dict(self._auth_params) if same_origin else {}
        query.update(params or {})
        sent_headers = {"user-agent": USER_AGENT, "accept": "application/json, text/csv, */*"}
        if same_origin:
            sent_headers.update(self._auth_headers)
        sent_headers.update(headers or {})
        if idempotency_key:
            sent_headers["idempotency-key"] = idempotency_key
        if query:
            target = target.copy_merge_params(query)
        content: bytes | None = None
        if json_body is not None:
            content = json.dumps(json_body).encode()
            sent_headers["content-type"] = "application/json"

        idempotent = method.upper() in _IDEMPOTENT_METHODS or bool(idempotency_key)
        attempt = 0

        async def send() -> PlatformResponse:
            nonlocal attempt
            attempt += 1
            try:
                return await self._send_once(method, target, sent_headers, content, attempt)
            except PlatformUnreachable as exc:
                exc.attempts = attempt
                if exc.sent and not idempotent and exc.code in ("TIMEOUT", "NETWORK_ERROR"):
                    exc.message += "; not sent again, since the platform may have acted on it"
                raise

        retrying = self._retry_policy(method, target.host, idempotent=idempotent)
        result: PlatformResponse = await retrying(send)
        return result

    def _retry_policy(self, method: str, host: str, *, idempotent: bool) -> AsyncRetrying:
        """The one retry policy of platform requests (MAILFLEET_PLATFORM_*): up to
        max_attempts tries; 429 and 5xx are tried again, waiting what Retry-After
        asks or backing off exponentially (jittered), each wait capped; so are
        failures with no answer, except refusals of the target (netguard, a bad
        URL, an answer too large) and a non-idempotent request that may have
        arrived (a timeout after sending a POST: the platform may have acted on
        it, and a second POST could create a second account) unless the
        platform takes an idempotency key. When tries run out, the last 429 or
        5xx answer is returned, or the last failure raised."""
        policy = self.policy

        def should_retry(state: RetryCallState) -> bool:
            outcome = state.outcome
            if outcome is None:
                return False
            if outcome.failed:
                exc = outcome.exception()
                return (
                    isinstance(exc, PlatformUnreachable)
                    and exc.code not in _FINAL_CODES
                    and (idempotent or not exc.sent)
                )
            response: PlatformResponse = outcome.result()
            return response.status == 429 or response.status >= 500

        def wait(state: RetryCallState) -> float:
            outcome = state.outcome
            if outcome is not None and not outcome.failed:
                asked = retry_after_seconds(outcome.result().headers.get("retry-after"))
                if asked is not None:
                    return min(asked, policy.max_retry_delay)
            return self._backoff(state.attempt_number)

        def before_sleep(state: RetryCallState) -> None:
            outcome = state.outcome
            if outcome is None:
                return
            if outcome.failed:
                exc = outcome.exception()
                what = exc.code if isinstance(exc, PlatformUnreachable) else type(exc).__name__
            else:
                what = f"answered {outcome.result().status}"
            delay = state.next_action.sleep if state.next_action else 0.0
            log.info(
                "platform %s %s: %s; retry %d in %.2fs",
                method,
                host,
                what,
                state.attempt_number,
                delay,
            )

        def give_up(state: RetryCallState) -> PlatformResponse:
            outcome = state.outcome
            assert outcome is not None
            if outcome.failed:
                exc = outcome.exception()
                assert exc is not None
                raise exc
            response: PlatformResponse = outcome.result()
            return response

        return AsyncRetrying(
            stop=stop_after_attempt(policy.max_attempts),
            wait=wait,
            retry=should_retry,
            before_sleep=before_sleep,
            retry_error_callback=give_up,
        )

    def _backoff(self, attempt: int) -> float:
        delay = self.policy.retry_delay * 2.0 ** (attempt - 1) * _jitter.uniform(0.8, 1.2)
        return min(delay, self.policy.max_retry_delay)

    async def _addresses_of(self, host: str) -> list[IPAddress]:
        if host not in self._addresses:
            try:
                self._addresses[host] = await guard_host(
                    host,
                    allow_private=self.policy.allow_private,
                    nameservers=self.policy.nameservers,
                )
            except NetguardError as exc:
                raise PlatformUnreachable(exc.code, exc.message) from None
        return self._addresses[host]

    async def _send_once(
        self,
        method: str,
        target: httpx.URL,
        headers: dict[str, str],
        content: bytes | None,
        attempt: int,
    ) -> PlatformResponse:
        assert self._client is not None, "use the client as an async context manager"
        host = target.host
        addresses = await self._addresses_of(host)
        pinned_headers = {**headers, "host": target.netloc.decode("ascii")}
        failure = "no address to connect to"
        # Whether any byte of the request went out: until then nothing reached the
        # platform, and even a POST may be sent again.
        sent = False

        async def trace(event: str, info: dict[str, Any]) -> None:
            nonlocal sent
            if event.endswith("send_request_headers.started"):
                sent = True

        try:
            async with asyncio.timeout(self.policy.timeout):
                for address in addresses:
                    request = self._client.build_request(
                        method,
                        target.copy_with(host=str(address)),
                        headers=pinned_headers,
                        content=content,
                        extensions={"sni_hostname": host, "trace": trace}
                        if target.scheme == "https"
                        else {"trace": trace},
                    )
                    try:
                        response = await self._client.send(request, stream=True)
                    except httpx.ConnectError as exc:
                        # Another address of the same host may answer.
                        failure = f"could not connect to {host} ({address}): {exc}"
                        continue
                    try:
                        body = await _read_capped(response)
                    finally:
                        await response.aclose()
                    return PlatformResponse(response.status_code, response.headers, body, attempt)
        except (TimeoutError, httpx.TimeoutException):
            raise PlatformUnreachable(
                "TIMEOUT",
                f"{host} did not answer within {self.policy.timeout:g} seconds",
                sent=sent,
            ) from None
        except httpx.HTTPError as exc:
            message = str(exc) or type(exc).__name__
            raise PlatformUnreachable(
                "NETWORK_ERROR",
                self.scrub(f"{host}: {type(exc).__name__}: {message}")[:500],
                sent=sent,
            ) from None
        raise PlatformUnreachable("CONNECTION_FAILED", self.scrub(failure)[:500])


async def _read_capped(response: httpx.Response) -> bytes:
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise PlatformUnreachable(
                "TOO_LARGE", f"the answer is larger than {MAX_ANSWER_BYTES} bytes"
            )
    return bytes(body)
