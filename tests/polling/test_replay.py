"""Replay (issue 7): syncing an unchanged API again writes no history, and syncing after k jobs
changed writes the history of exactly those k, on every database.

Why: the archive's value is that a history row means something changed. A sync that re-wrote
versions, changes or snapshots for unchanged jobs (a timestamp that drifts, a JSON column whose
key order or number spelling changes on its way through a database, a float that does not
round-trip) would bury the real changes and grow without bound. The comparison is per job and
per history table, so an extra row anywhere names its job.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import factories
import pytest
from archive_dump import HISTORY_TABLES
from figures import record_figures
from http_helpers import Recorded, Reply, ScriptedServer
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.api.client import ApiClient
from archiver.config import Settings
from archiver.models import IngestProblem, JobChange, JobSnapshot, JobVersion, TaskVersion
from archiver.polling import tracking
from archiver.polling.sync import SyncPass, SyncSummary
from archiver.sim.simulator import Simulator

T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
HISTORY = {
    "job_versions": JobVersion,
    "task_versions": TaskVersion,
    "job_changes": JobChange,
    "job_snapshots": JobSnapshot,
    "ingest_problems": IngestProblem,
}
assert set(HISTORY_TABLES) <= set(HISTORY)

History = dict[str, Counter[tuple[str, str]]]


def history(sessions: sessionmaker[Session]) -> History:
    """Rows per (workflow_id, job_id) in every history table."""
    out: History = {}
    with sessions() as session:
        for name, model in HISTORY.items():
            rows = session.execute(
                select(model.workflow_id, model.job_id, func.count()).group_by(
                    model.workflow_id, model.job_id
                )
            )
            out[name] = Counter({(w, j): n for w, j, n in rows})
    return out


def grown(before: History, after: History) -> dict[str, set[tuple[str, str]]]:
    """The jobs that got new rows, per history table (tables without any are left out)."""
    out = {}
    for name in HISTORY:
        jobs = {key for key, n in after[name].items() if n != before[name].get(key, 0)}
        if jobs:
            out[name] = jobs
    return out


def sync_pass(
    sessions: sessionmaker[Session], api_url: str, now: datetime, key: str = "replay-key-0123"
) -> SyncSummary:
    settings = Settings(
        api_key=key,
        api_url=api_url,
        max_retries=0,
        rate_limit=0.0,
        poll_interval=60.0,
        poll_jitter=0.0,
    )
    with ApiClient(settings) as client:
        return SyncPass.from_settings(settings, sessions, client, now=lambda: now).run(
            everything=True
        )


class FrozenClock:
    """The simulator's clock, stopped: every request sees the same instant."""

    def __call__(self) -> float:
        return 1800.0  # half an hour in: jobs queued, running and finished, with costs


@pytest.fixture
def frozen_simulator() -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(seed=11, jobs=12, tasks=(3, 8), clock=FrozenClock(), time_scale=60.0)
    with sim.serve() as server:
        yield sim, server.url


def test_a_second_sync_of_an_unchanged_api_writes_no_history(
    sessions: sessionmaker[Session], frozen_simulator: tuple[Simulator, str]
) -> None:
    sim, url = frozen_simulator
    with sessions.begin() as session:
        tracking.track(session, sim.job_ids(), T0)
    first = sync_pass(sessions, url, T0, sim.api_key)
    assert (first.counts["new"], first.failed) == (12, 0)
    after_first = history(sessions)
    assert sum(after_first["task_versions"].values()) >= 12 * 3  # the archive is not trivial

    second = sync_pass(sessions, url, T0 + HOUR, sim.api_key)
    assert (second.counts["unchanged"], second.changes, second.failed) == (12, 0, 0)
    assert grown(after_first, history(sessions)) == {}
    record_figures("replay", passes=2, inputs=24)


def payloads(count: int) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (f"wf-{i % 3}", f"job-{i:02d}"): factories.job(f"job-{i:02d}", f"wf-{i % 3}", tasks=4)
        for i in range(count)
    }


def mutate(docs: dict[tuple[str, str], dict[str, Any]], keys: list[tuple[str, str]]) -> None:
    """A different kind of change for each job: cost, a task's status, a validation error."""
    kinds = ("cost", "task", "val_error")
    for n, key in enumerate(keys):
        doc = docs[key]
        doc["updated_at"] = "2026-10-01T13:00:00Z"
        kind = kinds[n % len(kinds)]
        if kind == "cost":
            doc["cost"] += 100
        elif kind == "task":
            doc["tasks"][2].update(status="failed", err_msg="tile 3 is corrupt")
        else:
            doc["val_errors"] = doc["val_errors"][1:]


def reformat(doc: dict[str, Any]) -> str:
    """The same JSON value written differently: keys in reverse order, indented, escaped.

    (A number spelled apart, 1.2e3 for 1200, is another JSON value, a float: that is a distinct
    payload and gets its snapshot, though no field changes.)"""
    return json.dumps(dict(reversed(list(doc.items()))), indent=2, ensure_ascii=False)


@pytest.mark.parametrize("k", [1, 3])
def test_after_k_jobs_change_exactly_their_history_is_written(
    sessions: sessionmaker[Session], k: int
) -> None:
    docs = payloads(15)
    spelled_apart: set[tuple[str, str]] = set()

    def answer(request: Recorded) -> Reply:
        key = (request.segments()[3], request.segments()[5])
        if key in spelled_apart:
            return Reply(200, reformat(docs[key]), headers={"Content-Type": "application/json"})
        return Reply(200, docs[key])

    with ScriptedServer() as server:
        server.always(answer)
        with sessions.begin() as session:
            tracking.track(session, list(docs), T0)
        assert sync_pass(sessions, server.url, T0).counts["new"] == 15
        before = history(sessions)

        changed = sorted(docs)[1 : 1 + k]
        unchanged_spelling = sorted(docs)[-1]  # same value, different text: not a change
        original = copy.deepcopy(docs)
        mutate(docs, changed)
        spelled_apart.add(unchanged_spelling)
        summary = sync_pass(sessions, server.url, T0 + HOUR)
        after = history(sessions)

        assert (summary.counts["changed"], summary.counts["unchanged"]) == (k, 15 - k)
        moved = grown(before, after)
        assert moved.pop("task_versions", set()) <= set(changed)  # only task changes add these
        assert moved == {
            name: set(changed) for name in ("job_versions", "job_changes", "job_snapshots")
        }
        for key in changed:  # one version and one snapshot each, whatever the change
            assert after["job_versions"][key] == before["job_versions"][key] + 1
            assert after["job_snapshots"][key] == before["job_snapshots"][key] + 1

        again = sync_pass(sessions, server.url, T0 + 2 * HOUR)
        assert (again.counts["unchanged"], again.changes) == (15, 0)
        assert grown(after, history(sessions)) == {}
        assert docs != original
    record_figures("replay", passes=3, inputs=45, changed=k)
