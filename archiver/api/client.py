"""HTTP client for one job (``GET /v0/workflows/{workflow_id}/jobs/{job_id}``): data or our errors.

Why it is built this way:

* **Pooling, per thread.** A ``requests.Session`` pools connections but is not thread-safe, so
  each worker thread gets its own (``threading.local``) and one client can serve a thread pool.
* **A real deadline.** requests' read timeout is per socket read, so a dripping server never
  trips it; each request runs under a ``Deadline`` (``archiver.api.deadline``) whose watchdog
  shuts the socket down, and the streamed body is checked against the clock between chunks.
* **Our own retry loop, not urllib3's ``Retry``.** ``Retry`` cannot see the deadline, the body
  cap, or our classification (an invalid 200 is permanent, a body cut short by a dropped
  connection is transient), and it has honoured huge ``Retry-After`` values uncapped
  (urllib3#1338). Whether to retry is asked of the error (``ApiError.transient``).
* **No redirects.** The key must only ever go to the configured host.
* **The key stays put.** It lives only in the auth object of each session (whose ``repr`` hides
  it); every message built from server text or exception text goes through a redactor, so even
  a server that echoes the key cannot put it into an exception or a log line.
"""

from __future__ import annotations

import email.utils
import http
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Self
from urllib.parse import quote, urlsplit

import requests
import urllib3

import archiver
from archiver.api.deadline import Deadline, DeadlineAdapter
from archiver.archive.jsonload import Decoded, JsonError, loads
from archiver.archive.payload import error_envelope
from archiver.config import Settings
from archiver.errors import (
    ApiError,
    ArchiverError,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ForbiddenError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    TransportError,
)
from archiver.ids import id_problem, shown_id

log = logging.getLogger("archiver.client")

CHUNK_SIZE = 64 * 1024
ERROR_BODY_LIMIT = 64 * 1024  # an error envelope is small; never buffer more of one
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
_DELTA_SECONDS = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*")
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_CONTENT_LENGTH = re.compile(r"\s*([0-9]+)\s*")
# noise in urllib3's error texts: object reprs and "HTTPConnection(host=..., port=...): " prefixes
_NOISE = re.compile(r"<[^<>]* object at 0x[0-9a-f]+>:?\s*|\b_?HTTPS?Connection\([^()]*\):\s*")


@dataclass(frozen=True)
class FetchedJob:
    workflow_id: str
    job_id: str
    body: str = field(repr=False)  # the response text exactly as received (decoded UTF-8)
    data: dict[str, Any] = field(repr=False)  # the decoded JSON object
    fetched_at: datetime  # aware UTC, when the response completed
    elapsed: float  # seconds, including retries and back-off
    attempts: int  # HTTP requests made
    duplicate_keys: tuple[str, ...] = ()  # keys the payload repeated (the last value was kept)


class _Answer(NamedTuple):
    text: str
    decoded: Decoded
    fetched_at: datetime


