"""One signed webhook request: netguard, a pinned address, a Standard Webhooks signature.

The request goes to an address the guard returned, with the URL's host name
kept in the Host header and TLS SNI (so certificates still verify): a second
DNS lookup by the HTTP client could answer with a private address (rebinding).
"""

from __future__ import annotations

import asyncio
import ssl
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from mailfleet import __version__
from mailfleet.config import Settings
from mailfleet.kit.netguard import IPAddress, NetguardError, guard_host, guard_url
from mailfleet.kit.tls import client_context

REQUEST_TIMEOUT = 10.0
RESPONSE_EXCERPT_BYTES = 500
# Deliveries wait out their backoff inside the workflow, so the queue cannot cap
# concurrency without idle sleepers holding every slot; the sends are capped here.
MAX_CONCURRENT_SENDS = 64
USER_AGENT = f"Mailfleet-Webhooks/{__version__}"

_send_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None = None
    latency_ms: int | None = None
    response_body: str | None = None
    error: str | None = None
    redirect_location: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


def requires_https(settings: Settings) -> bool:
    return settings.env not in ("development", "test")


async def check_url(url: str, settings: Settings) -> str:
    """The URL's host when it may receive webhooks; NetguardError (never echoing
    the URL, which may hold a token) when it may not."""
    return await guard_url(
        url,
        allow_private=settings.allow_private_networks,
        require_https=requires_https(settings),
    )


def signature_headers(secret: str, message_id: str, body: str) -> dict[str, str]:
    """webhook-id, webhook-timestamp and webhook-signature for `body` as sent."""
    # Whole seconds: the header carries whole seconds and the signature covers it.
    timestamp = datetime.fromtimestamp(int(time.time()), UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, timestamp, body),
    }


def _slots() -> asyncio.Semaphore:
    loop = asyncio.get_running_loop()
    slots = _send_slots.get(loop)
    if slots is None:
        slots = _send_slots[loop] = asyncio.Semaphore(MAX_CONCURRENT_SENDS)
    return slots


async def send_webhook(
    url: str, secret: str, message_id: str, body: str, settings: Settings
) -> AttemptResult:
    """POST `body` signed; never raises for anything the receiver or network does."""
    try:
        await check_url(url, settings)
        target = httpx.URL(url)
        host = target.raw_host.decode("ascii")
        addresses = await guard_host(
            host,
            allow_private=settings.allow_private_networks,
            nameservers=settings.dns_nameservers or None,
        )
    except NetguardError as exc:
        return AttemptResult(error=f"{exc.code}: {exc.message}")
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        # The name, not the pinned address, so virtual hosts route as registered.
        "host": target.netloc.decode("ascii"),
        **signature_headers(secret, message_id, body),
    }
    async with _slots():
        return await _post_to_first_reachable(
            target, host, addresses, headers, body.encode(), client_context(settings.tls_ca_file)
        )


async def _post_to_first_reachable(
    target: httpx.URL,
    host: str,
    addresses: list[IPAddress],
    headers: dict[str, str],
    content: bytes,
    tls: ssl.SSLContext,
) -> AttemptResult:
    started = time.perf_counter()

    def elapsed_ms() -> int:
        return round((time.perf_counter() - started) * 1000)

    # trust_env=False: a proxy from the environment would connect by name again.
    async with httpx.AsyncClient(
        timeout=REQUEST_TIMEOUT, follow_redirects=False, verify=tls, trust_env=False
    ) as client:
        failure = "no address to connect to"
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                for address in addresses:
                    request = client.build_request(
                        "POST",
                        target.copy_with(host=str(address)),
                        headers=headers,
                        content=content,
                        extensions={"sni_hostname": host} if target.scheme == "https" else {},
                    )
                    try:
                        response = await client.send(request, stream=True)
                    except httpx.ConnectError as exc:
                        # Another address of the same host may answer.
                        failure = f"could not connect to {address}: {exc}"
                        continue
                    try:
                        return await _read_answer(response, elapsed_ms())
                    finally:
                        await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return AttemptResult(
                latency_ms=elapsed_ms(), error=f"no answer within {REQUEST_TIMEOUT:g} seconds"
            )
        except httpx.HTTPError as exc:
            return AttemptResult(latency_ms=elapsed_ms(), error=_describe(exc))
        return AttemptResult(latency_ms=elapsed_ms(), error=failure[:1000])


async def _read_answer(response: httpx.Response, latency_ms: int) -> AttemptResult:
    excerpt = b""
    try:
        async for chunk in response.aiter_bytes():
            excerpt += chunk
            if len(excerpt) >= RESPONSE_EXCERPT_BYTES:
                break
    except httpx.HTTPError:
        # The status line decides the outcome; a broken body only shortens the excerpt.
        pass
    # PostgreSQL text cannot hold NUL, and a receiver may answer with anything.
    body = (
        excerpt[:RESPONSE_EXCERPT_BYTES].decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    )
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("location", "")[:2048]
        return AttemptResult(
            status_code=status,
            latency_ms=latency_ms,
            response_body=body,
            error=f"answered {status} (redirect); redirects are not followed",
            redirect_location=location or None,
        )
    error = None if 200 <= status < 300 else f"answered {status}"
    return AttemptResult(status_code=status, latency_ms=latency_ms, response_body=body, error=error)


def _describe(exc: httpx.HTTPError) -> str:
    # httpx's messages name the failure, not the URL, except for URL errors,
    # which guard_url rules out before any request is built.
    message = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {message}"[:1000]
