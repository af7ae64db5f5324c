"""Property: any sequence of payload mutations leaves a history that replays to what was seen.

For a random sequence of payloads of one job (fetched in order): the current tables equal the
last payload; ``job_versions`` in version order are exactly the distinct consecutive job states;
``task_versions`` likewise per task; and re-ingesting any prefix of the sequence writes nothing.
Each example uses its own job id, so examples share the test's database without sharing data.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import factories
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive.batches import archive_one
from archiver.archive.changelog import same
from archiver.archive.payload import JOB_FIELDS, TASK_FIELDS, parse_payload
from archiver.models import Job, JobChange, JobSnapshot, JobVersion, Task, TaskVersion, ValError

T0 = datetime(2026, 10, 1, tzinfo=UTC)

mutation = st.one_of(
    st.tuples(st.just("status"), st.sampled_from(["queued", "running", "completed", "failed"])),
    st.tuples(st.just("cost"), st.integers(0, 10**12)),
    st.tuples(st.just("progress"), st.sampled_from(["0%", "12.5%", "50%", "3/4", "100%", "bad"])),
    st.tuples(st.just("task_status"), st.integers(0, 5), st.sampled_from(["running", "failed"])),
    st.tuples(st.just("task_progress"), st.integers(0, 5), st.integers(0, 100)),
    st.tuples(st.just("drop_task"), st.integers(0, 5)),
    st.tuples(st.just("add_task"), st.integers(0, 99)),
    st.tuples(st.just("val_errors"), st.integers(0, 3)),
    st.tuples(st.just("spec"), st.lists(st.integers(0, 255), max_size=4)),
    st.tuples(st.just("noop")),
)


def apply(payload: dict[str, Any], op: tuple) -> dict[str, Any]:
    new = factories.evolve(payload)
    kind = op[0]
    if kind in ("status", "cost", "progress", "spec"):
        new[kind] = op[1]
    elif kind in ("task_status", "task_progress") and new["tasks"]:
        task = new["tasks"][op[1] % len(new["tasks"])]
        task["status" if kind == "task_status" else "progress"] = op[2]
    elif kind == "drop_task" and new["tasks"]:
        del new["tasks"][op[1] % len(new["tasks"])]
    elif kind == "add_task":
        if all(t["id"] != f"x{op[1]}" for t in new["tasks"]):
            new["tasks"].append(factories.task(f"x{op[1]}"))
    elif kind == "val_errors":
        new["val_errors"] = factories.job(val_errors=op[1])["val_errors"]
    return new


def snapshot_of_history(sessions: sessionmaker[Session], job_id: str) -> tuple[int, ...]:
    with sessions() as session:
        return tuple(
            int(session.scalar(select(func.count()).select_from(m).where(m.job_id == job_id)) or 0)
            for m in (JobVersion, TaskVersion, JobChange, JobSnapshot)
        )


def states_equal(row: Any, state: dict[str, Any], fields: tuple[str, ...]) -> bool:
    return all(same(getattr(row, f), state[f]) for f in fields)


def dedupe_consecutive(states: list[dict[str, Any]], fields: tuple[str, ...]) -> list[dict]:
    out: list[dict[str, Any]] = []
    for state in states:
        if not out or not all(same(out[-1][f], state[f]) for f in fields):
            out.append(state)
    return out


def check_sequence(sessions: sessionmaker[Session], ops: list[tuple]) -> None:
    job_id = f"prop-{uuid.uuid4().hex}"
    payload = factories.job(job_id, tasks=4, val_errors=1)
    payloads = [payload]
    for op in ops:
        payload = apply(payload, op)
        payloads.append(payload)
    times = [T0 + timedelta(seconds=10 * i) for i in range(len(payloads))]
    for body, when in zip(payloads, times, strict=True):
        archive_one(sessions, body, when)

    parsed = [parse_payload(p) for p in payloads]
    last = parsed[-1]
    with sessions() as session:
        job = session.scalars(select(Job).where(Job.job_id == job_id)).one()
        assert states_equal(job, last.job, JOB_FIELDS)
        live = {
            t.task_id: t
            for t in session.scalars(
                select(Task).where(Task.job_id == job_id, Task.removed_at.is_(None))
            )
        }
        assert set(live) == {t.task_id for t in last.tasks or ()}
        for task in last.tasks or ():
            assert states_equal(live[task.task_id], task.state, TASK_FIELDS)
        open_errors = set(
            session.scalars(
                select(ValError.fingerprint).where(
                    ValError.job_id == job_id, ValError.resolved_at.is_(None)
                )
            )
        )
        assert open_errors == {e.fingerprint for e in last.val_errors or ()}

        versions = session.scalars(
            select(JobVersion).where(JobVersion.job_id == job_id).order_by(JobVersion.version)
        ).all()
        expected = dedupe_consecutive([p.job for p in parsed], JOB_FIELDS)
        assert len(versions) == len(expected)
        for version, state in zip(versions, expected, strict=True):
            assert states_equal(version, state, JOB_FIELDS)
        assert [v.valid_to for v in versions[:-1]] == [v.valid_from for v in versions[1:]]
        assert versions[-1].valid_to is None

        task_ids = {t.task_id for p in parsed for t in p.tasks or ()}
        for task_id in task_ids:
            rows = session.scalars(
                select(TaskVersion)
                .where(TaskVersion.job_id == job_id, TaskVersion.task_id == task_id)
                .order_by(TaskVersion.version)
            ).all()
            # expected: the task's states while present; an absence breaks the run of states
            runs: list[dict[str, Any]] = []
            previous_present = False
            for p in parsed:
                state = next((t.state for t in p.tasks or () if t.task_id == task_id), None)
                if state is None:
                    previous_present = False
                    continue
                if not previous_present or not all(
                    same(runs[-1][f], state[f]) for f in TASK_FIELDS
                ):
                    runs.append(state)
                previous_present = True
            assert len(rows) == len(runs)
            for row, state in zip(rows, runs, strict=True):
                assert states_equal(row, state, TASK_FIELDS)

    counts = snapshot_of_history(sessions, job_id)
    for end in range(1, len(payloads) + 1):
        for body, when in zip(payloads[:end], times[:end], strict=True):
            archive_one(sessions, body, when)
        assert snapshot_of_history(sessions, job_id) == counts


def test_history_replays_every_state(sessions: sessionmaker[Session]) -> None:
    backend = sessions.kw["bind"].dialect.name

    @settings(
        max_examples=40 if backend == "sqlite" else 12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=True,
    )
    @given(st.lists(mutation, min_size=1, max_size=8))
    def run(ops: list[tuple]) -> None:
        check_sequence(sessions, ops)

    run()
