"""Reading the console's HTML forms: text fields, numbers, and readable errors."""

from __future__ import annotations

from pydantic import ValidationError
from starlette.datastructures import FormData


def form_text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def form_number(form: FormData, name: str, default: int | None = None) -> int | str | None:
    """A number field as an int; anything else as typed, for validation to name."""
    text = form_text(form, name)
    if not text:
        return default
    return int(text) if text.isdigit() and len(text) < 10 else text


def safe_next(target: str | None) -> str:
    # Only a path on this site: never an absolute or protocol-relative URL.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def validation_message(exc: ValidationError, labels: dict[str, str]) -> str:
    parts = []
    for error in exc.errors()[:5]:
        field = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{labels.get(field, field)}: {error.get('msg', 'invalid')}")
    return "; ".join(parts)
