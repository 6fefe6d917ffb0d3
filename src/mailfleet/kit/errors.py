"""One error base class: each error carries its HTTP status and stable code.

Services raise these; one handler in `app.py` renders them in the envelope of
API.md, and dialect routers (compat/) render them in their vendor's shape.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MailfleetError(Exception):
    status_code: ClassVar[int] = 400
    code: ClassVar[str] = "BAD_REQUEST"

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
