"""The listing endpoints against a real HTTP server on 127.0.0.1: bad items, bad bodies, pagination.

Nothing in requests is patched: the client's ``sleep`` is a recorder, so retries are asserted
without waiting. Every bad answer is asserted with its exact problem text or message.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import factories
import pytest
from http_helpers import Recorded, Reply, ScriptedServer, error
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.api import listing
from archiver.api.client import ApiClient
from archiver.api.listing import JobListing, JobSummary, WorkflowPage
from archiver.archive.batches import archive_one
from archiver.config import Settings
from archiver.errors import (
    ApiError,
    AuthenticationError,
    BadRequestError,
    ForbiddenError,
    InvalidResponseError,
    NotFoundError,
    RateLimitedError,
    ServerError,
)
from archiver.models import Job

pytestmark = pytest.mark.integration  # every test talks to a real HTTP server on 127.0.0.1

KEY = "SENTINEL-KEY-5d2e9c"
WF = "wf-a"
WHERE = "(workflow wf-a)"
JOBS_PATH = "/v0/workflows/wf-a/jobs"
PROBE = Path(__file__).parents[1] / "listing_probe.py"
T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)


class SleepRecorder:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


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


MakeClient = Callable[..., ApiClient]


@pytest.fixture
def make_client(srv: ScriptedServer, sleeps: SleepRecorder) -> Iterator[MakeClient]:
    clients: list[ApiClient] = []

    def make(**overrides: Any) -> ApiClient:
        values: dict[str, Any] = {
            "api_key": KEY,
            "api_url": srv.url,
            "connect_timeout": 1.0,
            "read_timeout": 2.0,
            "request_deadline": 5.0,
            "max_retries": 2,
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            "retry_after_cap": 5.0,
            "rate_limit": 0.0,
        }
        values.update(overrides)
        client = ApiClient(Settings(**values), sleep=sleeps)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def item(job_id: Any = "j1", workflow_id: Any = WF, **extra: Any) -> dict[str, Any]:
    """One listJobs item as the provider's OpenAPI describes it."""
    body: dict[str, Any] = {
        "created_by": "user-7",
        "id": job_id,
        "cost": 1200,
        "created_at": "2026-10-01T09:59:00Z",
        "updated_at": "2026-10-01T10:05:00Z",
        "finished_at": "0001-01-01T00:00:00Z",
        "estimated_duration": 7200,
        "progress": "42%",
        "status": "running",
        "time_taken": "1h2m3.5s",
    }
    if workflow_id is not None:
        body["workflow_id"] = workflow_id
    body.update(extra)
    return body


def listed(make_client: MakeClient, srv: ScriptedServer, *items: Any) -> JobListing:
    srv.always(Reply(200, {"jobs": list(items)}))
    return make_client().list_jobs(WF)


def list_error(client: ApiClient, workflow_id: str = WF) -> ApiError:
    with pytest.raises(ApiError) as caught:
        client.list_jobs(workflow_id)
    return caught.value


# -- listJobs: the good answer -----------------------------------------------------------------