class _KeyAuth(requests.auth.AuthBase):
    """Sets the Authorization header; also keeps requests from consulting ~/.netrc."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._value
        return request

    def __repr__(self) -> str:
        return "<API key hidden>"


# ---------------------------------------------------------------------------------------------
# The client


class ApiClient:
    """Fetches jobs; safe to share between threads. Close it (or use ``with``) when done."""

    def __init__(
        self,
        settings: Settings,
        *,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[float, float], float] = random.uniform,
        observer: Callable[[int | None, str, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        # times a fetch's ``elapsed`` (retries and back-off included); injectable with ``sleep`` so
        # a test can see a back-off counted without waiting it. Request deadlines stay on the real
        # clock: they bound real network waits.
        self._clock = clock
        # called once per HTTP attempt with (status or None, outcome label, seconds): metrics
        self._observer = observer
        self._sleep = sleep
        self._jitter = jitter  # injectable so tests can pin the otherwise random back-off
        self._retry = settings.http_retry()
        self._key = (settings.api_key or "").strip()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sessions: dict[threading.Thread, requests.Session] = {}
        self._closed = False

    def __repr__(self) -> str:
        key = "<hidden>" if self._key else "<missing>"
        return f"ApiClient(api_url={_mask_url(self._settings.api_url)!r}, api_key={key})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's session; call once the workers are done."""
        with self._lock:
            self._closed = True
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for session in sessions:
            session.close()

    def fetch_job(self, workflow_id: str, job_id: str) -> FetchedJob:
        if self._closed:
            raise ArchiverError("the API client is closed")
        path = _job_path(workflow_id, job_id)
        url = self._base_url() + path
        session = self._session()
        where = f"(workflow {_show(workflow_id)}, job {_show(job_id)})"
        started = self._clock()
        total = self._retry.max_attempts or 1
        for attempt in range(total):
            began = time.monotonic()
            try:
                answer = self._attempt(session, url, workflow_id, job_id, where)
            except ApiError as exc:
                retry = exc.transient and self._retry.allows(attempt + 1)
                delay = self._retry_delay(attempt, exc) if retry else None
                outcome = f"{exc.status} {exc.reason}" if exc.status else exc.reason
                tries = f"{attempt + 1} of {total}"
                _log(path, outcome, began, tries, delay)
                if self._observer is not None:
                    self._observer(exc.status, exc.reason, time.monotonic() - began)
                if delay is None:
                    raise
                self._sleep(delay)
                continue
            _log(path, 200, began, f"{attempt + 1} of {total}", None)
            if self._observer is not None:
                self._observer(200, "ok", time.monotonic() - began)
            return FetchedJob(
                workflow_id=workflow_id,
                job_id=job_id,
                body=answer.text,
                data=answer.decoded.value,
                fetched_at=answer.fetched_at,
                elapsed=self._clock() - started,
                attempts=attempt + 1,
                duplicate_keys=tuple(answer.decoded.duplicate_keys),
            )
        raise AssertionError("unreachable: the last attempt returns or raises")

    # -- setup ---------------------------------------------------------------------------------

    def _auth_value(self) -> str:
        if not self._key:
            raise ConfigError("no API key: set PIXXEL_API_KEY or pass --api-key")
        scheme = self._settings.auth_scheme.strip()
        value = f"{scheme} {self._key}" if scheme else self._key
        if not _HEADER_VALUE.fullmatch(value):
            # requests would echo the whole value in its error; say what is wrong, not what it is
            raise ConfigError(
                "the API key or auth scheme has characters an HTTP header cannot hold"
            )
        return value

    def _base_url(self) -> str:
        url = self._settings.api_url.strip()
        shown = _mask_url(url)
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises ValueError on a malformed port
        except ValueError:
            raise ConfigError(f"api_url {shown!r} is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"api_url {shown!r} is not an http(s) URL")
        if "@" in parts.netloc:
            raise ConfigError("api_url must not contain credentials; pass the key separately")
        if parts.query or parts.fragment:
            raise ConfigError(f"api_url {shown!r} must not have a query or fragment")
        return url.rstrip("/")

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is not None:
            return session
        auth = self._auth_value()
        session = requests.Session()
        session.auth = _KeyAuth(auth)
        session.headers["User-Agent"] = f"job-archiver/{archiver.__version__}"
        session.headers["Accept"] = "application/json"
        adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=1)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        # The environment (proxies, CA bundle) is read once here, not on every request as
        # requests does with trust_env (it re-reads os.environ each time: ~0.5 ms a request).
        session.proxies = requests.utils.get_environ_proxies(self._base_url())
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            session.verify = ca_bundle
        session.trust_env = False
        with self._lock:
            if self._closed:
                session.close()
                raise ArchiverError("the API client is closed")
            # a thread pool that came and went leaves sessions behind: close those of dead threads
            for thread in [t for t in self._sessions if not t.is_alive()]:
                self._sessions.pop(thread).close()
            self._sessions[threading.current_thread()] = session
        self._local.session = session
        return session

    # -- one request ---------------------------------------------------------------------------

    def _attempt(
        self, session: requests.Session, url: str, workflow_id: str, job_id: str, where: str
    ) -> _Answer:
        s = self._settings
        timeout = (
            min(s.connect_timeout, s.request_deadline),
            min(s.read_timeout, s.request_deadline),
        )
        with Deadline(s.request_deadline) as deadline:
            try:
                response = session.get(url, timeout=timeout, stream=True, allow_redirects=False)
            except requests.RequestException as exc:
                raise self._request_error(exc, deadline, None, where) from None
            with response:
                if response.status_code != 200:
                    raise self._status_error(response, deadline, where)
                raw = self._read(response, s.max_body_bytes, deadline, where)
                fetched_at = datetime.now(UTC)
        text, decoded = self._decode_job(raw, workflow_id, job_id, where)
        return _Answer(text, decoded, fetched_at)

    def _read(
        self, response: requests.Response, limit: int, deadline: Deadline, where: str
    ) -> bytes:
        """The body, decompressed, or an error: too big, too slow, or cut short."""
        status = response.status_code
        announced = _CONTENT_LENGTH.fullmatch(response.headers.get("Content-Length", ""))
        digits = announced.group(1).lstrip("0") if announced else ""
        if len(digits) > 18 or (digits and int(digits) > limit):
            raise self._too_big(status, limit, where)
        chunks: list[bytes] = []
        size = 0
        try:
            # iter_content yields decompressed bytes (urllib3 >= 2.6 inflates at most a chunk at a
            # time), so counting them here also stops a small gzip body that inflates past the cap
            for chunk in response.iter_content(CHUNK_SIZE):
                size += len(chunk)
                if size > limit:
                    raise self._too_big(status, limit, where)
                if deadline.expired:
                    raise self._deadline_error(deadline, status, where)
                chunks.append(chunk)
        except requests.RequestException as exc:
            raise self._request_error(exc, deadline, status, where) from None
        if deadline.expired:  # a close-delimited body cut off by the watchdog looks complete
            raise self._deadline_error(deadline, status, where)
        return b"".join(chunks)

    def _decode_job(
        self, raw: bytes, workflow_id: str, job_id: str, where: str
    ) -> tuple[str, Decoded]:
        def invalid(reason: str) -> InvalidResponseError:
            text = self._redact(f"200 OK — invalid response: {reason} {where}")
            return InvalidResponseError(text, status=200)

        try:
            text = raw.decode("utf-8")
            decoded = loads(text)
        except UnicodeDecodeError as exc:
            raise invalid(f"body is not UTF-8 (byte {exc.start})") from None
        except JsonError as exc:
            raise invalid(str(exc)) from None
        data = decoded.value
        if not isinstance(data, dict):
            raise invalid(f"expected a JSON object, got {type(data).__name__}")
        envelope = error_envelope(data)  # the archive's rule: an error envelope is never a job
        if envelope is not None:
            raise invalid(f"a 200 carrying an error — {envelope.code}: {envelope.message}")
        got = data.get("id")
        if not isinstance(got, str):
            raise invalid("the job has no string id")
        if got != job_id:
            raise invalid(f"asked for job {_show(job_id)} but got job {_show(got)}")
        got_workflow = data.get("workflow_id")
        if got_workflow is not None and got_workflow != workflow_id:
            raise invalid(
                f"asked for workflow {_show(workflow_id)} but got workflow {_show(got_workflow)}"
            )
        return text, decoded

    # -- errors --------------------------------------------------------------------------------

    def _status_error(
        self, response: requests.Response, deadline: Deadline, where: str
    ) -> ApiError:
        status = response.status_code
        line = _status_line(status)
        if 300 <= status < 400:  # not even the Location is echoed: it is the server's text
            text = f"{line} — redirect to another location refused {where}"
            return InvalidResponseError(self._redact(text), status=status)
        if not 400 <= status < 600:
            text = f"{line} — unexpected status {where}"
            return InvalidResponseError(self._redact(text), status=status)
        try:
            body = self._read(response, ERROR_BODY_LIMIT, deadline, where)
        except ApiError:
            body = b""  # the status says enough; the envelope is a bonus
        code, message = _envelope(body)
        # redact before shortening: a key echoed across the cut would otherwise survive in part
        if code is not None:
            code = _one_line(self._redact(code))
        if message is not None:
            message = _one_line(self._redact(message))
        retry_after = None
        if status in (429, 503):
            retry_after = _retry_after(response.headers.get("Retry-After"))
        detail = f" — {code or 'error'}: {message}" if message else (f" — {code}" if code else "")
        text = self._redact(f"{line}{detail} {where}")
        return _error_class(status, code)(text, status=status, code=code, retry_after=retry_after)

    def _request_error(
        self, exc: requests.RequestException, deadline: Deadline, status: int | None, where: str
    ) -> ArchiverError:
        if deadline.expired:
            return self._deadline_error(deadline, status, where)
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            text = f"{_status_line(status)} — invalid response: body could not be decompressed"
            return InvalidResponseError(self._redact(f"{text} {where}"), status=status)
        if isinstance(
            exc,
            requests.exceptions.InvalidURL
            | requests.exceptions.MissingSchema
            | requests.exceptions.InvalidSchema
            | requests.exceptions.InvalidHeader,
        ):
            return ConfigError(self._redact(f"cannot send the request: {_reason(exc)}"))
        connected = True
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            cause, connected = "connect timed out", False
            reason = f"{cause} after {self._settings.connect_timeout}s"
        elif isinstance(exc, requests.exceptions.ReadTimeout) or _read_timed_out(exc):
            cause = "read timed out"
            reason = f"{cause} after {self._settings.read_timeout}s"
        elif isinstance(exc, requests.exceptions.ChunkedEncodingError):
            cause = "connection dropped"
            reason = "connection dropped before the body was complete"
        else:
            cause, connected = _connect_failure(exc)
            reason = f"connection failed: {_reason(exc)}"
        text = self._redact(f"{reason} {where}")
        return TransportError(text, status=status, cause=cause, connected=connected)

    def _deadline_error(self, deadline: Deadline, status: int | None, where: str) -> TransportError:
        text = f"request exceeded its {deadline.seconds}s deadline {where}"
        return TransportError(self._redact(text), status=status, cause="deadline exceeded")

    def _too_big(self, status: int, limit: int, where: str) -> InvalidResponseError:
        text = f"{_status_line(status)} — invalid response: body exceeds the {limit}-byte limit"
        return InvalidResponseError(self._redact(f"{text} {where}"), status=status)

    def _redact(self, text: str) -> str:
        return text.replace(self._key, "<redacted>") if self._key else text

    # -- retries -----------------------------------------------------------------------------------

    def _retry_delay(self, attempt: int, exc: ApiError) -> float:
        return self._retry.delay(attempt, retry_after=exc.retry_after, draw=self._jitter)


