"""How an HTTP failure becomes one of our errors: its class, its text, a server's Retry-After.

Stateless, so the client (``archiver.api.client``) keeps only the talking: which ``ApiError``
subclass a status and an error code make, the cause of a failed connection in a few words, and
server-provided text cut to one readable line.
"""

from __future__ import annotations

import email.utils
import http
import math
import re
from datetime import UTC, datetime

import requests
import urllib3

from archiver.archive.jsonload import JsonError, loads
from archiver.archive.payload import error_envelope
from archiver.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    ServerError,
)

MESSAGE_LIMIT = 300  # server-provided text kept in a message, so it stays one readable line
AUTH_FAILURE_CODES = frozenset(
    {
        "unauthorized",
        "unauthenticated",
        "invalid_api_key",
        "invalid_key",
        "invalid_token",
        "authentication_failed",
        "auth_failed",
        "api_key_invalid",
        "invalid_credentials",
    }
)
DELTA_SECONDS = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*")

# noise in urllib3's error texts: object reprs and "HTTPConnection(host=..., port=...): " prefixes
NOISE = re.compile(r"<[^<>]* object at 0x[0-9a-f]+>:?\s*|\b_?HTTPS?Connection\([^()]*\):\s*")


def error_class(status: int, code: str | None) -> type[ApiError]:
    if status == 401 or (status == 403 and is_auth_code(code)):
        return AuthenticationError
    if status == 403:
        return ForbiddenError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return ServerError
    return BadRequestError


def is_auth_code(code: str | None) -> bool:
    if not code:
        return False
    lowered = code.lower()
    # "authenticat…" but not "not_authorized": a job the key may not see is not a bad key
    hints = ("authenticat", "api_key", "apikey", "token")
    return lowered in AUTH_FAILURE_CODES or any(p in lowered for p in hints)


def envelope_of(body: bytes) -> tuple[str | None, str | None]:
    """``error.code`` and ``error.message`` of an error envelope (``archiver.archive.payload``'s
    rule), if the body is one."""
    try:
        envelope = error_envelope(loads(body).value)
    except JsonError:
        return None, None
    return (envelope.code, envelope.message) if envelope is not None else (None, None)


def one_line(value: str | int) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    match = DELTA_SECONDS.fullmatch(value)
    if match:
        seconds = float(match.group(1))
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def status_line(status: int | None) -> str:
    if status is None:
        return "no response"
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def read_timed_out(exc: requests.RequestException) -> bool:
    """A read timeout in the middle of the body: requests re-raises it from ``iter_content`` as
    a ConnectionError around urllib3's ReadTimeoutError (not as its own ReadTimeout)."""
    inner = exc.args[0] if exc.args else None
    return isinstance(inner, urllib3.exceptions.ReadTimeoutError)


def connect_failure(exc: BaseException) -> tuple[str, bool]:
    """The cause of a connection error in a few words, and whether a connection was made:
    urllib3 raises ``NewConnectionError`` (``NameResolutionError`` for DNS) before one is."""
    inner: BaseException = exc
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    found = getattr(inner, "reason", None)
    if isinstance(found, urllib3.exceptions.NameResolutionError):
        return "DNS lookup failed", False
    if isinstance(found, urllib3.exceptions.NewConnectionError):
        refused = "refused" in str(found).lower()
        return ("connection refused" if refused else "no connection"), False
    return "connection failed", True


def reason_of(exc: BaseException) -> str:
    """A short reason from requests' nested errors, without object addresses or pool reprs."""
    inner: BaseException = exc
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    reason = getattr(inner, "reason", None)
    if isinstance(reason, BaseException):
        inner = reason
    return one_line(NOISE.sub("", str(inner)) or type(inner).__name__)
