"""The simulator's clock never runs ahead of the moment it serves (issue 16 item 9): no timestamp
later than the serving instant, and ``time_taken`` that agrees with the timestamps and with the
time an observer sees pass, in job payloads, their tasks, list summaries and workflows."""

from __future__ import annotations

import http.client
import itertools
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver.sim import jobgen
from archiver.sim.simulator import Simulator

pytestmark = pytest.mark.integration  # served over real HTTP on 127.0.0.1

KEY = "sim-key"
START = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
JOB_TIMES = ("created_at", "updated_at", "finished_at", "exec_created_at", "exec_updated_at")
TASK_TIMES = (
    "created_at",
    "updated_at",
    "finished_at",
    "recv_time",
    "send_time",
    "block_inf_start_time",
    "block_inf_end_time",
)
SUMMARY_TIMES = ("created_at", "updated_at", "finished_at")
TOLERANCE = 0.51  # time_taken may be whole seconds ("go_whole", "seconds" styles)
DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?$")


def when(text: str) -> datetime | None:
    """A served timestamp, or None for one that has not happened ("" or Go's zero time)."""
    if text in ("", jobgen.ZERO_TIME):
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds(text: str) -> float:
    if text.endswith("ms"):
        return int(text[:-2]) / 1000
    match = DURATION.match(text)
    assert match and text, f"not a duration: {text!r}"
    hours, minutes, secs = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(secs or 0)


def between(later: str, earlier: str) -> float:
    a, b = when(later), when(earlier)
    assert a is not None and b is not None
    return (a - b).total_seconds()


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Api:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def ok(self, path: str) -> Any:
        self.conn.request("GET", path, headers={"Authorization": KEY})
        response = self.conn.getresponse()
        body = response.read()
        assert response.status == 200, body
        return json.loads(body)


def check_job(job: dict[str, Any], served: datetime) -> None:
    for name in JOB_TIMES:
        moment = when(job[name])
        assert moment is None or moment <= served, (name, job[name], served)
    taken = seconds(job["time_taken"])
    if job["status"] in ("completed", "failed", "cancelled"):
        assert when(job["finished_at"]) is not None
        if when(job["exec_created_at"]) is not None:
            assert abs(between(job["finished_at"], job["exec_created_at"]) - taken) <= TOLERANCE
        else:
            assert taken == 0
    elif job["status"] == "running":
        assert abs(between(job["updated_at"], job["exec_created_at"]) - taken) <= TOLERANCE
    else:
        assert taken == 0
    for task in job["tasks"]:
        for name in TASK_TIMES:
            moment = when(task[name])
            assert moment is None or moment <= served, (name, task[name], served)
        task_taken = seconds(task["time_taken"])
        if task["status"] == "completed":
            assert abs(between(task["finished_at"], task["recv_time"]) - task_taken) <= TOLERANCE
        elif task["status"] == "running":
            assert abs(between(task["updated_at"], task["recv_time"]) - task_taken) <= TOLERANCE


def check_summary(item: dict[str, Any], served: datetime) -> None:
    for name in SUMMARY_TIMES:
        moment = when(item[name])
        assert moment is None or moment <= served, (name, item[name], served)
    taken = seconds(item["time_taken"])
    end = item["finished_at"] if when(item["finished_at"]) is not None else item["updated_at"]
    assert taken <= between(end, item["created_at"]) + TOLERANCE


def test_nothing_served_is_dated_after_the_instant_it_is_served_at() -> None:
    clock = FakeClock()
    sim = Simulator(
        seed=12,
        jobs=25,
        workflows=4,
        tasks=(2, 6),
        clock=clock,
        time_scale=60.0,
        start=START,
        new_jobs_per_minute=5,
    )
    instants = [i * 0.37 + (i % 7) * 0.011 for i in range(0, 160)] + [200.0, 900.0, 4000.0]
    running_seen: dict[str, list[tuple[float, float]]] = {}
    statuses = set()
    with sim.serve() as server:
        api = Api(server.port)
        for t in instants:
            clock.now = 100.0 + t
            served = START + timedelta(seconds=t)
            for w in api.ok("/v0/workflows")["workflows"]:
                assert when(w["created_at"]) <= served and when(w["updated_at"]) <= served
                detail = api.ok(f"/v0/workflows/{w['id']}")
                assert when(detail["updated_at"]) <= served
                for item in api.ok(f"/v0/workflows/{w['id']}/jobs")["jobs"]:
                    check_summary(item, served)
                    job = api.ok(f"/v0/workflows/{w['id']}/jobs/{item['id']}")
                    check_job(job, served)
                    statuses.add(job["status"])
                    if job["status"] == "running":
                        running_seen.setdefault(job["id"], []).append(
                            (t, seconds(job["time_taken"]))
                        )
    assert statuses == {"queued", "running", "completed", "failed", "cancelled"}
    # an observer polling a running job sees time_taken grow no faster than its own clock
    # (it grew 60 times faster when simulated seconds were served as real ones)
    pairs = 0
    for seen in running_seen.values():
        for (t1, a), (t2, b) in itertools.pairwise(seen):
            assert b - a <= (t2 - t1) + 2 * TOLERANCE
            pairs += 1
    assert pairs > 50


def test_a_simulation_started_now_serves_nothing_from_the_future() -> None:
    """With the real clock, as ``archiver simulate`` and the demo run it."""
    sim = Simulator(seed=3, jobs=30, tasks=(2, 6), start=datetime.now(UTC))
    with sim.serve() as server:
        api = Api(server.port)
        for wf, job_id in sim.job_ids():
            job = api.ok(f"/v0/workflows/{wf}/jobs/{job_id}")
            check_job(job, datetime.now(UTC))


def test_the_time_scale_only_speeds_lifecycles() -> None:
    """At time scale 60 a job drawn to run 15-40 minutes runs 15-40 real seconds, says so in
    time_taken, and is otherwise the same job."""
    slow = jobgen.plan_job(4, 2, tasks=(3, 5))
    fast = jobgen.plan_job(4, 2, tasks=(3, 5), pace=60.0)
    assert (fast.job_id, fast.outcome, fast.total_cost, fast.final_cost) == (
        slow.job_id,
        slow.outcome,
        slow.total_cost,
        slow.final_cost,
    )
    assert fast.end - fast.queue_delay == pytest.approx(
        (slow.end - slow.queue_delay) / 60, abs=1e-5
    )
    assert [t.name for t in fast.tasks] == [t.name for t in slow.tasks]
