"""One error base class: each error carries its HTTP status and stable code.

Services raise these; one handler in `app.py` renders them in the envelope of
API.md, and dialect routers (compat/) render them in their vendor's shape.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MailfleetError(Exception):
    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "BAD_REQUEST"
    # An error that reports what the request did rather than what it refused:
    # the request's writes are committed before the error is answered.
    keeps_writes: ClassVar[bool] = False

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def to_error_body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class ValidationFailed(MailfleetError):
    status_code = 400
    code = "VALIDATION_ERROR"

    def __init__(self, message: str, details: list[dict[str, Any]]) -> None:
        super().__init__(message, details=details)

    @classmethod
    def for_field(cls, field: str, message: str) -> ValidationFailed:
        return cls(message, [{"field": field, "message": message}])

    @classmethod
    def invalid_json(cls, reason: str, document: str, position: int) -> ValidationFailed:
        """Malformed JSON, located by line and column (a character offset means
        nothing to someone looking at their request in an editor)."""
        return cls(
            f"The request body is not valid JSON: {json_error_text(reason, document, position)}",
            [json_error_detail(reason, document, position)],
        )


def json_error_text(reason: str, document: str, position: int) -> str:
    line, column = _line_and_column(document, position)
    return f"{reason} at line {line}, column {column}"


def json_error_detail(reason: str, document: str, position: int) -> dict[str, Any]:
    """The `details` entry of a malformed JSON body: the field is the body itself."""
    line, column = _line_and_column(document, position)
    return {
        "field": "body",
        "in": "body",
        "message": json_error_text(reason, document, position),
        "type": "json_invalid",
        "line": line,
        "column": column,
    }


def _line_and_column(document: str, position: int) -> tuple[int, int]:
    # As json.JSONDecodeError counts them: both from 1.
    line = document.count("\n", 0, position) + 1
    column = position - document.rfind("\n", 0, position)
    return line, column


class Unauthorized(MailfleetError):
    status_code = 401
    code = "UNAUTHORIZED"


class Forbidden(MailfleetError):
    status_code = 403
    code = "FORBIDDEN"


class NotFound(MailfleetError):
    status_code = 404
    code = "NOT_FOUND"


class Conflict(MailfleetError):
    status_code = 409
    code = "CONFLICT"


class SubscriptionRequired(MailfleetError):
    status_code = 403
    code = "SUBSCRIPTION_REQUIRED"


class LimitReached(MailfleetError):
    status_code = 403
    code = "LIMIT_REACHED"


class RateLimited(MailfleetError):
    status_code = 429
    code = "RATE_LIMITED"


ERROR_CODES: dict[int, str] = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
    500: "INTERNAL_ERROR",
}
