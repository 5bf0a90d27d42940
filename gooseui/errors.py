"""Errors the service layer raises.

Each carries the HTTP status and machine code that DESIGN.md fixes, so that the REST face
can answer `{"detail", "code"}` and the UI can show `detail`, without either face knowing
which rule was broken.
"""

from __future__ import annotations


class GooseUIError(Exception):
    """Base of every error an operator is meant to read."""

    status: int = 500
    code: str = "InternalError"

    def __init__(self, detail: str, *, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code


class NotFound(GooseUIError):
    status = 404
    code = "NotFound"


class Conflict(GooseUIError):
    status = 409
    code = "Conflict"


class Invalid(GooseUIError):
    status = 422
    code = "Invalid"


class Unavailable(GooseUIError):
    """A dependency (MongoDB, the cluster) does not answer."""

    status = 503
    code = "Unavailable"


class UpstreamFailed(GooseUIError):
    """The cluster or the agent answered, but with a failure."""

    status = 502
    code = "UpstreamFailed"


class UpstreamTimeout(GooseUIError):
    status = 504
    code = "Timeout"
