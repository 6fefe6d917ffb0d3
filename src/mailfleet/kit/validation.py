"""Reusable input types for request models."""

from __future__ import annotations

from typing import Annotated

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator


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
