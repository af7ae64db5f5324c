"""SteppedSimulator: between two instants exactly the chosen jobs change, as seen through the
listing endpoint and the job endpoint alike, which the change-detection benchmark relies on."""

from __future__ import annotations

import http.client
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from archiver.sim.payloads import SUMMARY_FIELDS
from archiver.sim.stepped import STEP_SECONDS, SteppedSimulator

pytestmark = pytest.mark.integration  # served over real HTTP on 127.0.0.1


def get(conn: http.client.HTTPConnection, path: str) -> Any:
    conn.request("GET", path, headers={"Authorization": "sim-key"})
    response = conn.getresponse()
    body = response.read()
    assert response.status == 200, body
    return json.loads(body)


def listed(conn: http.client.HTTPConnection, sim: SteppedSimulator) -> dict[tuple, dict]:
    out = {}
    for wf in sim.workflow_ids():
        for item in get(conn, f"/v0/workflows/{wf}/jobs")["jobs"]:
            out[(wf, item["id"])] = item
    return out


def test_exactly_the_chosen_jobs_change_at_a_step() -> None:
    sim = SteppedSimulator(jobs=400, workflows=10, seed=3)
    assert len(sim.job_ids()) == 400 and len(sim.workflow_ids()) == 10
    with sim.serve() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        before = listed(conn, sim)
        assert set(before) == set(sim.job_ids())
        assert listed(conn, sim) == before  # nothing moves by itself
        changed = sim.step(fraction=0.01)
        after = listed(conn, sim)
        assert len(changed) == 4
        assert {k for k in before if before[k] != after[k]} == set(changed)
        served = sim.start + timedelta(seconds=sim.elapsed())
        for wf, job_id in changed:
            job = get(conn, f"/v0/workflows/{wf}/jobs/{job_id}")
            assert {n: job[n] for n in SUMMARY_FIELDS} == after[(wf, job_id)]
            assert job["updated_at"] > before[(wf, job_id)]["updated_at"]
            assert datetime.fromisoformat(job["updated_at"].replace("Z", "+00:00")) <= served
        again = sim.step(indexes=[0, 5])
        assert again == [sim.job_ids()[0], sim.job_ids()[5]]
        third = listed(conn, sim)
        assert {k for k in after if after[k] != third[k]} == set(again)
        assert sim.step() == [] and listed(conn, sim) == third
        conn.close()
    assert sim.steps == 3 and sim.elapsed() > 3 * STEP_SECONDS


def test_steps_are_reproducible_and_validated() -> None:
    a, b = SteppedSimulator(jobs=50, workflows=5, seed=9), SteppedSimulator(jobs=50, workflows=5)
    c = SteppedSimulator(jobs=50, workflows=5, seed=9)
    assert a.step(count=5) == c.step(count=5)
    assert a.step(count=5) != b.step(count=5)
    for bad in ({"fraction": 1.5}, {"count": 51}, {"indexes": [50]}):
        with pytest.raises(ValueError):
            a.step(**bad)
