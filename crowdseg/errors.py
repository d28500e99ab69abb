"""Domain errors: what services raise. ``crowdseg.api.exception_handler`` maps them to HTTP."""

from __future__ import annotations


class DomainError(Exception):
    """A request the domain refuses. ``code`` is stable for clients; ``message`` is for people."""

    status = 400
    code = "invalid"

    def __init__(
        self, message: str, *, code: str | None = None, fields: dict | None = None, headers: dict | None = None
    ):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.fields = fields or {}
        self.headers = headers or {}  # e.g. Retry-After


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class TooLarge(DomainError):
    status = 413
    code = "too_large"


class Unavailable(DomainError):
    status = 503
    code = "unavailable"


class Unprocessable(DomainError):
    status = 422
    code = "unprocessable"
