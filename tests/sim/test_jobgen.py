"""Tests for archiver.sim.jobgen: payloads are reproducible, shaped like the documented API
response, and their lifecycles behave like real jobs (ordering, DAG, cost, errors), since every
other test and benchmark trusts this generator."""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import FrozenInstanceError
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from archiver.sim import jobgen, mutate
from archiver.sim.jobgen import ZERO_TIME, JobPlan, go_duration, plan_job
from archiver.sim.payloads import job_payload

JOB_KEYS = {
    "created_by": str,
    "status": str,
    "time_taken": str,
    "id": str,
    "tasks": list,
    "val_errors": list,
    "spec": list,
    "cost": int,
    "workflow_id": str,
    "updated_at": str,
    "finished_at": str,
    "exec_created_at": str,
    "exec_updated_at": str,
    "created_at": str,
    "estimated_duration": int,
    "progress": str,
}
TASK_KEYS = {
    "id": str,
    "name": str,
    "status": str,
    "progress": int,
    "created_at": str,
    "updated_at": str,
    "finished_at": str,
    "estimated_time_duration": int,
    "time_taken": str,
    "state_msg": str,
    "err_msg": str,
    "failure_type": str,
    "inputs": list,
    "result": list,
    "info_logs": list,
    "disclaimer": list,
    "recv_time": str,
    "send_time": str,
    "block_inf_start_time": str,
    "block_inf_end_time": str,
    "depends_on": list,
    "block_info": dict,
}
VAL_ERROR_KEYS = {"from", "to", "err", "reason", "component_name"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
GO_DURATION = re.compile(r"^(\d+h)?(\d+m)?\d+(\.\d{1,3})?s$|^\d+ms$")
PROGRESS = re.compile(r"^\d{1,3}(\.\d)?%$")
TERMINAL = {"completed", "failed", "cancelled"}
ORDER = {"queued": 0, "running": 1, "completed": 2, "failed": 2, "cancelled": 2}

SEED = 7
PLANS = jobgen.population(SEED, 120)  # drawn once: about 0.15 s


def states(plan: JobPlan) -> Iterator[tuple[float, dict[str, Any]]]:
    """Every distinct state of a job, oldest first, as (simulated second, payload).

    Evaluated with time_scale=1 at the plan's own offsets, so no float rounding skips a state.
    """
    points = {0.0, *(e for e in plan.events if e >= 0)}
    if plan.started:
        beats = math.ceil((plan.end - plan.queue_delay) / plan.heartbeat)
        points.update(plan.queue_delay + k * plan.heartbeat for k in range(beats))
    for s in sorted(points):
        yield s, job_payload(plan, s)


def final(plan: JobPlan) -> dict[str, Any]:
    return job_payload(plan, plan.settled_at + 1)


def tasks_by_id(payload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in payload["tasks"]}


# --- determinism ------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.0, 3.0, 11.5, 24.0, 80.0])
def test_same_seed_index_and_time_give_identical_payloads(t: float) -> None:
    for index in (0, 5, 17):
        a = job_payload(plan_job(3, index), t, time_scale=60)
        b = job_payload(plan_job(3, index), t, time_scale=60)
        assert json.dumps(a) == json.dumps(b)


def test_plans_are_equal_values_for_equal_inputs() -> None:
    assert plan_job(3, 4) == plan_job(3, 4)
    assert jobgen.population(3, 5) == [plan_job(3, i) for i in range(5)]


def test_different_seed_or_index_gives_different_jobs() -> None:
    base = job_payload(plan_job(1, 0), 20, time_scale=60)
    assert job_payload(plan_job(2, 0), 20, time_scale=60) != base
    assert job_payload(plan_job(1, 1), 20, time_scale=60) != base
    ids = {(p.workflow_id, p.job_id) for p in jobgen.population(1, 50)}
    assert len(ids) == 50
    assert ids.isdisjoint((p.workflow_id, p.job_id) for p in jobgen.population(2, 50))


def test_job_ids_are_drawn_without_the_full_plan() -> None:
    for plan in PLANS[:20]:
        assert jobgen.job_ids(SEED, plan.index) == (plan.workflow_id, plan.job_id)


def test_plan_is_frozen() -> None:
    with pytest.raises(FrozenInstanceError):
        PLANS[0].outcome = "completed"  # type: ignore[misc]


def test_returned_payload_is_a_fresh_object() -> None:
    first = job_payload(PLANS[0], 15, time_scale=60)
    first["tasks"][0]["depends_on"].append("x")
    first["spec"].clear()
    assert job_payload(PLANS[0], 15, time_scale=60) != first


def test_time_scale_compresses_the_lifecycle() -> None:
    for plan in PLANS[:10]:
        assert job_payload(plan, 10, time_scale=60) == job_payload(plan, 600)


# --- shape ------------------------------------------------------------------------------------


def check_types(obj: dict[str, Any], spec: dict[str, type]) -> None:
    assert set(obj) == set(spec)
    for key, kind in spec.items():
        assert isinstance(obj[key], kind), key
        assert not isinstance(obj[key], bool), key


@pytest.mark.parametrize("t", [0.0, 4.0, 15.0, 30.0, 90.0])
def test_payload_has_documented_keys_and_types(t: float) -> None:
    for plan in PLANS[:40]:
        payload = job_payload(plan, t, time_scale=60)
        check_types(payload, JOB_KEYS)
        assert all(isinstance(b, int) and 0 <= b < 256 for b in payload["spec"])
        assert payload["estimated_duration"] > 0
        for task in payload["tasks"]:
            check_types(task, TASK_KEYS)
            assert set(task["block_info"]) == {"id", "name", "version"}
            assert re.fullmatch(r"\d+\.\d+\.\d+", task["block_info"]["version"])
            assert 0 <= task["progress"] <= 100
            assert all(isinstance(d, str) for d in task["depends_on"])
            assert all(isinstance(d, str) for d in task["disclaimer"])
            for field in ("inputs", "result", "info_logs"):
                assert all(isinstance(b, int) and 0 <= b < 256 for b in task[field])
        for error in payload["val_errors"]:
            assert set(error) == VAL_ERROR_KEYS
            assert all(isinstance(v, str) for v in error.values())


def test_ids_look_like_the_real_ones() -> None:
    uuid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert all(re.fullmatch(r"wf-[0-9a-f]{8}", p.workflow_id) for p in PLANS)
    assert all(uuid.match(p.job_id) for p in PLANS)
    assert all(uuid.match(t.task_id) for p in PLANS for t in p.tasks)
    assert 4 <= len({p.workflow_id for p in PLANS}) <= 8
    assert 3 <= len({p.created_by for p in PLANS}) <= 5
    assert all(10 <= len(p.tasks) <= 30 for p in PLANS)


def test_byte_array_fields_hold_json_and_text() -> None:
    payload = final(PLANS[0])
    assert isinstance(json.loads(bytes(payload["spec"])), dict)
    for task in payload["tasks"]:
        assert isinstance(json.loads(bytes(task["inputs"])), dict)
        if task["status"] == "completed":
            assert isinstance(json.loads(bytes(task["result"])), dict)
        bytes(task["info_logs"]).decode("utf-8")


def test_timestamps_are_iso_utc_with_microseconds_or_zero() -> None:
    zero_or_empty = {ZERO_TIME, ""}
    for plan in PLANS[:30]:
        for _, payload in states(plan):
            for key in ("updated_at", "finished_at", "exec_created_at", "exec_updated_at"):
                value = payload[key]
                assert TIMESTAMP.match(value) or value == ZERO_TIME, (key, value)
            assert TIMESTAMP.match(payload["created_at"])
            for task in payload["tasks"]:
                for key in ("created_at", "updated_at", "finished_at"):
                    assert TIMESTAMP.match(task[key]) or task[key] == ZERO_TIME
                for key in ("recv_time", "send_time", "block_inf_start_time", "block_inf_end_time"):
                    assert TIMESTAMP.match(task[key]) or task[key] in zero_or_empty


def test_jobs_are_created_a_few_minutes_before_the_start() -> None:
    for plan in PLANS:
        created = datetime.fromisoformat(job_payload(plan, 0)["created_at"])
        assert timedelta(minutes=-11) < created - jobgen.DEFAULT_START < timedelta(0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (3.5, "3.5s"),
        (61.25, "1m1.25s"),
        (120, "2m0s"),
        (754, "12m34s"),
        (3600, "1h0m0s"),
        (3723.5, "1h2m3.5s"),
        (90061.001, "25h1m1.001s"),
    ],
)
def test_go_duration_matches_go(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_time_taken_uses_the_go_styles() -> None:
    seen = set()
    for plan in PLANS:
        payload = final(plan)
        for value in [payload["time_taken"], *(t["time_taken"] for t in payload["tasks"])]:
            assert GO_DURATION.match(value), value
        seen.add(plan.duration_style)
        if plan.started and plan.duration_style == "seconds":
            assert re.fullmatch(r"\d+s", payload["time_taken"])
    assert seen == {"go", "go_whole", "seconds"}


def test_progress_is_a_percentage_string_sometimes_with_one_decimal() -> None:
    decimals = 0
    for plan in PLANS[:40]:
        for _, payload in states(plan):
            assert PROGRESS.match(payload["progress"]), payload["progress"]
            decimals += "." in payload["progress"]
    assert decimals > 0


# --- lifecycle --------------------------------------------------------------------------------


def test_every_job_is_queued_at_the_start() -> None:
    for plan in PLANS:
        payload = job_payload(plan, 0)
        assert payload["status"] == "queued"
        assert (payload["progress"], payload["cost"], payload["time_taken"]) == ("0%", 0, "0s")
        assert payload["finished_at"] == payload["exec_created_at"] == ZERO_TIME
        assert {t["status"] for t in payload["tasks"]} == {"queued"}


def test_every_job_ends_terminal_with_a_realistic_outcome_mix() -> None:
    plans = jobgen.population(11, 400, tasks=(2, 4))
    outcomes = Counter(final(p)["status"] for p in plans)
    assert set(outcomes) == TERMINAL
    assert 0.70 <= outcomes["completed"] / 400 <= 0.90
    assert 0.08 <= outcomes["failed"] / 400 <= 0.22
    assert 0.01 <= outcomes["cancelled"] / 400 <= 0.10


def test_the_demo_lifecycle_is_tens_of_seconds_at_time_scale_60() -> None:
    ends = sorted(p.end / 60 for p in PLANS if p.outcome == "completed")
    assert ends[0] >= 10 and ends[-1] <= 60


def check_lifecycle(plan: JobPlan) -> None:
    previous: dict[str, Any] | None = None
    for _, payload in states(plan):
        status = payload["status"]
        tasks = tasks_by_id(payload)
        for task in payload["tasks"]:
            if task["status"] != "queued" and task["recv_time"]:
                for dep in task["depends_on"]:
                    assert tasks[dep]["status"] == "completed", "started before a dependency"
        if status in TERMINAL:
            assert payload["finished_at"] != ZERO_TIME
            assert not {t["status"] for t in payload["tasks"]} & {"queued", "running"}
        if previous is not None:
            assert ORDER[status] >= ORDER[previous["status"]]
            assert payload["updated_at"] >= previous["updated_at"]
            changed = {k for k in payload if payload[k] != previous[k]} - {"updated_at"}
            if changed:
                assert payload["updated_at"] > previous["updated_at"], changed
            if status not in TERMINAL:
                assert payload["cost"] >= previous["cost"], "cost fell while running"
                assert float(payload["progress"][:-1]) >= float(previous["progress"][:-1])
            for task in payload["tasks"]:
                before = tasks_by_id(previous)[task["id"]]
                assert ORDER[task["status"]] >= ORDER[before["status"]]
                assert task["progress"] >= before["progress"]
        previous = payload


def test_lifecycles_only_move_forward() -> None:
    for plan in PLANS[:40]:
        check_lifecycle(plan)


def test_small_jobs_for_demos() -> None:
    for index in range(30):
        plan = plan_job(5, index, tasks=(1, 3))
        assert 1 <= len(plan.tasks) <= 3
        check_lifecycle(plan)
        assert final(plan)["status"] in TERMINAL


def test_outcomes_show_in_tasks() -> None:
    for plan in PLANS:
        payload = final(plan)
        statuses = Counter(t["status"] for t in payload["tasks"])
        if payload["status"] == "completed":
            assert payload["progress"] == "100%"
            assert set(statuses) == {"completed"}
        elif payload["status"] == "failed":
            failed = [t for t in payload["tasks"] if t["status"] == "failed"]
            assert failed
            assert all(t["err_msg"] and t["failure_type"] for t in failed)
            assert {t["failure_type"] for t in failed} <= {
                "timeout",
                "oom",
                "input_error",
                "internal",
            }
        else:
            assert set(statuses) <= {"completed", "cancelled"}
            assert "cancelled" in statuses
        others = [t for t in payload["tasks"] if t["status"] != "failed"]
        assert all(t["err_msg"] == t["failure_type"] == "" for t in others)


def test_depends_on_references_only_earlier_tasks() -> None:
    for plan in PLANS:
        seen: list[str] = []
        for task in final(plan)["tasks"]:
            assert len(task["depends_on"]) <= 3
            assert len(set(task["depends_on"])) == len(task["depends_on"])
            assert set(task["depends_on"]) <= set(seen)
            seen.append(task["id"])
    assert any(t.depends_on for p in PLANS for t in p.tasks[1:])


def test_some_jobs_are_repriced_after_they_end() -> None:
    plans = jobgen.population(13, 400, tasks=(2, 4))
    ups = downs = 0
    for plan in plans:
        at_end = job_payload(plan, plan.end)
        later = final(plan)
        assert at_end["status"] == later["status"] in TERMINAL
        if later["cost"] != at_end["cost"]:
            assert later["updated_at"] > at_end["updated_at"]
            assert later["exec_updated_at"] == at_end["exec_updated_at"]
            ups += later["cost"] > at_end["cost"]
            downs += later["cost"] < at_end["cost"]
    assert 0.10 <= (ups + downs) / 400 <= 0.30
    assert ups and downs


def test_validation_errors_appear_and_some_are_resolved() -> None:
    appeared_later = resolved = 0
    for plan in PLANS:
        seen: list[list[dict[str, str]]] = [p["val_errors"] for _, p in states(plan)]
        assert all(len(errors) <= 3 for errors in seen)
        appeared_later += any(not a and b for a, b in itertools.pairwise(seen))
        keys = [{json.dumps(e, sort_keys=True) for e in errors} for errors in seen]
        resolved += any(a - b for a, b in itertools.pairwise(keys))
    assert appeared_later > 0
    assert resolved > 0


def test_cancelled_while_queued_never_executes() -> None:
    plans = [p for p in jobgen.population(17, 600, tasks=(1, 2)) if not p.started]
    assert plans, "expected at least one job cancelled before it started"
    payload = final(plans[0])
    assert payload["status"] == "cancelled"
    assert payload["exec_created_at"] == ZERO_TIME
    assert payload["time_taken"] == "0s"
    assert {t["status"] for t in payload["tasks"]} == {"cancelled"}


def test_arguments_are_validated() -> None:
    with pytest.raises(ValueError):
        plan_job(0, 0, tasks=(0, 3))
    with pytest.raises(ValueError):
        plan_job(0, 0, tasks=(5, 3))
    with pytest.raises(ValueError):
        plan_job(0, 0, start=datetime(2025, 1, 1))  # naive: ambiguous


def test_start_and_ids_can_be_chosen() -> None:
    start = datetime(2024, 12, 31, 23, 59, tzinfo=UTC)
    plan = plan_job(0, 0, start=start, ids=("wf/odd id", "jöb 1"))
    payload = job_payload(plan, 0)
    assert (payload["workflow_id"], payload["id"]) == ("wf/odd id", "jöb 1")
    assert payload["created_at"].startswith("2024-12-31T23:")


# --- mutate -----------------------------------------------------------------------------------


def without_updated_at(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k != "updated_at"}


def test_mutate_always_changes_something_and_leaves_the_input_alone() -> None:
    rng = random.Random(1)
    for plan in PLANS[:40]:
        for t in (0.0, 600.0, plan.settled_at + 1):
            original = job_payload(plan, t)
            kept = copy.deepcopy(original)
            changed = mutate.mutate(original, rng)
            assert original == kept
            assert without_updated_at(changed) != without_updated_at(original)
            assert changed["updated_at"] > original["updated_at"]
            check_types(changed, JOB_KEYS)


def test_mutate_is_deterministic_for_an_rng_seed() -> None:
    payload = job_payload(PLANS[3], 900)
    assert mutate.mutate(payload, random.Random(5)) == mutate.mutate(payload, random.Random(5))


def test_mutate_tolerates_odd_payloads() -> None:
    changed = mutate.mutate(
        {"updated_at": "garbage", "tasks": ["x"], "cost": None}, random.Random(0)
    )
    assert isinstance(changed["cost"], int)