def test_a_listing_is_typed_and_sent_with_the_key(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    result = listed(make_client, srv, item("j1"), item("j2", status="completed", cost=None))
    [request] = srv.requests
    assert (request.method, request.path) == ("GET", JOBS_PATH)
    assert request.headers["authorization"] == KEY
    assert result.workflow_id == WF and result.problems == [] and result.unusable == 0
    assert result.fetched_at.tzinfo is UTC
    first, second = result.jobs
    assert first == JobSummary(
        job_id="j1",
        status="running",
        progress="42%",
        cost=1200,
        updated_at=datetime(2026, 10, 1, 10, 5, tzinfo=UTC),
        finished_at=None,  # Go's zero time: not set
        time_taken="1h2m3.5s",
        created_at=datetime(2026, 10, 1, 9, 59, tzinfo=UTC),
        created_by="user-7",
        digest=first.digest,
    )
    six = {k: item("j1")[k] for k in listing.SUMMARY_FIELDS}
    expected = hashlib.sha256(
        json.dumps(six, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert first.digest == expected
    assert (second.job_id, second.status, second.cost) == ("j2", "completed", None)
    assert second.digest != first.digest


def jobs_query(request: Recorded) -> dict[str, str]:
    parts = urlsplit(request.path)
    assert parts.path == JOBS_PATH
    return {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}


def jobs_page(total: int, ids: list[str], *, limit: int = 2) -> Callable[[Recorded], Reply]:
    """A listJobs that pages after all: ``limit`` items per answer from ``offset``, with a
    pagination block naming ``total``."""

    def answer(request: Recorded) -> Reply:
        offset = int(jobs_query(request).get("offset", "0"))
        rows = [item(j) for j in ids[offset : offset + limit]]
        return Reply(200, {"jobs": rows, "pagination": {"limit": limit, "total": total}})

    return answer


def test_a_job_listing_that_pages_after_all_is_followed_to_its_total(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    """Documented without pagination; should it cap its answers and say so, the rest is asked
    for, not silently left undiscovered."""
    srv.always(jobs_page(5, ["j1", "j2", "j3", "j4", "j5"]))
    result = make_client().list_jobs(WF)
    assert [j.job_id for j in result.jobs] == ["j1", "j2", "j3", "j4", "j5"]
    assert [jobs_query(r) for r in srv.requests] == [
        {},
        {"offset": "2", "limit": "2"},
        {"offset": "4", "limit": "2"},
    ]
    assert result.problems == []


def test_a_job_listing_whose_pages_ignore_the_offset_is_stopped_with_its_repeats_named(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(Reply(200, {"jobs": [item("j1"), item("j2")], "pagination": {"total": 6}}))
    result = make_client().list_jobs(WF)
    assert [j.job_id for j in result.jobs] == ["j1", "j2"]
    assert len(srv.requests) == 3  # 6 items asked for, 2 a page: never more than the total
    assert result.unusable == 4
    assert result.problems[0].startswith("item 2: repeats")


def test_a_job_listing_past_its_page_bound_is_an_error(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(jobs_page(10**6, [f"j{i}" for i in range(10**6)], limit=1))
    with pytest.raises(InvalidResponseError) as caught:
        listing.list_jobs(make_client(), WF, max_pages=4)
    assert "kept answering pages past its total (4 pages, 4 jobs); stopped" in str(caught.value)
    assert len(srv.requests) == 4


@pytest.mark.parametrize("body", [{"jobs": []}, {"jobs": None}])
def test_no_jobs_and_go_null_are_an_empty_listing(
    srv: ScriptedServer, make_client: MakeClient, body: dict[str, Any]
) -> None:
    srv.always(Reply(200, body))
    result = make_client().list_jobs(WF)
    assert (result.jobs, result.problems) == ([], [])


def test_the_workflow_id_is_one_escaped_segment(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(Reply(200, {"jobs": [item("j1", workflow_id="a/b?c#d")]}))
    result = make_client().list_jobs("a/b?c#d")
    assert srv.requests[0].path == "/v0/workflows/a%2Fb%3Fc%23d/jobs"
    assert [j.job_id for j in result.jobs] == ["j1"]


@pytest.mark.parametrize(
    ("workflow_id", "message"),
    [
        ("a\nb", r"workflow_id 'a\nb' contains a control character (U+000A); not sent"),
        ("w" * 192, f"workflow_id {('w' * 192)!r:.99}… is longer than 191 characters; not sent"),
        ("..", "workflow_id '..' cannot be sent as a path segment"),
        ("", "workflow_id must be a non-empty string"),
    ],
)
def test_an_unusable_workflow_id_is_never_sent(
    srv: ScriptedServer, make_client: MakeClient, workflow_id: str, message: str
) -> None:
    exc = list_error(make_client(), workflow_id)
    assert type(exc) is BadRequestError
    assert str(exc) == message
    assert srv.requests == []


# -- listJobs: bad items, each recorded, none fatal ----------------------------------------------

LONG_ID = "x" * 192


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (42, "item 1: not an object"),
        ([item("j9")], "item 1: not an object"),
        (None, "item 1: not an object"),
        ({"status": "running"}, "item 1: no string id"),
        (item(7), "item 1: no string id"),
        (item(None), "item 1: no string id"),
        (item("j9", workflow_id="wf-x"), "item 1: names workflow 'wf-x', not 'wf-a'"),
        (item("j9", workflow_id=5), "item 1: names workflow 5, not 'wf-a'"),
        (item(LONG_ID), f"item 1: job id {LONG_ID!r:.99}… is longer than 191 characters"),
        (item("a\nb"), r"item 1: job id 'a\nb' contains a control character (U+000A)"),
        (
            item("a\u202eb"),
            r"item 1: job id 'a\u202eb' contains an invisible format character (U+202E)",
        ),
        (item(""), "item 1: job id '' is empty"),
        (item("j0", status="other"), "item 1: repeats job id 'j0' (item 0 kept)"),
    ],
)
def test_a_bad_item_is_recorded_and_the_others_are_listed(
    srv: ScriptedServer, make_client: MakeClient, bad: Any, problem: str
) -> None:
    result = listed(make_client, srv, item("j0"), bad, item("j2"))
    assert result.problems == [problem]
    assert result.unusable == 1
    assert [(j.job_id, j.status) for j in result.jobs] == [("j0", "running"), ("j2", "running")]


def test_a_listing_that_cannot_be_streamed_is_read_whole_alike(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    """A repeated "jobs" member is decoded by ``loads`` (the last one wins), then read the same."""
    first, last = json.dumps([item("j0")]), json.dumps([item("j1"), 5, item("j1"), item("j2")])
    srv.always(Reply(200, f'{{"jobs": {first}, "jobs": {last}}}'))
    result = make_client().list_jobs(WF)
    assert [j.job_id for j in result.jobs] == ["j1", "j2"]
    assert result.problems == ["item 1: not an object", "item 2: repeats job id 'j1' (item 0 kept)"]


def test_an_error_member_after_the_jobs_still_refuses_the_listing(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(Reply(200, {"jobs": [item("j1")], "error": {"code": "partial", "message": "cut"}}))
    exc = list_error(make_client())
    assert type(exc) is InvalidResponseError
    assert str(exc) == f"200 OK — invalid response: a 200 carrying an error — partial: cut {WHERE}"


def test_an_item_without_a_workflow_id_or_with_null_is_taken_as_the_asked_workflow(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    result = listed(
        make_client, srv, item("j1", workflow_id=None), {**item("j2"), "workflow_id": None}
    )
    assert [j.job_id for j in result.jobs] == ["j1", "j2"]
    assert result.problems == []


def test_problem_lines_are_capped_but_counted(srv: ScriptedServer, make_client: MakeClient) -> None:
    result = listed(make_client, srv, *([7] * (listing.MAX_PROBLEMS + 5)), item("j1"))
    assert result.unusable == listing.MAX_PROBLEMS + 5
    assert len(result.problems) == listing.MAX_PROBLEMS + 1
    assert result.problems[0] == "item 0: not an object"
    assert result.problems[-1] == "more unusable items, not listed one by one"
    assert [j.job_id for j in result.jobs] == ["j1"]


# -- listJobs: a field that cannot be read is None, the item stays --------------------------------


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"cost": "abc"}, {"cost": None}),
        ({"cost": 1.5}, {"cost": None}),
        ({"cost": True}, {"cost": None}),
        ({"cost": 2**70}, {"cost": None}),
        ({"cost": "1e1000000"}, {"cost": None}),  # judged by its size, never converted
        ({"cost": "12"}, {"cost": 12}),  # as the archive reads it
        ({"updated_at": "yesterday"}, {"updated_at": None}),
        ({"updated_at": {"at": 1}}, {"updated_at": None}),
        ({"finished_at": ""}, {"finished_at": None}),
        ({"status": ["running"]}, {"status": None}),
        ({"status": "s" * 65}, {"status": None}),  # longer than the status column
        ({"progress": 75}, {"progress": "75"}),  # as the archive's progress column holds it
        ({"created_by": None}, {"created_by": None}),
    ],
)
def test_an_unreadable_field_is_none_and_the_item_is_kept(
    srv: ScriptedServer,
    make_client: MakeClient,
    overrides: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    [summary] = listed(make_client, srv, item("j1", **overrides)).jobs
    assert summary.job_id == "j1"
    assert {name: getattr(summary, name) for name in expected} == expected


def test_the_digest_sees_a_change_the_typed_fields_do_not(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    one, two, absent, null = listed(
        make_client,
        srv,
        item("j1", cost="abc"),
        item("j2", cost="abd"),
        {k: v for k, v in item("j3").items() if k != "cost"},
        item("j4", cost=None),
    ).jobs
    assert one.cost is None and two.cost is None and absent.cost is None and null.cost is None
    assert len({one.digest, two.digest, absent.digest, null.digest}) == 4


def test_fields_outside_the_six_do_not_move_the_digest(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    a, b = listed(
        make_client, srv, item("j1"), item("j2", created_by="someone else", estimated_duration=1)
    ).jobs
    assert a.digest == b.digest


# -- the summary reads like the archive --------------------------------------------------------

SAME_TEXTS = [
    {"updated_at": "2026-10-01T12:05:00.1234567+02:00"},  # 7 fraction digits, an offset
    {"updated_at": "2026-10-01 10:05:00"},  # naive, a space: taken as UTC
    {"updated_at": 1790000000.25},  # Unix seconds
    {"updated_at": "2026-10-01T10:05:00z", "finished_at": "2026-10-01T10:06:00.5Z"},
    {"cost": "15", "progress": 75, "time_taken": "754s", "status": "Completed"},
    {"cost": "abc", "updated_at": "not a time", "created_at": ""},
]


@pytest.mark.parametrize("texts", SAME_TEXTS)
def test_a_summary_equals_what_archiving_the_full_job_stored(
    srv: ScriptedServer,
    make_client: MakeClient,
    sessions: sessionmaker[Session],
    texts: dict[str, Any],
) -> None:
    full = factories.job("j1", WF, tasks=2, **texts)
    archive_one(sessions, json.dumps(full), T0)
    [summary] = listed(make_client, srv, item("j1", **texts)).jobs
    with sessions() as session:
        row = session.execute(select(Job).where(Job.job_id == "j1")).scalar_one()
        stored = {
            name: getattr(row, name)
            for name in (
                "status",
                "progress",
                "cost",
                "updated_at",
                "finished_at",
                "time_taken",
                "created_at",
            )
        }
    assert {name: getattr(summary, name) for name in stored} == stored
    assert stored["updated_at"] is None or stored["updated_at"].tzinfo is not None


# -- listJobs: the body is not a listing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ([item("j1")], "expected a JSON object, got list"),
        ("[]", "expected a JSON object, got list"),
        ({}, 'no "jobs" member (expected {"jobs": [...]})'),
        ({"items": [item("j1")]}, 'no "jobs" member (expected {"jobs": [...]})'),
        ({"jobs": {"id": "j1"}}, '"jobs" is an object, not a list'),
        ({"jobs": "j1"}, '"jobs" is a string, not a list'),
        ({"jobs": 3}, '"jobs" is a number, not a list'),
        ({"jobs": True}, '"jobs" is a boolean, not a list'),
        (
            {"error": {"code": "quota", "message": "over quota"}, "jobs": []},
            "a 200 carrying an error — quota: over quota",
        ),
        (
            "<html>busy</html>",
            "not valid JSON (looks like an HTML page): Expecting value at line 1 column 1",
        ),
        ('{"jobs": [NaN]}', "non-standard JSON number NaN"),
    ],
)
def test_a_body_that_is_not_a_listing_names_the_workflow_and_is_not_retried(
    srv: ScriptedServer, make_client: MakeClient, sleeps: SleepRecorder, body: Any, reason: str
) -> None:
    srv.always(Reply(200, body))
    exc = list_error(make_client())
    assert type(exc) is InvalidResponseError
    assert str(exc) == f"200 OK — invalid response: {reason} {WHERE}"
    assert len(srv.requests) == 1 and sleeps.calls == []


def test_a_listing_past_the_body_cap_says_which_setting_to_raise(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    big = {"jobs": [item(f"j{i}") for i in range(20)]}
    srv.script(Reply(200, big), Reply(200, big, chunked=True))  # announced, then not
    client = make_client(max_body_bytes=1000)
    message = (
        "200 OK — invalid response: the job listing exceeds the 1000-byte limit (workflow wf-a); "
        "raise max_body_bytes (ARCHIVER_MAX_BODY_BYTES or --max-body-bytes) to accept it"
    )
    for _ in range(2):
        exc = list_error(client)
        assert type(exc) is InvalidResponseError
        assert str(exc) == message
    assert len(srv.requests) == 2  # neither was retried


# -- listJobs: errors and retries, as a job fetch ------------------------------------------------


def test_429_with_retry_after_and_5xx_are_retried_then_listed(
    srv: ScriptedServer, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    srv.script(
        error(429, "rate_limited", "slow down", **{"Retry-After": "2"}),
        error(503, "unavailable", "maintenance"),
        Reply(200, {"jobs": [item("j1")]}),
    )
    result = make_client(max_retries=2).list_jobs(WF)
    assert [j.job_id for j in result.jobs] == ["j1"]
    assert len(srv.requests) == 3
    assert sleeps.calls[0] == 2.0 and len(sleeps.calls) == 2


def test_a_server_error_that_persists_is_a_server_error_after_the_retries(
    srv: ScriptedServer, make_client: MakeClient, sleeps: SleepRecorder
) -> None:
    srv.always(error(500, "internal", "boom"))
    exc = list_error(make_client(max_retries=1))
    assert type(exc) is ServerError
    assert str(exc) == f"500 Internal Server Error — internal: boom {WHERE}"
    assert len(srv.requests) == 2 and len(sleeps.calls) == 1


def test_rate_limited_forever_is_a_rate_limited_error(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(error(429, "rate_limited", "slow down", **{"Retry-After": "1"}))
    exc = list_error(make_client(max_retries=1))
    assert type(exc) is RateLimitedError and exc.retry_after == 1.0


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (401, "unauthorized", AuthenticationError),
        (403, "invalid_api_key", AuthenticationError),
        (403, "forbidden_access", ForbiddenError),
        (404, "not_found", NotFoundError),
    ],
)
def test_a_refusal_is_its_error_class_at_once(
    srv: ScriptedServer,
    make_client: MakeClient,
    sleeps: SleepRecorder,
    status: int,
    code: str,
    cls: type[ApiError],
) -> None:
    srv.always(error(status, code, "no"))
    exc = list_error(make_client())
    assert type(exc) is cls
    assert str(exc).endswith(f" — {code}: no {WHERE}")
    assert len(srv.requests) == 1 and sleeps.calls == []


def test_the_key_never_appears_in_a_message_or_a_problem(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.script(
        error(403, "invalid_api_key", f"key {KEY} revoked"),
        Reply(200, {"error": {"code": KEY, "message": f"bad {KEY}"}}),
        Reply(
            200,
            {
                "jobs": [
                    item(f"{KEY}\n"),
                    item("j1", workflow_id=f"wf-{KEY}"),
                    item("y" * 95 + KEY + "y" * 100),  # the key across the 100-character cut
                    item(f"{'z' * 80}{KEY}{'z' * 120}"),
                ]
            },
        ),
        Reply(200, {"jobs": [item("j1")] * 3000}, headers={"X-Echo": KEY}),
    )
    client = make_client(max_retries=0)
    messages = [str(list_error(client)), str(list_error(client))]
    result = client.list_jobs(WF)
    assert len(result.problems) == 4
    messages += result.problems
    messages.append(str(list_error(make_client(max_retries=0, max_body_bytes=1000))))
    assert all(KEY not in m and KEY[:12] not in m for m in messages), messages
    assert "<redacted>" in messages[0] and "<redacted>" in messages[2]


# -- listWorkflows -------------------------------------------------------------------------------


def workflow(workflow_id: str, **extra: Any) -> dict[str, Any]:
    body = {
        "id": workflow_id,
        "project_id": "p1",
        "legacy_project_id": "lp1",
        "name": f"name of {workflow_id}",
        "created_by": "user-7",
        "description": "ortho then mosaic",
        "created_at": "2026-09-01T08:00:00Z",
        "updated_at": "2026-09-02T08:00:00.5+01:00",
    }
    body.update(extra)
    return body


def query_of(request: Recorded) -> dict[str, str]:
    parts = urlsplit(request.path)
    assert parts.path == "/v0/workflows"
    return {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}


def paged(total: Any = None, limit: Any = 50, size: int | None = None) -> Callable[..., Reply]:
    """A listWorkflows that pages over ``total`` workflows (``size`` per page when given)."""
    count = total if isinstance(total, int) else 10**9

    def answer(request: Recorded) -> Reply:
        query = query_of(request)
        offset, asked = int(query["offset"]), int(query["limit"])
        step = size or asked
        ids = [f"wf-{i:05d}" for i in range(offset, min(offset + step, count))]
        body: dict[str, Any] = {"workflows": [workflow(i) for i in ids]}
        if total is not None or limit is not None:
            body["pagination"] = {"limit": limit, "offset": offset, "total": total}
        return Reply(200, body)

    return answer


def pages(client: ApiClient, **kwargs: Any) -> list[WorkflowPage]:
    return list(client.list_workflows(**kwargs))


def test_an_id_filter_the_server_ignores_costs_one_page_not_every_page(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    """The API may not honour ``id=``: it would then answer every workflow of the organisation,
    page after page, for each workflow watched by id. One page is read, and what it holds of
    other workflows is named, not taken."""
    srv.always(paged(total=5000))
    result = pages(make_client(), workflow_id="wf-x")
    assert len(srv.requests) == 1
    assert query_of(srv.requests[0])["id"] == "wf-x"
    [page] = result
    assert page.workflows == [] and page.unusable == 50
    assert page.problems[0] == "item 0: is workflow 'wf-00000', not 'wf-x' asked for"


def test_three_pages_up_to_the_total(srv: ScriptedServer, make_client: MakeClient) -> None:
    srv.always(paged(total=120))
    result = pages(make_client())
    assert [query_of(r) for r in srv.requests] == [
        {"offset": "0", "limit": "50"},
        {"offset": "50", "limit": "50"},
        {"offset": "100", "limit": "50"},
    ]
    assert [len(p.workflows) for p in result] == [50, 50, 20]
    assert [(p.total, p.offset, p.limit) for p in result] == [
        (120, 0, 50),
        (120, 50, 50),
        (120, 100, 50),
    ]
    first = result[0].workflows[0]
    assert first == listing.WorkflowInfo(
        workflow_id="wf-00000",
        project_id="p1",
        legacy_project_id="lp1",
        name="name of wf-00000",
        description="ortho then mosaic",
        created_by="user-7",
        created_at=datetime(2026, 9, 1, 8, tzinfo=UTC),
        updated_at=datetime(2026, 9, 2, 7, 0, 0, 500000, tzinfo=UTC),
    )
    ids = [w.workflow_id for p in result for w in p.workflows]
    assert ids == [f"wf-{i:05d}" for i in range(120)]


def test_a_server_that_always_answers_a_full_page_is_stopped_by_its_total(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    def full(request: Recorded) -> Reply:
        offset = int(query_of(request)["offset"])
        rows = [workflow(f"wf-{offset + i}") for i in range(50)]
        return Reply(200, {"workflows": rows, "pagination": {"limit": 50, "total": 100}})

    srv.always(full)
    result = pages(make_client())
    assert len(srv.requests) == 2
    assert sum(len(p.workflows) for p in result) == 100


def test_without_pagination_a_short_page_ends_the_listing(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(paged(total=None, limit=None, size=None))
    srv.script(
        Reply(200, {"workflows": [workflow(f"wf-{i}") for i in range(50)]}),
        Reply(200, {"workflows": [workflow(f"wf-{i}") for i in range(50, 60)]}),
    )
    result = pages(make_client())
    assert len(srv.requests) == 2
    assert [(len(p.workflows), p.total) for p in result] == [(50, None), (10, None)]


@pytest.mark.parametrize(
    "pagination",
    [None, "100", [], {"total": -1}, {"total": "100"}, {"total": 1.5}, {"total": True}],
)
def test_nonsense_pagination_is_no_pagination(
    srv: ScriptedServer, make_client: MakeClient, pagination: Any
) -> None:
    def answer(request: Recorded) -> Reply:
        offset = int(query_of(request)["offset"])
        size = 50 if offset < 100 else 7
        rows = [workflow(f"wf-{offset + i}") for i in range(size)]
        return Reply(200, {"workflows": rows, "pagination": pagination})

    srv.always(answer)
    result = pages(make_client())
    assert len(srv.requests) == 3
    assert [p.total for p in result] == [None, None, None]
    assert sum(len(p.workflows) for p in result) == 107


def test_full_pages_without_a_total_are_stopped_at_the_page_cap(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(paged(total=None, limit=None))
    client = make_client()
    seen: list[WorkflowPage] = []
    with pytest.raises(InvalidResponseError) as caught:
        seen.extend(listing.list_workflows(client, max_pages=5))
    assert str(caught.value) == (
        "200 OK — invalid response: listWorkflows kept answering full pages with no usable "
        "total, past the page cap (5 pages, 250 workflows); stopped"
    )
    assert len(srv.requests) == 5 and len(seen) == 5
    assert listing.MAX_PAGES == 10_000


def test_short_pages_below_the_total_are_stopped_after_total_over_limit_plus_one(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(paged(total=100, limit=50, size=10))
    with pytest.raises(InvalidResponseError) as caught:
        pages(make_client())
    assert str(caught.value) == (
        "200 OK — invalid response: listWorkflows kept answering more pages than its total "
        "allows (3 pages, 30 workflows); stopped"
    )
    assert len(srv.requests) == 3  # ceil(100 / 50) + 1


def test_a_server_serving_smaller_pages_than_asked_is_followed_to_its_total(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(paged(total=30, limit=10, size=10))
    result = pages(make_client())
    assert [int(query_of(r)["offset"]) for r in srv.requests] == [0, 10, 20]
    assert sum(len(p.workflows) for p in result) == 30


def test_a_server_that_ignores_the_offset_is_stopped(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(Reply(200, {"workflows": [workflow(f"wf-{i}") for i in range(50)]}))
    with pytest.raises(InvalidResponseError) as caught:
        pages(make_client())
    assert str(caught.value) == (
        "200 OK — invalid response: listWorkflows answered offset 50 with only workflows it had "
        "already listed, so it does not page; stopped"
    )
    assert len(srv.requests) == 2


def test_a_workflow_shifted_onto_the_next_page_is_listed_once_without_a_problem(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    """A workflow created between two pages shifts the offsets: the next page repeats one."""
    srv.script(
        Reply(200, {"workflows": [workflow(f"wf-{i}") for i in range(50)]}),
        Reply(200, {"workflows": [workflow(f"wf-{i}") for i in range(49, 60)]}),
    )
    result = pages(make_client())
    assert [w.workflow_id for p in result for w in p.workflows] == [f"wf-{i}" for i in range(60)]
    assert [p.problems for p in result] == [[], []]


@pytest.mark.parametrize("body", [{"workflows": []}, {"workflows": None}])
def test_an_empty_first_page_is_one_request(
    srv: ScriptedServer, make_client: MakeClient, body: dict[str, Any]
) -> None:
    srv.always(Reply(200, body))
    [page] = pages(make_client())
    assert (page.workflows, page.problems, page.total) == ([], [], None)
    assert len(srv.requests) == 1


def test_filters_are_escaped_query_values(srv: ScriptedServer, make_client: MakeClient) -> None:
    srv.always(Reply(200, {"workflows": [workflow("a/b", project_id="p/1 &x")]}))
    [page] = pages(make_client(), project_id="p/1 &x", workflow_id="a/b")
    assert (
        srv.requests[0].path == "/v0/workflows?offset=0&limit=50&project_id=p%2F1%20%26x&id=a%2Fb"
    )
    assert [w.workflow_id for w in page.workflows] == ["a/b"]


def test_a_bad_filter_is_refused_before_any_request(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    with pytest.raises(BadRequestError) as caught:
        make_client().list_workflows(project_id="p\n1")
    assert str(caught.value) == r"project_id 'p\n1' contains a control character (U+000A); not sent"
    assert srv.requests == []


def test_bad_workflow_items_are_recorded_and_the_others_listed(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    rows = [
        workflow("wf-0"),
        "wf-1",
        {"name": "no id"},
        workflow("wf-\x1b[31m"),
        workflow("wf-0", name="again"),
        workflow("wf-5", project_id="p2"),
        workflow("wf-6", created_at="soon", name=7),
    ]
    srv.always(Reply(200, {"workflows": rows, "pagination": {"total": 7, "limit": 50}}))
    [page] = pages(make_client(), project_id="p1")
    assert page.problems == [
        "item 1: not an object",
        "item 2: no string id",
        r"item 3: workflow id 'wf-\x1b[31m' contains a control character (U+001B)",
        "item 4: repeats workflow id 'wf-0' (item 0 kept)",
        "item 5: names project 'p2', not 'p1'",
    ]
    assert [w.workflow_id for w in page.workflows] == ["wf-0", "wf-6"]
    assert page.workflows[0].name == "name of wf-0"
    assert (page.workflows[1].created_at, page.workflows[1].name) == (None, "7")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"pagination": {"total": 0}}, 'no "workflows" member (expected {"workflows": [...]})'),
        ({"workflows": {}}, '"workflows" is an object, not a list'),
        ({"error": "down"}, "a 200 carrying an error — None: None"),
    ],
)
def test_a_body_that_is_not_a_workflow_page_is_refused(
    srv: ScriptedServer, make_client: MakeClient, body: Any, reason: str
) -> None:
    srv.always(Reply(200, body))
    with pytest.raises(InvalidResponseError) as caught:
        pages(make_client())
    assert str(caught.value) == f"200 OK — invalid response: {reason} (listWorkflows at offset 0)"


def test_a_workflow_page_past_the_cap_says_which_setting_to_raise(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(Reply(200, {"workflows": [workflow(f"wf-{i}") for i in range(20)]}))
    with pytest.raises(InvalidResponseError) as caught:
        pages(make_client(max_body_bytes=1000))
    assert str(caught.value) == (
        "200 OK — invalid response: the workflow listing exceeds the 1000-byte limit "
        "(listWorkflows at offset 0); raise max_body_bytes (ARCHIVER_MAX_BODY_BYTES or "
        "--max-body-bytes) to accept it"
    )


def test_a_forbidden_listing_of_workflows_is_a_forbidden_error(
    srv: ScriptedServer, make_client: MakeClient
) -> None:
    srv.always(error(403, "forbidden_access", "no"))
    with pytest.raises(ForbiddenError):
        pages(make_client())


# -- estimate ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"estimated_cost": 1200}, 1200),
        ({"estimated_cost": 0}, 0),
        ({"estimated_cost": "1200"}, 1200),
        ({}, None),
        ({"estimated_cost": None}, None),
        ({"estimated_cost": "soon"}, None),
        ({"estimated_cost": 12.5}, None),
        ({"estimated_cost": True}, None),
        ({"estimated_cost": 2**64}, None),
    ],
)
def test_an_estimate_is_an_integer_or_none(
    srv: ScriptedServer, make_client: MakeClient, body: dict[str, Any], expected: int | None
) -> None:
    srv.always(Reply(200, body))
    assert make_client().workflow_estimate("wf/a") == expected
    assert srv.requests[0].path == "/v0/workflows/wf%2Fa/estimate"


@pytest.mark.parametrize(
    ("reply", "cls", "message"),
    [
        (
            Reply(200, [1]),
            InvalidResponseError,
            "200 OK — invalid response: expected a JSON object, got list",
        ),
        (error(404, "not_found", "gone"), NotFoundError, "404 Not Found — not_found: gone"),
    ],
)
def test_a_bad_estimate_answer_is_an_error(
    srv: ScriptedServer, make_client: MakeClient, reply: Reply, cls: type[ApiError], message: str
) -> None:
    srv.always(reply)
    with pytest.raises(cls) as caught:
        make_client().workflow_estimate(WF)
    assert str(caught.value) == f"{message} (estimate of workflow wf-a)"


# -- memory --------------------------------------------------------------------------------------


def test_listing_100000_jobs_stays_within_a_bounded_multiple_of_the_body() -> None:
    """Measured in its own process (tests/listing_probe.py); the figure is in the probe's output."""
    proc = subprocess.run(
        [sys.executable, str(PROBE), "100000"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    figures = json.loads(proc.stdout)
    assert figures["jobs"] == 100_000
    assert 28 < figures["body_mb"] < 33.5
    # the text and the summaries, the items decoded one at a time: about 3.4 times the body
    # (111 MB measured). Decoding the whole tree first, as before, took 5.6 times (183 MB).
    assert figures["growth_mb"] < 4.5 * figures["body_mb"], figures
