"""Reusable input types for request models."""

from __future__ import annotations

import functools
import re
from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, Field

from mailfleet.kit.names import ascii_name


def normalize_email(value: str) -> str:
    """Syntax-check an address (no DNS) and lowercase it, as SendKit stores emails.

    `.test` domains (RFC 2606) are accepted so deployments and tests can use them.
    """
    try:
        result = validate_email(value.strip(), check_deliverability=False, test_environment=True)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return result.normalized.lower()


EmailAddress = Annotated[str, AfterValidator(normalize_email)]


@functools.lru_cache(maxsize=4096)
def normalize_hostname(value: str) -> str:
    """A DNS name or IP literal, IDNA-encoded (UTS 46) and lowercased; no scheme, path or port.

    Cached: a bulk import names the same few servers on every row (a refused name
    raises each time; only answers are cached).
    """
    import ipaddress

    host = value.strip().rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    try:
        encoded = ascii_name(host)
    except ValueError as exc:
        raise ValueError(f"not a valid host name ({exc})") from None
    labels = encoded.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise ValueError("not a valid host name (expected e.g. smtp.example.com)")
    return encoded


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

Hostname = Annotated[str, AfterValidator(normalize_hostname)]


def header_token(value: str) -> str:
    """An API key or token that travels in an HTTP header: visible ASCII only.

    HTTP clients encode header values as ASCII; anything else failed with a
    UnicodeEncodeError (a 500) when the header was built.
    """
    if not value or any(not "!" <= char <= "~" for char in value):
        raise ValueError("must be printable ASCII without spaces, as API keys and tokens are")
    return value


HeaderToken = Annotated[str, AfterValidator(header_token)]

# A TCP port. Strict: pydantic's lax mode took JSON `true` as port 1 and "587" as 587.
Port = Annotated[int, Field(strict=True, ge=1, le=65535)]
