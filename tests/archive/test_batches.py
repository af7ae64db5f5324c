"""Archiving in batches (issue 6): many jobs share one transaction and one statement per table.

Why these tests: the batch path is the archive's fast path (ingest, sync and the benchmarks all
take it) and it must be invisible. A random sequence of payloads for a few jobs (changes, repeated
bytes, the same data spelled differently, older payloads arriving late, refused payloads, one job
several times in one batch) archived in batches of random sizes must leave exactly, byte for byte,
the archive that one transaction per payload leaves; and a job the database refuses, or one that
fails just before commit, must cost the other jobs of its batch nothing but time.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import factories
import pytest
from archive_dump import ARCHIVE_TABLES, dump, first_difference
from conftest import BACKENDS, fresh_database
from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from archiver import db
from archiver.archive.batches import Entry, archive_batch, archive_one, database_gone
from archiver.archive.results import ArchiveResult
from archiver.audit.verify import verify
from archiver.errors import PayloadError
from archiver.models import JOBS, SNAPSHOTS, Job, JobSnapshot, Task
from archiver.sim import jobgen, mutate, payloads

T0 = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


def sequence(seed: int, steps: int = 90) -> list[tuple[str, datetime]]:
    """Bodies with their fetch times: every way a poll or a file can repeat, reorder or refuse."""
    rng = random.Random(seed)
    docs = {
        i: payloads.job_payload(jobgen.plan_job(seed, i, tasks=(2, 6)), 20.0, time_scale=60.0)
        for i in range(5)
    }
    sent: dict[int, list[str]] = {i: [] for i in docs}
    out: list[tuple[str, datetime]] = []
    at = T0
    for _ in range(steps):
        i = rng.randrange(len(docs))
        roll = rng.random()
        if roll < 0.45 or not sent[i]:
            docs[i] = mutate.mutate(docs[i], rng)
            body = json.dumps(docs[i])
        elif roll < 0.65:
            body = sent[i][-1]  # the same bytes again
        elif roll < 0.75:
            body = json.dumps(docs[i], sort_keys=True, indent=1)  # the same data, other bytes
        elif roll < 0.85:
            body = rng.choice(sent[i])  # an older payload, late
        elif roll < 0.92:
            body = json.dumps({**docs[i], "cost": 2**64})  # refused: beyond 64 bits
        else:
            body = '{"id": "broken", '  # refused: not JSON
        sent[i].append(body)
        # mostly forwards; now and then a fetch time before the last one (files without times)
        at += timedelta(seconds=rng.choice([-30, 20, 60, 60, 120]))
        out.append((body, at))
    return out


def outcome(result: ArchiveResult | Exception) -> str:
    if isinstance(result, ArchiveResult):
        return f"{result.workflow_id}/{result.job_id}:{result.outcome}:{result.changes}"
    return type(result).__name__


@pytest.fixture(params=BACKENDS)
def two_archives(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[sessionmaker[Session], sessionmaker[Session], Any, Any]]:
    """Two empty migrated archives on the same database system."""
    with ExitStack() as stack:
        engines = []
        for name in ("one", "batched"):
            (tmp_path / name).mkdir()
            url = stack.enter_context(fresh_database(request.param, tmp_path / name))
            db.upgrade(url)
            engine = db.make_engine(url)
            stack.callback(engine.dispose)
            engines.append(engine)
        yield (
            db.session_factory(engines[0]),
            db.session_factory(engines[1]),
            engines[0],
            engines[1],
        )


@pytest.mark.parametrize("seed", [1, 2])
def test_batches_leave_the_archive_one_job_at_a_time_leaves(two_archives: Any, seed: int) -> None:
    one, batched, one_engine, batched_engine = two_archives
    steps = sequence(seed)

    singly: list[str] = []
    for body, at in steps:
        try:
            singly.append(outcome(archive_one(one, body, at)))
        except PayloadError as exc:
            singly.append(outcome(exc))

    rng = random.Random(seed)
    together: list[str] = []
    start = 0
    while start < len(steps):
        size = rng.choice([1, 3, 7, 20, 40])
        chunk = [Entry(body, at) for body, at in steps[start : start + size]]
        together.extend(outcome(r) for r in archive_batch(batched, chunk))
        start += size

    assert together == singly
    assert {"new", "changed", "unchanged", "stale"} <= {o.split(":")[1] for o in singly if ":" in o}
    assert {"PayloadError"} <= set(singly)
    left, right = (
        dump(one_engine, tables=ARCHIVE_TABLES),
        dump(batched_engine, tables=ARCHIVE_TABLES),
    )
    assert left == right, first_difference(left, right, ("one by one", "batched"))
    with batched() as session:
        assert verify(session).ok


def forge_first_chain_row(sessions: sessionmaker, job_id: str) -> None:
    """A snapshot at chain position 1 for a job never archived: the database then refuses the
    job's own first snapshot (the position is unique), whatever the database."""
    with sessions.begin() as session:
        session.execute(
            insert(SNAPSHOTS).values(
                workflow_id="wf-1",
                job_id=job_id,
                sha256="0" * 64,
                fetched_at=T0,
                applied=True,
                body="{}",
                chain_version=1,
                chain_seq=1,
                prev_sha256="0" * 64,
                row_sha256="0" * 64,
            )
        )