# ---------------------------------------------------------------------------------------------
# Helpers without state


def _log(path: str, outcome: int | str, began: float, attempt: str, delay: float | None) -> None:
    """One debug line per HTTP attempt; ``attempt`` reads "n of m"."""
    retry = f"; retrying in {delay:.2f}s" if delay is not None else ""
    elapsed = time.monotonic() - began
    log.debug("GET %s -> %s in %.3fs (attempt %s)%s", path, outcome, elapsed, attempt, retry)


def _job_path(workflow_id: str, job_id: str) -> str:
    """The escaped path; each id is one segment whatever it holds, once it passes the id rule."""
    for name, value in (("workflow_id", workflow_id), ("job_id", job_id)):
        if not isinstance(value, str) or not value:
            raise BadRequestError(f"{name} must be a non-empty string")
        if value in (".", ".."):
            # requests un-escapes %2E and urllib3 then removes dot segments: no way to send these
            raise BadRequestError(f"{name} {value!r} cannot be sent as a path segment")
        problem = id_problem(value)
        if problem:
            raise BadRequestError(f"{name} {shown_id(value)} {problem}; not sent")
    # the id rule refused lone surrogates, the only text quote() cannot encode
    return f"/v0/workflows/{quote(workflow_id, safe='')}/jobs/{quote(job_id, safe='')}"


