"""A placement test's messages, and what a seed's copy says about authentication.

Each message carries its tracking code (`<test code>-<n>`) in the
X-Mailfleet-Placement header and in its body, so a seed finds every message of
a test with one header search for the test code.
"""

from __future__ import annotations

import html as html_escape
from collections.abc import Iterable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Any, Final, TypedDict

import authres  # type: ignore[import-untyped]

TRACKING_HEADER: Final = "X-Mailfleet-Placement"
AUTH_HEADER: Final = "Authentication-Results"
AUTH_METHODS: Final = ("spf", "dkim", "dmarc")
# When several results of one method are given (a message with two DKIM
# signatures), the best one counts: one valid signature is enough for a receiver.
_RANK: Final = {
    "pass": 0,
    "bestguesspass": 1,
    "neutral": 2,
    "softfail": 3,
    "fail": 4,
    "policy": 5,
    "temperror": 6,
    "permerror": 7,
    "none": 8,
}


class Auth(TypedDict):
    spf: str | None
    dkim: str | None
    dmarc: str | None


def tracking_code(test_code: str, seq: int) -> str:
    return f"{test_code}-{seq}"


def build_message(
    *,
    test_code: str,
    code: str,
    message_id: str,
    subject: str,
    text: str | None,
    html: str | None,
    sender_email: str,
    sender_name: str,
    seed_email: str,
    at: datetime,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = formataddr((sender_name, sender_email))
    message["To"] = seed_email
    message["Subject"] = subject
    message["Date"] = format_datetime(at)
    message["Message-ID"] = message_id
    message[TRACKING_HEADER] = code
    footer = f"Placement test {test_code} (ref {code})"
    body = (text or "").rstrip()
    message.set_content(f"{body}\n\n{footer}\n" if body else f"{footer}\n")
    if html:
        tail = f'<p style="color:#888;font-size:11px">{html_escape.escape(footer)}</p>'
        marked = html.replace("</body>", tail + "</body>") if "</body>" in html else html + tail
        message.add_alternative(marked, subtype="html")
    return message


def _best(results: Iterable[str]) -> str | None:
    ranked = sorted(results, key=lambda result: _RANK.get(result, len(_RANK)))
    return ranked[0] if ranked else None


def _results(value: str) -> tuple[str, list[Any]] | None:
    """(authserv-id, results) of one header value, or None when it does not parse.

    A trailing `;` (Microsoft writes one) is dropped; a header authres refuses whole
    is read clause by clause, so one odd clause costs only itself."""
    text = value.strip().rstrip(";").strip()
    try:
        header = authres.AuthenticationResultsHeader.parse(f"{AUTH_HEADER}: {text}")
    except (authres.AuthResError, ValueError, IndexError):
        pass
    else:
        return str(header.authserv_id), list(header.results)
    authserv, _, rest = text.partition(";")
    results: list[Any] = []
    for clause in rest.split(";"):
        try:
            one = authres.AuthenticationResultsHeader.parse(
                f"{AUTH_HEADER}: {authserv}; {clause.strip()}"
            )
        except (authres.AuthResError, ValueError, IndexError):
            continue
        results.extend(one.results)
    return (authserv.strip(), results) if results else None


def parse_auth(values: Iterable[str], authserv_id: str | None = None) -> Auth:
    """SPF, DKIM and DMARC results from a message's Authentication-Results headers.

    The topmost header that parses wins (the receiving server adds its own on top of
    any the sender forged), or the first from `authserv_id` when given. A method the
    header does not mention is None; a header that does not parse is skipped.
    """
    for value in values:
        parsed = _results(value)
        if parsed is None:
            continue
        server, results = parsed
        if authserv_id is not None and server.lower() != authserv_id.lower():
            continue
        found: dict[str, list[str]] = {method: [] for method in AUTH_METHODS}
        for result in results:
            method = str(result.method).lower()
            if method in found:
                found[method].append(str(result.result).lower())
        return Auth(spf=_best(found["spf"]), dkim=_best(found["dkim"]), dmarc=_best(found["dmarc"]))
    return Auth(spf=None, dkim=None, dmarc=None)
