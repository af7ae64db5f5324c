"""The API client against a real HTTP server on 127.0.0.1: retries, deadlines, caps, errors, keys.

Nothing in requests is patched: the only things injected are the client's ``sleep`` (a recorder,
so back-off is asserted without waiting) and, where exact delays are asserted, its ``jitter``.
"""

from __future__ import annotations

import gzip
import inspect
import json
import logging
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any
from urllib.parse import quote

import pytest
from http_helpers import Recorded, Reply, ScriptedServer, echo_job, error, job

import archiver
from archiver.api.client import ApiClient, FetchedJob
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

pytestmark = pytest.mark.integration  # every test talks to a real HTTP server on 127.0.0.1

KEY = "test-key-1234"
SENTINEL = "SENTINEL-KEY-8f3a"
PATH = "/v0/workflows/w1/jobs/j1"
WHERE = "(workflow w1, job j1)"


class SleepRecorder:
    """Stands in for time.sleep: records the delay instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class FakeClock:
    """A monotonic clock that only its own ``sleep`` moves: a back-off is counted, never waited."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def upper_bound(low: float, high: float) -> float:
    """A jitter that always picks the top of the range, so back-off delays are exact."""
    return high


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_key": KEY,
        "api_url": url,
        "connect_timeout": 1.0,
        "read_timeout": 2.0,
        "request_deadline": 5.0,
        "max_retries": 2,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "retry_after_cap": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


MakeClient = Callable[..., ApiClient]


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy from the environment must not swallow requests to 127.0.0.1."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("all_proxy", raising=False)


