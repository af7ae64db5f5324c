"""HTTP client for the API: one job (``GET /v0/workflows/{workflow_id}/jobs/{job_id}``) and, through
``archiver.api.listing``, the listing endpoints; each answer is data or one of our errors.

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

Every GET goes through ``get_json``; a job fetch and each listing differ only in their path, their
``where`` and the rule (``check``) their decoded object must pass. How a failure becomes one of our
errors is ``archiver.api.classify``; how ids become a path is ``archiver.api.paths``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Self
from urllib.parse import urlsplit

import requests

import archiver
from archiver.api import listing, paths
from archiver.api.classify import (
    connect_failure,
    envelope_of,
    error_class,
    one_line,
    read_timed_out,
    reason_of,
    retry_after_seconds,
    status_line,
)
from archiver.api.deadline import Deadline, DeadlineAdapter
from archiver.api.paths import segment, show
from archiver.archive.jsonload import Decoded, JsonError, loads
from archiver.archive.payload import error_envelope
from archiver.config import Settings
from archiver.errors import (
    ApiError,
    ArchiverError,
    ConfigError,
    InvalidResponseError,
    TransportError,
)

log = logging.getLogger("archiver.client")

CHUNK_SIZE = 64 * 1024
ERROR_BODY_LIMIT = 64 * 1024  # an error envelope is small; never buffer more of one
_HEADER_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
_CONTENT_LENGTH = re.compile(r"\s*([0-9]+)\s*")


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


@dataclass(frozen=True, slots=True)
class Document:
    """One JSON object answered with 200, checked by the caller's rule (``ApiClient.get_json``)."""

    value: dict[str, Any] = field(repr=False)  # the decoded JSON object
    text: str | None = field(repr=False)  # the body exactly as received, when asked to keep it
    duplicate_keys: tuple[str, ...]  # keys the document repeated (the last value was kept)
    fetched_at: datetime  # aware UTC, when the response completed
    elapsed: float  # seconds, including retries and back-off
    attempts: int  # HTTP requests made


class _Request(NamedTuple):
    """What one GET needs beyond its URL: how to name it in messages and how to judge its body."""

    path: str  # with its query string: for the debug log
    where: str  # "(workflow w, job j)": ends every message about this request
    check: Callable[[dict[str, Any]], str | None] | None  # why a decoded object is unusable
    keep_text: bool
    too_big: str  # what exceeded the body cap, in the message ("body", "the job listing")
    hint: str  # appended to the too-big message: what to do about it