def _error_class(status: int, code: str | None) -> type[ApiError]:
    if status == 401 or (status == 403 and _is_auth_code(code)):
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


def _is_auth_code(code: str | None) -> bool:
    if not code:
        return False
    lowered = code.lower()
    # "authenticat…" but not "not_authorized": a job the key may not see is not a bad key
    hints = ("authenticat", "api_key", "apikey", "token")
    return lowered in AUTH_FAILURE_CODES or any(p in lowered for p in hints)


def _envelope(body: bytes) -> tuple[str | None, str | None]:
    """``error.code`` and ``error.message`` of an error envelope (``archiver.archive.payload``'s
    rule), if the body is one."""
    try:
        envelope = error_envelope(loads(body).value)
    except JsonError:
        return None, None
    return (envelope.code, envelope.message) if envelope is not None else (None, None)


def _one_line(value: str | int) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta seconds or an HTTP date; None if unusable."""
    if not value:
        return None
    match = _DELTA_SECONDS.fullmatch(value)
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


def _status_line(status: int | None) -> str:
    if status is None:
        return "no response"
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _show(value: object) -> str:
    """An id as it should appear in a message: bare when plain, quoted when it could mislead."""
    if isinstance(value, str) and value.isprintable() and " " not in value and len(value) <= 100:
        return value
    text = repr(value)
    return text if len(text) <= 100 else text[:99] + "…"


def _read_timed_out(exc: requests.RequestException) -> bool:
    """A read timeout in the middle of the body: requests re-raises it from ``iter_content`` as
    a ConnectionError around urllib3's ReadTimeoutError (not as its own ReadTimeout)."""
    inner = exc.args[0] if exc.args else None
    return isinstance(inner, urllib3.exceptions.ReadTimeoutError)


def _connect_failure(exc: BaseException) -> tuple[str, bool]:
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


def _reason(exc: BaseException) -> str:
    """A short reason from requests' nested errors, without object addresses or pool reprs."""
    inner: BaseException = exc
    while inner.args and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    reason = getattr(inner, "reason", None)
    if isinstance(reason, BaseException):
        inner = reason
    return _one_line(_NOISE.sub("", str(inner)) or type(inner).__name__)


def _mask_url(url: str) -> str:
    """The URL without any user:password part."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