@pytest.fixture
def srv() -> Iterator[ScriptedServer]:
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def make_client(srv: ScriptedServer, sleeps: SleepRecorder) -> Iterator[MakeClient]:
    """``make_client(max_retries=0, ...)``: a client for ``srv`` with recorded sleeps."""
    clients: list[ApiClient] = []

    def make(
        url: str | None = None,
        *,
        sleep: Callable[[float], None] | None = None,
        jitter: Callable[[float, float], float] | None = None,
        clock: Callable[[], float] | None = None,
        **overrides: Any,
    ) -> ApiClient:
        extra: dict[str, Any] = {"jitter": jitter} if jitter else {}
        if clock is not None:
            extra["clock"] = clock
        client = ApiClient(
            settings_for(url or srv.url, **overrides), sleep=sleep or sleeps, **extra
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def fetch_error(client: ApiClient, workflow_id: str = "w1", job_id: str = "j1") -> ApiError:
    with pytest.raises(ApiError) as caught:
        client.fetch_job(workflow_id, job_id)
    return caught.value


# -- success -----------------------------------------------------------------------------------


def test_success_returns_the_job_and_sends_the_headers(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    text = json.dumps(job(cost=12, tasks=[{"id": "t1"}]), indent=2)
    srv.script(Reply(200, text))
    before = datetime.now(UTC)
    result = make_client().fetch_job("w1", "j1")
    after = datetime.now(UTC)

    assert isinstance(result, FetchedJob)
    assert (result.workflow_id, result.job_id) == ("w1", "j1")
    assert result.body == text
    assert result.data == json.loads(text)
    assert result.fetched_at.tzinfo is UTC and before <= result.fetched_at <= after
    assert 0 < result.elapsed < 1
    assert result.attempts == 1
    assert result.duplicate_keys == ()
    [request] = srv.requests
    assert request.method == "GET"
    assert request.path == PATH
    assert request.headers["authorization"] == KEY
    assert request.headers["user-agent"] == f"job-archiver/{archiver.__version__}"
    assert request.headers["accept"] == "application/json"


def test_auth_scheme_prefixes_the_key(srv: ScriptedServer, make_client: MakeClient) -> None:
    srv.script(Reply(200, job()))
    make_client(auth_scheme="Bearer").fetch_job("w1", "j1")
    assert srv.requests[0].headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("key", [None, "", "   "])
def test_missing_key_is_a_config_error_before_any_request(
    srv: ScriptedServer, make_client: MakeClient, key: str | None
) -> None:
    client = make_client(api_key=key)
    with pytest.raises(ConfigError) as caught:
        client.fetch_job("w1", "j1")
    assert str(caught.value) == "no API key: set PIXXEL_API_KEY or pass --api-key"
    assert srv.requests == []


def test_key_unfit_for_a_header_is_refused_without_echoing_it(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    client = make_client(api_key="abc\r\nX-Evil: 1")
    with pytest.raises(ConfigError) as caught:
        client.fetch_job("w1", "j1")
    assert "abc" not in str(caught.value) and "Evil" not in str(caught.value)
    assert srv.requests == []


@pytest.mark.parametrize(
    "url", ["ftp://example.com", "not a url", "http://user:hunter2@example.com", "http://h/?q=1"]
)
def test_unusable_api_url_is_a_config_error(make_client: MakeClient, url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_client(url).fetch_job("w1", "j1")
    assert "hunter2" not in str(caught.value)


def test_duplicate_keys_are_reported(srv: ScriptedServer, make_client: MakeClient) -> None:
    srv.script(Reply(200, '{"id": "j1", "status": "running", "status": "completed"}'))
    result = make_client().fetch_job("w1", "j1")
    assert result.data["status"] == "completed"
    assert result.duplicate_keys == ("status",)


def test_gzip_body_is_decompressed(srv: ScriptedServer, make_client: MakeClient) -> None:
    text = json.dumps(job())
    srv.script(Reply(200, gzip.compress(text.encode()), headers={"Content-Encoding": "gzip"}))
    assert make_client().fetch_job("w1", "j1").body == text


def test_body_exactly_at_the_cap_is_accepted(srv: ScriptedServer, make_client: MakeClient) -> None:
    text = json.dumps(job())
    srv.script(Reply(200, text + " " * (1000 - len(text))))
    assert make_client(max_body_bytes=1000).fetch_job("w1", "j1").data == job()


# -- retries -----------------------------------------------------------------------------------


def test_5xx_then_success_retries_with_growing_backoff(
    srv: ScriptedServer, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    srv.script(error(503, "unavailable", "try later"), Reply(502, "bad gateway"), Reply(200, job()))
    client = make_client(jitter=upper_bound, backoff_base=0.1, backoff_max=10.0)
    result = client.fetch_job("w1", "j1")
    assert result.attempts == 3
    assert len(srv.requests) == 3
    assert sleeps.calls == [0.1, 0.2]


def test_server_error_forever_gives_up_after_max_retries(
    srv: ScriptedServer, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    srv.always(error(500, "internal", "boom"))
    exc = fetch_error(make_client(max_retries=4, backoff_base=0.1, backoff_max=0.3))
    assert type(exc) is ServerError and exc.transient
    assert (exc.status, exc.code) == (500, "internal")
    assert str(exc) == f"500 Internal Server Error — internal: boom {WHERE}"
    assert len(srv.requests) == 5
    # full jitter: each delay anywhere in [0, min(backoff_max, base * 2**attempt)]
    assert len(sleeps.calls) == 4
    for attempt, delay in enumerate(sleeps.calls):
        assert 0 <= delay <= min(0.3, 0.1 * 2**attempt)


def test_backoff_is_capped_by_backoff_max(
    srv: ScriptedServer, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    srv.always(Reply(500))
    client = make_client(jitter=upper_bound, max_retries=4, backoff_base=0.1, backoff_max=0.3)
    assert type(fetch_error(client)) is ServerError
    assert sleeps.calls == [0.1, 0.2, 0.3, 0.3]


def test_retry_after_seconds_is_the_minimum_delay(
    srv: ScriptedServer, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    srv.script(error(429, "rate_limited", "slow down", **{"Retry-After": "2"}), Reply(200, job()))
    result = make_client().fetch_job("w1", "j1")
    assert result.attempts == 2
    assert sleeps.calls == [2.0]


def test_retry_after_is_really_waited(srv: ScriptedServer, make_client: MakeClient) -> None:
    """The delay goes to the client's sleep, which is ``time.sleep`` unless injected, and counts in
    ``elapsed``: a sleep that moves a fake clock shows both without waiting the 2 s."""
    assert inspect.signature(ApiClient).parameters["sleep"].default is time.sleep
    srv.script(error(429, "rate_limited", "slow down", **{"Retry-After": "2"}), Reply(200, job()))
    clock = FakeClock()
    result = make_client(sleep=clock.sleep, clock=clock).fetch_job("w1", "j1")
    assert clock.now >= 2.0
    assert result.elapsed >= 2.0
    assert result.attempts == 2


def test_retry_after_as_http_date(
    srv: ScriptedServer, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    when = formatdate(time.time() + 30, usegmt=True)
    srv.script(error(503, "unavailable", "maintenance", **{"Retry-After": when}), Reply(200, job()))
    make_client(retry_after_cap=60.0).fetch_job("w1", "j1")
    [delay] = sleeps.calls
    assert 28.0 <= delay <= 30.0  # the date has one-second resolution


@pytest.mark.parametrize("status", [429, 503])
def test_absurd_retry_after_is_capped(
    srv: ScriptedServer, make_client: MakeClient, sleeps: SleepRecorder, status: int
) -> None:
    srv.script(Reply(status, headers={"Retry-After": "999999"}), Reply(200, job()))
    make_client(retry_after_cap=5.0).fetch_job("w1", "j1")
    assert sleeps.calls == [5.0]


def test_rate_limited_forever_raises_with_retry_after(
    srv: ScriptedServer, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    srv.always(error(429, "rate_limited", "slow down", **{"Retry-After": "3"}))
    exc = fetch_error(make_client(max_retries=1))
    assert type(exc) is RateLimitedError
    assert (exc.status, exc.code, exc.retry_after) == (429, "rate_limited", 3.0)
    assert str(exc) == f"429 Too Many Requests — rate_limited: slow down {WHERE}"
    assert len(srv.requests) == 2
    assert sleeps.calls == [3.0]


@pytest.mark.parametrize(
    ("status", "code", "message", "cls"),
    [
        (400, "bad_request", "malformed job id", BadRequestError),
        (401, "unauthorized", "missing key", AuthenticationError),
        (403, "invalid_api_key", "key revoked", AuthenticationError),
        (403, "Token_Expired", "key expired", AuthenticationError),
        (403, "forbidden", "no access to workflow w1", ForbiddenError),
        (404, "not_found", "no such job", NotFoundError),
        (409, "conflict", "busy", BadRequestError),
        (422, "invalid", "bad id", BadRequestError),
    ],
)
def test_client_errors_are_typed_and_not_retried(
    srv: ScriptedServer,
    make_client: MakeClient,
    sleeps: SleepRecorder,
    status: int,
    code: str,
    message: str,
    cls: type[ApiError],
) -> None:
    srv.always(error(status, code, message))
    exc = fetch_error(make_client())
    assert type(exc) is cls
    assert not exc.transient
    assert (exc.status, exc.code) == (status, code)
    phrase = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}
    if status in phrase:
        assert str(exc) == f"{status} {phrase[status]} — {code}: {message} {WHERE}"
    assert len(srv.requests) == 1
    assert sleeps.calls == []


def test_error_without_envelope_still_typed(srv: ScriptedServer, make_client: MakeClient) -> None:
    srv.script(Reply(404, "<html><body>Not here</body></html>"))
    exc = fetch_error(make_client())
    assert type(exc) is NotFoundError
    assert (exc.status, exc.code) == (404, None)
    assert str(exc) == f"404 Not Found {WHERE}"


def test_forbidden_example_message(srv: ScriptedServer, make_client: MakeClient) -> None:
    srv.script(error(403, "forbidden", "no access to workflow w1"))
    exc = fetch_error(make_client())
    assert str(exc).startswith("403 Forbidden — forbidden: no access to workflow w1")


# -- transport ---------------------------------------------------------------------------------


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_body_cut_short_by_the_connection_is_transient(
    srv: ScriptedServer, make_client: MakeClient, reset: bool
) -> None:
    srv.always(Reply(200, json.dumps(job()), drop_after=10, reset=reset))
    exc = fetch_error(make_client(max_retries=2))
    assert type(exc) is TransportError and exc.transient
    assert len(srv.requests) == 3


def test_truncated_chunked_body_is_transient(srv: ScriptedServer, make_client: MakeClient) -> None:
    srv.always(Reply(200, json.dumps(job()), chunked=True, drop_after=12))
    assert type(fetch_error(make_client(max_retries=1))) is TransportError
    assert len(srv.requests) == 2


def test_connection_refused_is_retried_then_transport_error(
    make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    with socket.socket() as probe:  # a port that nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exc = fetch_error(make_client(f"http://127.0.0.1:{port}", max_retries=1))
    assert type(exc) is TransportError
    assert str(exc).startswith("connection failed:") and str(exc).endswith(WHERE)
    assert "Connection refused" in str(exc)
    assert "HTTPConnection" not in str(exc) and "object at 0x" not in str(exc)
    assert len(sleeps.calls) == 1
    assert isinstance(exc, TransportError)
    assert (exc.cause, exc.connected) == ("connection refused", False)  # no job's fault


def test_a_host_that_does_not_resolve_is_no_connection(make_client: MakeClient) -> None:
    exc = fetch_error(make_client("http://no-such-host.invalid", max_retries=0))
    assert isinstance(exc, TransportError)
    assert (exc.cause, exc.connected) == ("DNS lookup failed", False)


@pytest.mark.parametrize(
    ("bad", "low", "high"),
    [
        (Reply(hang=True), 0.9, 1.5),  # the 1 s read timeout trips first
        (Reply(200, b" " * 1000, drip=0.5), 1.4, 2.0),  # only the 1.5 s deadline stops it
        (Reply(200, b" " * 1000, drip=0.5, drip_headers=True), 1.4, 2.0),  # also in the headers
    ],
    ids=["silent", "drip-body", "drip-headers"],
)
def test_slow_server_fails_within_the_deadline_without_blocking_others(
    srv: ScriptedServer, make_client: MakeClient, bad: Reply, low: float, high: float
) -> None:
    slow_started = threading.Event()

    def respond(request: Recorded) -> Reply:
        if request.path.endswith("/jobs/slow"):
            slow_started.set()
            return bad
        return echo_job(request)

    srv.always(respond)
    client = make_client(request_deadline=1.5, read_timeout=1.0, max_retries=0)
    outcome: dict[str, Any] = {}

    def slow_fetch() -> None:
        started = time.monotonic()
        try:
            client.fetch_job("w1", "slow")
        except ApiError as exc:
            outcome["error"] = exc
        outcome["elapsed"] = time.monotonic() - started

    worker = threading.Thread(target=slow_fetch)
    worker.start()
    try:
        assert slow_started.wait(2.0)
        assert client.fetch_job("w1", "fast").job_id == "fast"
        # no stopwatch: the fast fetch came back while the slow one had not ended
        assert "elapsed" not in outcome and worker.is_alive()
    finally:
        worker.join(5.0)
    assert not worker.is_alive()
    assert type(outcome["error"]) is TransportError
    assert low <= outcome["elapsed"] <= high


# -- redirects, invalid answers, caps ----------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_refused_and_never_followed(
    srv: ScriptedServer, make_client: MakeClient, status: int
) -> None:
    with ScriptedServer() as elsewhere:
        elsewhere.always(Reply(200, job()))
        srv.always(Reply(status, headers={"Location": elsewhere.url + PATH}))
        exc = fetch_error(make_client())
        assert elsewhere.requests == []
    assert type(exc) is InvalidResponseError and not exc.transient
    assert exc.status == status
    assert "redirect to another location refused" in str(exc)
    assert elsewhere.url not in str(exc)
    assert len(srv.requests) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("<html><body><h1>502 Bad Gateway</h1></body></html>", "looks like an HTML page"),
        ('{"id": "j1", "status": "runn', "not valid JSON"),
        ('{"error": {"code": "internal", "message": "boom"}}', "a 200 carrying an error"),
        ('[{"id": "j1"}]', "expected a JSON object, got list"),
        ('"j1"', "expected a JSON object, got str"),
        ('{"status": "completed"}', "the job has no string id"),
        ('{"id": 1}', "the job has no string id"),
        ('{"id": "j2", "workflow_id": "w1"}', "asked for job j1 but got job j2"),
        ('{"id": "j1", "workflow_id": "w2"}', "asked for workflow w1 but got workflow w2"),
        ('{"id": "j1", "cost": NaN}', "NaN"),
        (b'{"id": "j1", "note": "\xff"}', "not UTF-8"),
        ("", "not valid JSON"),
    ],
    ids=[
        "html",
        "truncated",
        "error-envelope",
        "array",
        "string",
        "no-id",
        "id-not-string",
        "other-job",
        "other-workflow",
        "nan",
        "not-utf8",
        "empty",
    ],
)
def test_invalid_200_is_a_permanent_invalid_response(
    srv: ScriptedServer, make_client: MakeClient, body: str | bytes, reason: str
) -> None:
    srv.always(Reply(200, body))
    exc = fetch_error(make_client())
    assert type(exc) is InvalidResponseError and not exc.transient
    assert exc.status == 200
    assert str(exc).startswith("200 OK — invalid response: ")
    assert reason in str(exc)
    assert str(exc).endswith(WHERE)
    assert len(srv.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, b" " * 2000),
        Reply(200, b" " * 2000, chunked=True),
        Reply(200, b" " * 2000, close_delimited=True),
    ],
    ids=["content-length", "chunked", "close-delimited"],
)
def test_body_over_the_cap_is_refused(
    srv: ScriptedServer, make_client: MakeClient, reply: Reply
) -> None:
    srv.always(reply)
    exc = fetch_error(make_client(max_body_bytes=1000))
    assert type(exc) is InvalidResponseError and not exc.transient
    assert "body exceeds the 1000-byte limit" in str(exc)
    assert len(srv.requests) == 1


def test_announced_length_over_the_cap_is_refused_before_reading(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    # headers only, then silence: a client that waited for the body would time out instead
    srv.always(Reply(200, b"", content_length=10**12))
    exc = fetch_error(make_client(max_body_bytes=1000))
    # no stopwatch: a client that waited for the body would end in a read timeout (TransportError)
    assert type(exc) is InvalidResponseError
    assert len(srv.requests) == 1
    assert "body exceeds the 1000-byte limit" in str(exc)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """50 MB of zeros in about 50 KB of gzip."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1024 * 1024)
    bomb = b"".join(packer.compress(block) for _ in range(50)) + packer.flush()
    assert len(bomb) < 100 * 1024
    return bomb


def test_gzip_bomb_is_stopped_at_the_cap(
    srv: ScriptedServer, make_client: MakeClient, gzip_bomb: bytes
) -> None:
    srv.always(Reply(200, gzip_bomb, headers={"Content-Encoding": "gzip"}))
    tracemalloc.start()
    try:
        exc = fetch_error(make_client(max_body_bytes=1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # no stopwatch: bytes allocated, not seconds; inflating the 50 MB would allocate 50 MB
    assert peak < 10 * 1024 * 1024, peak
    assert type(exc) is InvalidResponseError
    assert f"body exceeds the {1024 * 1024}-byte limit" in str(exc)
    assert len(srv.requests) == 1


# -- ids ---------------------------------------------------------------------------------------

HOSTILE_IDS = ["../x", "a/b", "?q=1", "#f", "%2F", "a b", "ünïcødé", "..%2F..", "~-._"]


@pytest.mark.parametrize("hostile", HOSTILE_IDS)
def test_hostile_ids_arrive_as_one_escaped_segment_each(
    srv: ScriptedServer, make_client: MakeClient, hostile: str
) -> None:
    srv.always(echo_job)
    result = make_client().fetch_job(hostile, hostile)
    [request] = srv.requests
    escaped = quote(hostile, safe="")
    assert request.path == f"/v0/workflows/{escaped}/jobs/{escaped}"
    assert request.segments() == ["", "v0", "workflows", escaped, "jobs", escaped]
    assert (result.workflow_id, result.job_id) == (hostile, hostile)
    assert result.data["id"] == hostile


@pytest.mark.parametrize(
    ("workflow_id", "job_id"),
    [
        ("", "j1"),
        ("w1", ""),
        (".", "j1"),
        ("w1", ".."),
        ("w1", "\ud800"),
        ("x\ny", "j1"),  # the id rule (archiver.ids): no control character goes on the wire
        ("w1", "j\u2028x"),
    ],
)
def test_unusable_ids_are_refused_before_any_request(
    srv: ScriptedServer, make_client: MakeClient, workflow_id: str, job_id: str
) -> None:
    with pytest.raises(BadRequestError):
        make_client().fetch_job(workflow_id, job_id)
    assert srv.requests == []


# -- secrets and logging -----------------------------------------------------------------------


def _echo_key(request: Recorded) -> Reply:
    """A careless server that puts the key it received into its error."""
    auth = request.headers.get("authorization", "")
    return error(403, f"{auth}_denied", f"key {auth} may not read this")


SECRET_SCENARIOS: list[Reply | Callable[[Recorded], Reply]] = [
    Reply(200, job()),
    error(400, "bad_request", "malformed"),
    error(401, "unauthorized", "bad key"),
    error(403, "invalid_api_key", "revoked"),
    error(403, "forbidden", "no access"),
    error(404, "not_found", "no such job"),
    error(429, "rate_limited", "slow down", **{"Retry-After": "1"}),
    error(500, "internal", "boom"),
    Reply(200, "<html>oops</html>"),
    Reply(200, {"id": SENTINEL}),  # a server that echoes the key where the id belongs
    Reply(302, headers={"Location": f"http://127.0.0.1:1/?key={SENTINEL}"}),
    Reply(200, json.dumps(job()), drop_after=5),
    Reply(200, b" " * 5000),
    _echo_key,
]


def test_the_key_never_leaks(
    srv: ScriptedServer,
    make_client: MakeClient,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in (None, "urllib3", "archiver", "archiver.client"):
        caplog.set_level(logging.DEBUG, logger=name)
    client = make_client(api_key=SENTINEL, max_retries=0, max_body_bytes=1000)
    texts: list[str] = [repr(client), str(client)]
    for scenario in SECRET_SCENARIOS:
        srv.script(scenario)
        try:
            result = client.fetch_job("w1", "j1")
        except ArchiverError as exc:
            assert isinstance(exc, ApiError)
            texts += [str(exc), repr(exc), repr(exc.args), str(exc.code), exc.message]
        else:
            texts += [repr(result), str(result)]
    with pytest.raises(ConfigError) as caught:  # the key in a place it cannot go
        make_client(api_key=SENTINEL + "\n x").fetch_job("w1", "j1")
    texts.append(str(caught.value))

    assert len(srv.requests) == len(SECRET_SCENARIOS)
    assert all(r.headers["authorization"] == SENTINEL for r in srv.requests)  # it was sent
    assert any(r.name == "urllib3.connectionpool" for r in caplog.records)  # DEBUG was on
    logged = [r.getMessage() for r in caplog.records] + [caplog.text]
    out, err = capsys.readouterr()
    for text in [*texts, *logged, out, err]:
        assert SENTINEL not in text
    assert any("<redacted>" in text for text in texts)  # the echoed key was caught


def test_one_debug_line_per_request(
    srv: ScriptedServer, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="archiver.client")
    srv.script(Reply(503), Reply(200, job()))
    make_client(jitter=upper_bound, backoff_base=0.25, backoff_max=1.0).fetch_job("w1", "j1")
    lines = [r for r in caplog.records if r.name == "archiver.client"]
    assert [r.levelno for r in lines] == [logging.DEBUG, logging.DEBUG]
    first, second = (r.getMessage() for r in lines)
    assert first.startswith(f"GET {PATH} -> 503 server_error in ")
    assert first.endswith("(attempt 1 of 3); retrying in 0.25s")
    assert second.startswith(f"GET {PATH} -> 200 in ")
    assert second.endswith("(attempt 2 of 3)")


# -- threads and lifecycle ---------------------------------------------------------------------


def test_concurrent_fetches_use_one_pooled_session_per_thread(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(echo_job)
    client = make_client()
    jobs = [(f"w{t}", f"j{t}-{i}") for t in range(8) for i in range(25)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda ids: client.fetch_job(*ids), jobs))
    assert [(r.workflow_id, r.job_id) for r in results] == jobs
    assert all(r.data["id"] == r.job_id for r in results)
    assert len(srv.requests) == 200
    assert len(client._sessions) <= 8
    # pooled: each thread kept one keep-alive connection instead of one per request
    assert len({r.client_port for r in srv.requests}) <= 8


def test_close_and_context_manager(srv: ScriptedServer) -> None:
    srv.always(Reply(200, job()))
    with ApiClient(settings_for(srv.url)) as client:
        assert client.fetch_job("w1", "j1").attempts == 1
    with pytest.raises(ArchiverError, match="closed"):
        client.fetch_job("w1", "j1")
    assert len(srv.requests) == 1


def test_a_key_echoed_across_the_message_cut_is_still_redacted() -> None:
    """Review defect: an API key echoed across the point where an error message is cut must
    still be redacted."""
    key = "sk_live_" + "8f3a9c2e7b" * 4
    message = "x" * 280 + f" for key {key}"
    with ScriptedServer() as server:
        server.always(error(403, "forbidden", message))
        client = ApiClient(Settings(api_key=key, api_url=server.url, max_retries=0))
        with pytest.raises(ForbiddenError) as caught:
            client.fetch_job("w", "j")
    assert key[:12] not in str(caught.value)


def test_not_authorized_for_one_job_is_not_a_rejected_key() -> None:
    """Review defect: a 403 `not_authorized` for one job is a ForbiddenError for that job, not
    a rejected key."""
    with ScriptedServer() as server:
        server.always(error(403, "not_authorized", "no access to this workflow"))
        client = ApiClient(Settings(api_key="k" * 20, api_url=server.url, max_retries=0))
        with pytest.raises(ForbiddenError):
            client.fetch_job("w", "j")