def test_a_job_the_database_refuses_costs_its_batch_only_time(sessions: sessionmaker) -> None:
    forge_first_chain_row(sessions, "x")
    bodies = [json.dumps(factories.job(name, tasks=3)) for name in ("a", "x", "b")]
    results = archive_batch(sessions, [Entry(body, T0) for body in bodies])

    assert [type(r).__name__ for r in results] == [
        "ArchiveResult",
        "IntegrityError",
        "ArchiveResult",
    ]
    with sessions() as session:
        jobs = session.scalars(select(Job.job_id).order_by(Job.job_id)).all()
        tasks = session.execute(
            select(Task.job_id, func.count()).group_by(Task.job_id).order_by(Task.job_id)
        ).all()
        snapshots = session.scalar(
            select(func.count()).select_from(JobSnapshot).where(JobSnapshot.job_id == "x")
        )
    assert jobs == ["a", "b"]
    assert [tuple(r) for r in tasks] == [("a", 3), ("b", 3)]
    assert snapshots == 1  # only the forged row: nothing of x was written


def test_a_failure_before_commit_is_retried_job_by_job(sessions: sessionmaker) -> None:
    calls: list[list[str]] = []

    def refuse_x(_session: Session, done: Any) -> None:
        names = [result.job_id for _, result in done]
        calls.append(names)
        if "x" in names:
            raise RuntimeError("x cannot be tracked")

    bodies = [json.dumps(factories.job(name, tasks=2)) for name in ("a", "x", "b")]
    results = archive_batch(sessions, [Entry(body, T0) for body in bodies], before_commit=refuse_x)

    assert isinstance(results[1], RuntimeError) and str(results[1]) == "x cannot be tracked"
    assert [r.outcome for r in (results[0], results[2])] == ["new", "new"]  # type: ignore[union-attr]
    assert calls == [["a", "x", "b"], ["a"], ["x"], ["b"]]  # the batch, then one by one
    with sessions() as session:
        assert session.scalars(select(JOBS.c.job_id).order_by(JOBS.c.job_id)).all() == ["a", "b"]


def test_the_same_job_twice_in_a_batch_applies_in_order(sessions: sessionmaker) -> None:
    first = factories.job("a", tasks=2, cost=1)
    second = factories.evolve(first, cost=2, updated_at="2026-10-01T10:06:00Z")
    entries = [
        Entry(json.dumps(first), T0),
        Entry(json.dumps(second), T0 + timedelta(minutes=1)),
        Entry(json.dumps(first), T0 + timedelta(minutes=2)),  # late, older: stale
    ]
    results = archive_batch(sessions, entries)
    assert [r.outcome for r in results] == ["new", "changed", "stale"]  # type: ignore[union-attr]
    with sessions() as session:
        assert session.scalar(select(Job.cost)) == 2
        # the late payload is the first one again: its snapshot is already kept
        assert session.scalar(select(func.count()).select_from(JobSnapshot)) == 2
    with sessions() as session:
        assert verify(session).ok


def test_an_outage_while_going_job_by_job_keeps_what_was_committed(
    sessions: sessionmaker,
) -> None:
    """The batch fails (job x's row is refused), so its jobs go one by one; the database then
    goes away at job b: a keeps its result (it is committed), b and c get the outage, and a
    caller can report a before it stops."""
    forge_first_chain_row(sessions, "x")
    gone = OperationalError("COMMIT", {}, ConnectionError("server closed the connection"))

    def lose_the_database_at_b(_session: Session, done: Any) -> None:
        if [result.job_id for _, result in done] == ["b"]:
            raise gone

    bodies = [json.dumps(factories.job(name, tasks=1)) for name in ("a", "x", "b", "c")]
    results = archive_batch(
        sessions, [Entry(body, T0) for body in bodies], before_commit=lose_the_database_at_b
    )

    assert [type(r).__name__ for r in results] == [
        "ArchiveResult",
        "IntegrityError",
        "OperationalError",
        "OperationalError",
    ]
    assert [database_gone(r) for r in results] == [False, False, True, True]
    with sessions() as session:
        assert session.scalars(select(Job.job_id)).all() == ["a"]


def test_a_repeated_body_given_another_workflow_is_refused(sessions: sessionmaker) -> None:
    body = json.dumps(factories.job("j1", "wf-a", tasks=1))
    archive_one(sessions, body, T0)
    with pytest.raises(PayloadError, match="belongs to workflow 'wf-a', expected 'wf-b'"):
        archive_one(sessions, body, T0 + timedelta(minutes=1), workflow_id="wf-b")
    same = archive_one(sessions, body, T0 + timedelta(minutes=2), workflow_id="wf-a")
    assert (same.workflow_id, same.outcome) == ("wf-a", "unchanged")