class _Answer(NamedTuple):
    text: str | None
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
        path = _job_path(workflow_id, job_id)
        where = f"(workflow {show(workflow_id)}, job {show(job_id)})"

        def check(data: dict[str, Any]) -> str | None:
            got = data.get("id")
            if not isinstance(got, str):
                return "the job has no string id"
            if got != job_id:
                return f"asked for job {show(job_id)} but got job {show(got)}"
            got_workflow = data.get("workflow_id")
            if got_workflow is not None and got_workflow != workflow_id:
                asked, got = show(workflow_id), show(got_workflow)
                return f"asked for workflow {asked} but got workflow {got}"
            return None

        document = self.get_json(path, where=where, check=check, keep_text=True)
        return FetchedJob(
            workflow_id=workflow_id,
            job_id=job_id,
            body=document.text or "",
            data=document.value,
            fetched_at=document.fetched_at,
            elapsed=document.elapsed,
            attempts=document.attempts,
            duplicate_keys=document.duplicate_keys,
        )

    def list_jobs(self, workflow_id: str) -> listing.JobListing:
        """The summaries of a workflow's jobs (``archiver.api.listing``)."""
        return listing.list_jobs(self, workflow_id)

    def list_workflows(
        self, *, project_id: str | None = None, workflow_id: str | None = None
    ) -> Iterator[listing.WorkflowPage]:
        """The workflows the key can see, a page at a time (``archiver.api.listing``)."""
        return listing.list_workflows(self, project_id=project_id, workflow_id=workflow_id)

    def workflow_estimate(self, workflow_id: str) -> int | None:
        """A workflow's estimated cost in credits, None when the answer has no integer one."""
        return listing.workflow_estimate(self, workflow_id)

    def get_json(
        self,
        path: str,
        *,
        where: str,
        query: Mapping[str, str | int | None] | None = None,
        check: Callable[[dict[str, Any]], str | None] | None = None,
        keep_text: bool = False,
        too_big: str = "body",
        hint: str = "",
    ) -> Document:
        """GET ``path`` (ids escaped by the caller) with ``query``, retried like a job fetch.

        The answer must be a 200 with a JSON object that is not an error envelope and for which
        ``check`` finds no reason to refuse it; anything else is the ``ApiError`` a job fetch
        raises, its message ending with ``where``. The body text is kept only if asked: a
        listing's caller needs the tree, not 30 MB of text beside it.
        """
        if self._closed:
            raise ArchiverError("the API client is closed")
        target = path + paths.query(query or {})
        url = self._base_url() + target
        session = self._session()
        request = _Request(target, where, check, keep_text, too_big, hint)
        started = self._clock()
        total = self._retry.max_attempts or 1
        for attempt in range(total):
            began = time.monotonic()
            try:
                answer = self._attempt(session, url, request)
            except ApiError as exc:
                retry = exc.transient and self._retry.allows(attempt + 1)
                delay = self._retry_delay(attempt, exc) if retry else None
                outcome = f"{exc.status} {exc.reason}" if exc.status else exc.reason
                tries = f"{attempt + 1} of {total}"
                _log(target, outcome, began, tries, delay)
                if self._observer is not None:
                    self._observer(exc.status, exc.reason, time.monotonic() - began)
                if delay is None:
                    raise
                self._sleep(delay)
                continue
            _log(target, 200, began, f"{attempt + 1} of {total}", None)
            if self._observer is not None:
                self._observer(200, "ok", time.monotonic() - began)
            return Document(
                value=answer.decoded.value,
                text=answer.text,
                duplicate_keys=tuple(answer.decoded.duplicate_keys),
                fetched_at=answer.fetched_at,
                elapsed=self._clock() - started,
                attempts=attempt + 1,
            )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced: for any message built from what a server sent."""
        return text.replace(self._key, "<redacted>") if self._key else text

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

    def _attempt(self, session: requests.Session, url: str, request: _Request) -> _Answer:
        s = self._settings
        where = request.where
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
                raw = self._read(response, s.max_body_bytes, deadline, where, request)
                fetched_at = datetime.now(UTC)
        text = self._utf8(raw, where)
        del raw  # a large body is held once, as text, while it is decoded
        decoded = self._decode(text, request)
        return _Answer(text if request.keep_text else None, decoded, fetched_at)

    def _read(
        self,
        response: requests.Response,
        limit: int,
        deadline: Deadline,
        where: str,
        request: _Request | None = None,
    ) -> bytearray:
        """The body, decompressed, or an error: too big, too slow, or cut short.

        A bytearray, grown in place: joining a list of chunks would hold the body twice."""
        status = response.status_code
        announced = _CONTENT_LENGTH.fullmatch(response.headers.get("Content-Length", ""))
        digits = announced.group(1).lstrip("0") if announced else ""
        if len(digits) > 18 or (digits and int(digits) > limit):
            raise self._too_big(status, limit, where, request)
        body = bytearray()
        size = 0
        try:
            # iter_content yields decompressed bytes (urllib3 >= 2.6 inflates at most a chunk at a
            # time), so counting them here also stops a small gzip body that inflates past the cap
            for chunk in response.iter_content(CHUNK_SIZE):
                size += len(chunk)
                if size > limit:
                    raise self._too_big(status, limit, where, request)
                if deadline.expired:
                    raise self._deadline_error(deadline, status, where)
                body += chunk
        except requests.RequestException as exc:
            raise self._request_error(exc, deadline, status, where) from None
        if deadline.expired:  # a close-delimited body cut off by the watchdog looks complete
            raise self._deadline_error(deadline, status, where)
        return body

    def _invalid(self, reason: str, where: str) -> InvalidResponseError:
        text = self.redact(f"200 OK — invalid response: {reason} {where}")
        return InvalidResponseError(text, status=200)

    def _utf8(self, raw: bytearray, where: str) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self._invalid(f"body is not UTF-8 (byte {exc.start})", where) from None

    def _decode(self, text: str, request: _Request) -> Decoded:
        try:
            decoded = loads(text)
        except JsonError as exc:
            raise self._invalid(str(exc), request.where) from None
        data = decoded.value
        if not isinstance(data, dict):
            reason = f"expected a JSON object, got {type(data).__name__}"
            raise self._invalid(reason, request.where)
        envelope = error_envelope(data)  # the archive's rule: an error envelope is never data
        if envelope is not None:
            reason = f"a 200 carrying an error — {envelope.code}: {envelope.message}"
            raise self._invalid(reason, request.where)
        problem = request.check(data) if request.check is not None else None
        if problem is not None:
            raise self._invalid(problem, request.where)
        return decoded

    # -- errors --------------------------------------------------------------------------------

    def _status_error(
        self, response: requests.Response, deadline: Deadline, where: str
    ) -> ApiError:
        status = response.status_code
        line = status_line(status)
        if 300 <= status < 400:  # not even the Location is echoed: it is the server's text
            text = f"{line} — redirect to another location refused {where}"
            return InvalidResponseError(self.redact(text), status=status)
        if not 400 <= status < 600:
            text = f"{line} — unexpected status {where}"
            return InvalidResponseError(self.redact(text), status=status)
        try:
            body = bytes(self._read(response, ERROR_BODY_LIMIT, deadline, where))
        except ApiError:
            body = b""  # the status says enough; the envelope is a bonus
        code, message = envelope_of(body)
        # redact before shortening: a key echoed across the cut would otherwise survive in part
        if code is not None:
            code = one_line(self.redact(code))
        if message is not None:
            message = one_line(self.redact(message))
        retry_after = None
        if status in (429, 503):
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
        detail = f" — {code or 'error'}: {message}" if message else (f" — {code}" if code else "")
        text = self.redact(f"{line}{detail} {where}")
        return error_class(status, code)(text, status=status, code=code, retry_after=retry_after)

    def _request_error(
        self, exc: requests.RequestException, deadline: Deadline, status: int | None, where: str
    ) -> ArchiverError:
        if deadline.expired:
            return self._deadline_error(deadline, status, where)
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            text = f"{status_line(status)} — invalid response: body could not be decompressed"
            return InvalidResponseError(self.redact(f"{text} {where}"), status=status)
        if isinstance(
            exc,
            requests.exceptions.InvalidURL
            | requests.exceptions.MissingSchema
            | requests.exceptions.InvalidSchema
            | requests.exceptions.InvalidHeader,
        ):
            return ConfigError(self.redact(f"cannot send the request: {reason_of(exc)}"))
        connected = True
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            cause, connected = "connect timed out", False
            reason = f"{cause} after {self._settings.connect_timeout}s"
        elif isinstance(exc, requests.exceptions.ReadTimeout) or read_timed_out(exc):
            cause = "read timed out"
            reason = f"{cause} after {self._settings.read_timeout}s"
        elif isinstance(exc, requests.exceptions.ChunkedEncodingError):
            cause = "connection dropped"
            reason = "connection dropped before the body was complete"
        else:
            cause, connected = connect_failure(exc)
            reason = f"connection failed: {reason_of(exc)}"
        text = self.redact(f"{reason} {where}")
        return TransportError(text, status=status, cause=cause, connected=connected)

    def _deadline_error(self, deadline: Deadline, status: int | None, where: str) -> TransportError:
        text = f"request exceeded its {deadline.seconds}s deadline {where}"
        return TransportError(self.redact(text), status=status, cause="deadline exceeded")

    def _too_big(
        self, status: int, limit: int, where: str, request: _Request | None
    ) -> InvalidResponseError:
        what, hint = (request.too_big, request.hint) if request else ("body", "")
        text = f"{status_line(status)} — invalid response: {what} exceeds the {limit}-byte limit"
        return InvalidResponseError(self.redact(f"{text} {where}{hint}"), status=status)

    # -- retries -----------------------------------------------------------------------------------

    def _retry_delay(self, attempt: int, exc: ApiError) -> float:
        return self._retry.delay(attempt, retry_after=exc.retry_after, draw=self._jitter)


# ---------------------------------------------------------------------------------------------
# Helpers without state


_retry_after = retry_after_seconds  # the name tests/polling/test_tracking.py imports


def _log(path: str, outcome: int | str, began: float, attempt: str, delay: float | None) -> None:
    """One debug line per HTTP attempt; ``attempt`` reads "n of m"."""
    retry = f"; retrying in {delay:.2f}s" if delay is not None else ""
    elapsed = time.monotonic() - began
    log.debug("GET %s -> %s in %.3fs (attempt %s)%s", path, outcome, elapsed, attempt, retry)


def _job_path(workflow_id: str, job_id: str) -> str:
    """The escaped path; each id is one segment whatever it holds, once it passes the id rule."""
    workflow, job = segment("workflow_id", workflow_id), segment("job_id", job_id)
    return f"/v0/workflows/{workflow}/jobs/{job}"


def _mask_url(url: str) -> str:
    """The URL without any user:password part."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
