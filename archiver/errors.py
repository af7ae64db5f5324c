"""The project's exceptions: one base, messages fit for a one-line CLI error.

Transient versus permanent is a property of the error (``transient``), so retry loops and the
polling policy ask the error instead of matching status codes themselves.
"""

from __future__ import annotations


class ArchiverError(Exception):
    """Base of every error the archiver raises on purpose."""

    transient: bool = False


class ConfigError(ArchiverError):
    """A setting is missing or malformed."""


class DatabaseError(ArchiverError):
    """The database cannot be reached or is not at the expected schema."""


class PayloadError(ArchiverError):
    """A payload cannot be archived at all (not an object, no id, a value no column can hold).

    Values that merely fail to parse are not errors: they are recorded as problems and the
    payload is archived anyway.
    """

    def __init__(
        self, message: str, *, workflow_id: str | None = None, job_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.workflow_id = workflow_id
        self.job_id = job_id


class ApiError(ArchiverError):
    """The API answered with an error, or could not be talked to.

    Messages read like ``"403 Forbidden — forbidden_access: no access to workflow"``; they never
    contain the API key.
    """

    reason = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class TransportError(ApiError):
    """Connection refused or reset, timeout, deadline exceeded: the request may succeed later.

    ``cause`` says which in a few words (``connection refused``, ``DNS lookup failed``, ``read
    timed out``); ``connected`` is False when no connection was made at all, which no job can
    cause: a pass whose first requests all fail that way stops (``archiver.polling.failures``).
    """

    transient = True
    reason = "transport"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        cause: str = "connection failed",
        connected: bool = True,
    ) -> None:
        super().__init__(message, status=status)
        self.cause = cause
        self.connected = connected


class AuthenticationError(ApiError):
    """The key was rejected (401, or 403 with an authentication code): no job will succeed."""

    reason = "auth"


class ForbiddenError(ApiError):
    """403 for this job only: the key works but may not see this workflow or job."""

    reason = "forbidden"


class NotFoundError(ApiError):
    reason = "not_found"


class BadRequestError(ApiError):
    reason = "bad_request"


class RateLimitedError(ApiError):
    transient = True
    reason = "rate_limited"


class ServerError(ApiError):
    transient = True
    reason = "server_error"


class InvalidResponseError(ApiError):
    """The API answered 200 but not with the job that was asked for (not JSON, wrong shape, ids)."""

    reason = "invalid_response"
