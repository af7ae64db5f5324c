"""The simulator's listing endpoints over real HTTP on 127.0.0.1 (issue 15 item 6): pagination,
filters, workflow history, estimates and jobs appearing over time, because discovery and change
detection are tested and benchmarked against this fake and must meet the documented shapes."""

from __future__ import annotations

import http.client
import itertools
import json
import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from archiver.errors import ConfigError
from archiver.sim.payloads import SUMMARY_FIELDS
from archiver.sim.simulator import Faults, Simulator

pytestmark = pytest.mark.integration  # served over real HTTP on 127.0.0.1

KEY = "sim-key"
WORKFLOW_FIELDS = {
    "id",
    "project_id",
    "legacy_project_id",
    "name",
    "created_by",
    "description",
    "created_at",
    "updated_at",
}
DETAIL_FIELDS = {
    "id",
    "name",
    "created_by",
    "description",
    "spec",
    "created_at",
    "updated_at",
    "val_errors",
    "project_id",
    "estimated_cost",
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 500.0

    def __call__(self) -> float:
        return self.now


class Api:
    """GETs with the key on one keep-alive connection; (status, parsed body)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def raw(self, path: str, key: str | None = KEY, **query: Any) -> tuple[int, bytes]:
        if query:
            path += "?" + urlencode(query)
        self.conn.request("GET", path, headers={} if key is None else {"Authorization": key})
        response = self.conn.getresponse()
        return response.status, response.read()

    def get(self, path: str, key: str | None = KEY, **query: Any) -> tuple[int, Any]:
        status, body = self.raw(path, key, **query)
        return status, json.loads(body)

    def ok(self, path: str, **query: Any) -> Any:
        status, doc = self.get(path, **query)
        assert status == 200, doc
        return doc

    def jobs(self, workflow_id: str, **query: Any) -> list[dict[str, Any]]:
        return self.ok(f"/v0/workflows/{quote(workflow_id, safe='')}/jobs", **query)["jobs"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Simulator:
    return Simulator(seed=5, jobs=40, workflows=6, tasks=(2, 4), clock=clock, new_jobs_per_minute=6)


@pytest.fixture
def api(sim: Simulator) -> Iterator[Api]:
    with sim.serve() as server:
        client = Api(server.port)
        yield client
        client.conn.close()


# --- listWorkflows ---------------------------------------------------------------------------


def test_a_pagination_walk_over_three_pages_sees_every_workflow_once(clock: FakeClock) -> None:
    sim = Simulator(seed=2, jobs=10, workflows=120, tasks=(1, 2), clock=clock)
    with sim.serve() as server:
        api = Api(server.port)
        first = api.ok("/v0/workflows")
        assert first["pagination"] == {"limit": 50, "offset": 0, "total": 120}
        pages, offset = [first["workflows"]], 50
        while offset < 120:
            doc = api.ok("/v0/workflows", offset=offset)
            assert doc["pagination"] == {"limit": 50, "offset": offset, "total": 120}
            pages.append(doc["workflows"])
            offset += 50
        past = api.ok("/v0/workflows", offset=120, limit=10)
    assert [len(p) for p in pages] == [50, 50, 20]
    assert past == {"workflows": [], "pagination": {"limit": 10, "offset": 120, "total": 120}}
    ids = [w["id"] for page in pages for w in page]
    assert sorted(ids) == sorted(sim.workflow_ids()) and len(set(ids)) == 120
    assert all(set(w) == WORKFLOW_FIELDS for page in pages for w in page)


def test_limit_is_capped_and_bad_paging_is_a_400(api: Api) -> None:
    assert api.ok("/v0/workflows", limit=5000)["pagination"]["limit"] == 1000
    assert len(api.ok("/v0/workflows", limit=2)["workflows"]) == 2
    for query in ({"limit": 0}, {"limit": "ten"}, {"offset": -1}, {"offset": "1.5"}):
        status, doc = api.get("/v0/workflows", **query)
        assert status == 400
        assert doc["error"]["code"] == "bad_request"


def test_workflow_filters(sim: Simulator, api: Api) -> None:
    every = api.ok("/v0/workflows")["workflows"]
    assert len(every) == 6
    projects = {w["project_id"] for w in every}
    for project in projects:
        doc = api.ok("/v0/workflows", project_id=project)
        assert {w["id"] for w in doc["workflows"]} == {
            w["id"] for w in every if w["project_id"] == project
        }
        assert doc["pagination"]["total"] == len(doc["workflows"])
    one = every[3]
    assert api.ok("/v0/workflows", id=one["id"])["workflows"] == [one]
    assert one in api.ok("/v0/workflows", name=one["name"].split(" — ")[1].upper())["workflows"]
    by_user = api.ok("/v0/workflows", created_by=one["created_by"])["workflows"]
    assert one in by_user and all(w["created_by"] == one["created_by"] for w in by_user)
    assert one in api.ok("/v0/workflows", created_on=one["created_at"][:10])["workflows"]
    nothing = api.ok("/v0/workflows", project_id="prj-none")
    assert nothing == {"workflows": [], "pagination": {"limit": 50, "offset": 0, "total": 0}}


# --- getWorkflowsById and the estimate -------------------------------------------------------


def test_workflow_detail_and_estimate(sim: Simulator, api: Api) -> None:
    item = api.ok("/v0/workflows")["workflows"][0]
    wf = item["id"]
    detail = api.ok(f"/v0/workflows/{wf}", project_id=item["project_id"])
    assert set(detail) == DETAIL_FIELDS
    assert {k: detail[k] for k in WORKFLOW_FIELDS - {"legacy_project_id"}} == {
        k: item[k] for k in WORKFLOW_FIELDS - {"legacy_project_id"}
    }
    assert isinstance(detail["estimated_cost"], int) and detail["estimated_cost"] > 0
    assert json.loads(bytes(detail["spec"]))["version"] == 1
    assert api.ok(f"/v0/workflows/{wf}") == detail  # project_id is not insisted on
    assert api.ok(f"/v0/workflows/{wf}/estimate") == {"estimated_cost": detail["estimated_cost"]}


@pytest.mark.parametrize("suffix", ["", "/estimate", "/jobs"])
def test_an_unknown_workflow_is_404(api: Api, suffix: str) -> None:
    status, doc = api.get(f"/v0/workflows/wf-unknown{suffix}")
    assert status == 404
    assert doc == {
        "error": {
            "code": "not_found",
            "message": "workflow not found",
            "details": {"workflow_id": "wf-unknown"},
        }
    }


def test_a_workflow_asked_under_another_project_is_404(sim: Simulator, api: Api) -> None:
    wf = sim.workflow_ids()[0]
    assert api.get(f"/v0/workflows/{wf}", project_id="prj-other")[0] == 404


@pytest.mark.parametrize(
    "path", ["/v0/workflows", "/v0/workflows/x", "/v0/workflows/x/estimate", "/v0/workflows/x/jobs"]
)
def test_listing_routes_check_the_key(api: Api, path: str) -> None:
    for key in (None, "wrong"):
        status, doc = api.get(path, key=key)
        assert status == 403
        assert doc["error"]["code"] == "invalid_api_key"


def test_a_workflow_is_renamed_and_re_estimated_over_time(clock: FakeClock) -> None:
    sim = Simulator(seed=8, jobs=4, workflows=3, clock=clock, time_scale=60.0)
    wf = sim.workflow_ids()[0]
    seen = []
    with sim.serve() as server:
        api = Api(server.port)
        for _ in range(30):
            detail = api.ok(f"/v0/workflows/{wf}")
            seen.append((detail["name"], detail["estimated_cost"], detail["updated_at"]))
            clock.now += 30.0  # half an hour simulated: changes come about hourly
    names = {name for name, _, _ in seen}
    estimates = {cost for _, cost, _ in seen}
    assert len(names) > 1 and len(estimates) > 1
    assert [s[2] for s in seen] == sorted(s[2] for s in seen)  # updated_at never goes back
    assert len({s[2] for s in seen}) > 1
    # each change moves updated_at, and updated_at moves only with a change
    for a, b in itertools.pairwise(seen):
        assert (a[0], a[1]) != (b[0], b[1]) or a[2] == b[2]
        assert (a[0], a[1]) == (b[0], b[1]) or a[2] < b[2]
    versions = sim.workflow(wf).versions_until(sim.elapsed())
    assert [v.name for v in versions][-1] == seen[-1][0]


def test_no_workflow_changes_when_disabled(clock: FakeClock) -> None:
    sim = Simulator(seed=8, jobs=4, workflows=3, clock=clock, workflow_changes=math.inf)
    plan = sim.workflow(sim.workflow_ids()[0])
    assert plan is not None
    assert plan.version_at(0.0) == plan.version_at(1e9)


# --- listJobs --------------------------------------------------------------------------------


def test_list_summaries_equal_the_job_endpoint_at_the_same_instant(
    sim: Simulator, api: Api, clock: FakeClock
) -> None:
    compared = 0
    for step in range(12):
        clock.now += 4.0 * step
        for wf in sim.workflow_ids():
            for item in api.jobs(wf):
                assert list(item) == list(SUMMARY_FIELDS)
                assert item["workflow_id"] == wf
                job = api.ok(f"/v0/workflows/{wf}/jobs/{item['id']}")
                assert item == {name: job[name] for name in SUMMARY_FIELDS}
                compared += 1
    statuses = {i["status"] for wf in sim.workflow_ids() for i in api.jobs(wf)}
    assert compared > 12 * 40 and len(statuses) >= 2


def test_job_filters(sim: Simulator, api: Api, clock: FakeClock) -> None:
    clock.now += 25.0
    wf = max(sim.workflow_ids(), key=lambda w: len(api.jobs(w)))
    every = api.jobs(wf)
    assert len(every) >= 3
    for field in ("status", "created_by", "id"):
        for value in {j[field] for j in every}:
            assert api.jobs(wf, **{field: value}) == [j for j in every if j[field] == value]
    day = every[0]["created_at"][:10]
    assert api.jobs(wf, created_on=day) == [j for j in every if j["created_at"][:10] == day]
    assert api.jobs(wf, status="no-such-status") == []
    assert api.jobs(wf, limit=1, offset=2) == every  # listJobs has no pagination


def test_new_jobs_appear_between_two_instants(sim: Simulator, api: Api, clock: FakeClock) -> None:
    def listed() -> set[tuple[str, str]]:
        return {(wf, j["id"]) for wf in sim.workflow_ids() for j in api.jobs(wf)}

    before = listed()
    assert before == set(sim.job_ids()) and len(before) == 40
    clock.now += 120.0  # 6 a minute: about 12 new jobs
    after = listed()
    new = after - before
    assert before < after and 4 <= len(new) <= 30
    assert {wf for wf, _ in new} <= set(sim.workflow_ids())  # in existing workflows
    assert after == set(sim.job_ids())
    for wf, job_id in new:
        assert api.ok(f"/v0/workflows/{wf}/jobs/{job_id}")["id"] == job_id


def test_a_job_is_not_served_before_it_is_created(sim: Simulator, clock: FakeClock) -> None:
    clock.now += 300.0
    newest = sim.job_ids()[-1]
    index = len(sim.job_ids()) - 1
    created = sim.created_at(index)
    assert 0 < created <= 300.0
    created_text = (sim.start + timedelta(seconds=created)).isoformat(timespec="microseconds")
    with sim.serve() as server:
        api = Api(server.port)
        clock.now = 500.0 + created - 0.001
        status, doc = api.get(f"/v0/workflows/{newest[0]}/jobs/{newest[1]}")
        assert status == 404 and doc["error"]["code"] == "not_found"
        assert newest[1] not in {j["id"] for j in api.jobs(newest[0])}
        assert newest not in sim.job_ids()
        clock.now = 500.0 + created
        job = api.ok(f"/v0/workflows/{newest[0]}/jobs/{newest[1]}")
        assert job["created_at"] == created_text.replace("+00:00", "Z")
        assert job["status"] == "queued"
        assert newest[1] in {j["id"] for j in api.jobs(newest[0])}


def test_no_new_jobs_by_default(clock: FakeClock) -> None:
    sim = Simulator(seed=5, jobs=7, clock=clock)
    clock.now += 1e6
    assert len(sim.job_ids()) == 7


# --- determinism and faults ------------------------------------------------------------------


def bodies(seed: int, instants: list[float]) -> list[bytes]:
    clock = FakeClock()
    sim = Simulator(
        seed=seed, jobs=12, workflows=4, tasks=(2, 3), clock=clock, new_jobs_per_minute=3
    )
    out = []
    with sim.serve() as server:
        api = Api(server.port)
        for t in instants:
            clock.now = 500.0 + t
            out.append(api.raw("/v0/workflows")[1])
            for wf in sim.workflow_ids():
                out += [api.raw(f"/v0/workflows/{wf}")[1], api.raw(f"/v0/workflows/{wf}/jobs")[1]]
    return out


def test_everything_served_is_deterministic_from_the_seed() -> None:
    instants = [0.0, 7.5, 61.0, 400.0, 3000.0]
    first = bodies(3, instants)
    assert bodies(3, instants) == first
    assert bodies(4, instants) != first


def test_faults_apply_to_the_listing_routes(clock: FakeClock) -> None:
    sim = Simulator(seed=1, jobs=5, workflows=2, clock=clock, faults=Faults(error_rate=1.0))
    wf = sim.workflow_ids()[0]
    with sim.serve() as server:
        api = Api(server.port)
        for path in ("/v0/workflows", f"/v0/workflows/{wf}", f"/v0/workflows/{wf}/jobs"):
            assert api.raw(path)[0] in (500, 502, 503)
    sim = Simulator(seed=1, jobs=30, workflows=2, clock=clock, faults=Faults(malformed_rate=1.0))
    wf = sim.workflow_ids()[0]
    kinds = set()
    with sim.serve() as server:
        api = Api(server.port)
        for _ in range(40):
            status, body = api.raw(f"/v0/workflows/{wf}/jobs")
            assert status == 200
            try:
                doc = json.loads(body)
            except ValueError:
                kinds.add("unparsable")
                continue
            if "error" in doc:
                kinds.add("error_body")
            elif {j["workflow_id"] for j in doc["jobs"]} - {wf}:
                kinds.add("other_workflow")
    assert kinds == {"unparsable", "error_body", "other_workflow"}


def test_new_job_rate_is_validated() -> None:
    with pytest.raises(ConfigError):
        Simulator(new_jobs_per_minute=-1)
    with pytest.raises(ConfigError):
        Simulator(workflow_changes=0)


def test_a_forbidden_or_deleted_workflow(sim: Simulator, api: Api) -> None:
    secret, gone = sim.workflow_ids()[:2]
    wf, job_id = next(k for k in sim.job_ids() if k[0] == gone)
    sim.forbidden_workflows.add(secret)
    sim.gone_workflows.add(gone)
    for suffix in ("", "/estimate", "/jobs"):
        status, doc = api.get(f"/v0/workflows/{secret}{suffix}")
        assert (status, doc["error"]["code"]) == (403, "forbidden")
        status, doc = api.get(f"/v0/workflows/{gone}{suffix}")
        assert (status, doc["error"]["code"]) == (404, "not_found")
    assert api.get(f"/v0/workflows/{wf}/jobs/{job_id}")[0] == 404
    doc = api.ok("/v0/workflows")
    assert {w["id"] for w in doc["workflows"]} == set(sim.workflow_ids()) - {secret, gone}
    assert doc["pagination"]["total"] == 4
