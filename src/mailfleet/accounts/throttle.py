"""Login throttling: failed logins counted per client address and per account.

In process memory, so each process counts for itself (several API processes
behind a balancer each allow the limit). Only failures count: a user who types
the password right is never slowed, and a right password clears the account's
count. Once either count is at its limit, logins for it answer 429 with
Retry-After until the oldest failure leaves the window, right password or not:
an attacker learns nothing from a throttled answer.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from mailfleet.config import Settings
from mailfleet.kit.errors import RateLimited

# Past this many keys, a failure sweeps out the ones whose failures all expired.
_SWEEP_AT = 10_000


@dataclass
class LoginThrottle:
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def _recent(self, key: str, window: float, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def check(self, address: str, account: str, settings: Settings) -> None:
        """Raise RateLimited when the address or the account is over its limit."""
        now = time.monotonic()
        window = settings.login_failure_window
        for kind, key, limit in self._keys(address, account, settings):
            times = self._recent(key, window, now)
            if len(times) >= limit:
                from mailfleet import metrics

                metrics.LOGIN_THROTTLED.labels(kind).inc()
                # The oldest failure that still counts must leave the window.
                wait = max(1, math.ceil(times[-limit] + window - now))
                raise RateLimited("Too many failed logins; try again later", retryAfter=wait)

    def failed(self, address: str, account: str, settings: Settings) -> None:
        now = time.monotonic()
        if len(self._failures) > _SWEEP_AT:
            for key in list(self._failures):
                self._recent(key, settings.login_failure_window, now)
        for _kind, key, limit in self._keys(address, account, settings):
            times = self._failures.setdefault(key, deque())
            times.append(now)
            # Only the newest `limit` failures can ever matter.
            while len(times) > limit:
                times.popleft()

    def succeeded(self, account: str) -> None:
        self._failures.pop(_account_key(account), None)

    def reset(self) -> None:
        self._failures.clear()

    @staticmethod
    def _keys(address: str, account: str, settings: Settings) -> list[tuple[str, str, int]]:
        return [
            ("address", f"address:{address}", settings.login_max_failures_per_address),
            ("account", _account_key(account), settings.login_max_failures_per_account),
        ]


def _account_key(account: str) -> str:
    return f"account:{account.strip().lower()}"


login_throttle = LoginThrottle()
