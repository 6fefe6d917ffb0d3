"""Logging: one format, level from MAILFLEET_LOG_LEVEL.

Nothing here logs a request body, a header or a secret; modules log ids.
"""

from __future__ import annotations

import logging

_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str) -> None:
    root = logging.getLogger()
    if not any(getattr(h, "_mailfleet", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._mailfleet = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    # httpx logs full URLs, which may carry tokens in query strings.
    logging.getLogger("httpx").setLevel(logging.WARNING)
