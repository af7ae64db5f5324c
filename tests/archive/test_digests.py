"""Tasks and validation errors recognized by digest leave exactly the archive of reading them.

``tasks.state_sha256`` and ``jobs.val_errors_sha256`` (``archiver.archive.digests``) let a changed
payload's unchanged tasks and validation errors go untyped and uncompared. Why a test: a digest
that matched where reading would have found a change, a problem or a different edge would lose
history silently. So one sequence of payloads is archived twice on each database: once as the
archiver does, and once with every digest set to NULL after each step, so that everything is
read and compared field by field (what NULL means). Every history table must then hold the
same rows in the same order (ids aside), hash chains included, and the current tables the same
rows (their digests aside); ``archiver verify`` and ``archiver rebuild`` find nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import factories
import pytest
from conftest import BACKENDS, fresh_database
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from archiver import db
from archiver.archive import payload as reader
from archiver.archive.batches import Entry, archive_batch, archive_one
from archiver.archive.jsonload import canonical, canonical_parts
from archiver.audit.rebuild import rebuild
from archiver.audit.verify import verify
from archiver.models import JOBS, TASKS, Base
from archiver.sim import jobgen
from archiver.sim.payloads import job_payload
from archiver.statuses import StatusClassifier

T0 = datetime(2026, 10, 3, 9, 0, tzinfo=UTC)
# ordered by id: the order rows were written in is part of what must not change
HISTORY = ("job_snapshots", "job_versions", "task_versions", "job_changes", "ingest_problems")
# current state, by natural key (an upsert may use up an id on PostgreSQL and MariaDB)
CURRENT = {
    "jobs": ("workflow_id", "job_id"),
    "tasks": ("workflow_id", "job_id", "task_id"),
    "task_dependencies": ("workflow_id", "job_id", "task_id", "depends_on_task_id"),
    "val_errors": ("workflow_id", "job_id", "fingerprint"),
}
DIGESTS = frozenset({"state_sha256", "val_errors_sha256"})
CUSTOM = StatusClassifier.with_overrides({"running": "queued"})  # a reading that differs


def lifecycle() -> Iterator[dict[str, Any]]:
    """One job of factories through the cases a digest must not hide, in order."""
    job = factories.job("job-d", tasks=6, val_errors=2)
    job["tasks"][5]["progress"] = "abc"  # a problem every time it is read: never a digest
    job["tasks"][4]["depends_on"] = ["t03", "t99"]  # an edge to an unknown task: a problem
    yield job
    job = factories.evolve(job, cost=1300)  # the job alone changes; tasks and errors as they were
    yield job
    job = factories.evolve(job, cost=1301)
    job["tasks"][1]["status"] = "completed"  # one task changes
    job["tasks"][2] = dict(reversed(list(job["tasks"][2].items())))  # same data, other spelling
    yield job
    job = factories.evolve(job, cost=1302)
    job["tasks"][3]["progress"] = 50.0  # typed as before (50), from other text
    job["val_errors"] = job["val_errors"][:1]  # an error resolved
    yield job
    job = factories.evolve(job, cost=1303)
    gone = job["tasks"].pop(0)  # a task removed
    job["tasks"].append(copy.deepcopy(job["tasks"][0]))  # a task id twice
    yield job
    job = factories.evolve(job, cost=1304, val_errors=None)  # every error resolved
    job["tasks"].insert(0, gone)  # the removed task is back, as it was
    job["tasks"][2]["depends_on"] = ["t03", "t02"]  # a cycle: t02 <-> t03
    job["tasks"][3]["depends_on"] = ["t02"]
    yield job
    job = factories.evolve(job, cost=1305)
    del job["tasks"]  # tasks not reported: archived tasks kept
    del job["val_errors"]  # errors not reported
    yield job
    job = factories.evolve(job, cost=1306, tasks=None, val_errors="oops")
    yield job
    job = factories.evolve(job, cost=1307, val_errors=factories.job(val_errors=3)["val_errors"])
    job["tasks"] = factories.job("job-d", tasks=6)["tasks"]
    yield job
    yield factories.evolve(job, cost=1308)


Batch = list[tuple[str, datetime, StatusClassifier | None]]  # (body, fetched at, classifier)


def steps() -> list[Batch]:
    """The factories job's lifecycle beside simulated jobs polled through theirs (and some polls
    of unchanged or merely re-spelled bodies)."""
    plans = jobgen.population(11, 4, tasks=(4, 9))
    shares = (0.1, 0.3, 0.3, 0.5, 0.8, 1.0, 1.0, 1.2)
    at = [T0 + timedelta(minutes=7 * n) for n in range(10)]
    out = []
    for n, job in enumerate(lifecycle()):
        batch: list[tuple[str, datetime, StatusClassifier | None]] = []
        batch.append((json.dumps(job), at[n], None))
        if n < len(shares):
            for p in plans:
                body = job_payload(p, p.end * shares[n])
                text = json.dumps(body, indent=1 if n == 2 else None)
                batch.append((text, at[n], None))
        out.append(batch)
    return out


def archive_steps(url: str, batches: list[Batch], *, forget: bool) -> int:
    """Archive ``batches`` into ``url``; with ``forget``, NULL every digest after each one.
    Returns how many tasks were typed."""
    db.upgrade(url)
    engine = db.make_engine(url)
    typed = 0
    real = reader._read_state

    def counting(plan: Any, data: Any, out: Any, classifier: Any, task_id: str | None) -> Any:
        nonlocal typed
        typed += task_id is not None
        return real(plan, data, out, classifier, task_id)

    try:
        sessions = db.session_factory(engine)
        reader._read_state = counting  # type: ignore[assignment]
        for batch in batches:
            for classifier in (None, CUSTOM):
                entries = [Entry(body, at) for body, at, c in batch if c is classifier]
                kw = {"classifier": classifier} if classifier else {}
                results = archive_batch(sessions, entries, **kw) if entries else []
                assert not [r for r in results if isinstance(r, Exception)], results
            if forget:
                with sessions.begin() as session:
                    session.execute(update(TASKS).values(state_sha256=None))
                    session.execute(update(JOBS).values(val_errors_sha256=None))
    finally:
        reader._read_state = real  # type: ignore[assignment]
        engine.dispose()
    return typed


def rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every archive table as the driver returns it, ids (and the digests) left out."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as connection:
        for name in (*HISTORY, *CURRENT):
            table = Base.metadata.tables[name]
            names = [c.name for c in table.columns if c.name != "id" and c.name not in DIGESTS]
            order = ("id",) if name in HISTORY else CURRENT[name]
            sql = f"SELECT {', '.join(names)} FROM {name} ORDER BY {', '.join(order)}"
            out[name] = [tuple(row) for row in connection.exec_driver_sql(sql)]
    return out


def assert_same_rows(fast: Engine, slow: Engine) -> dict[str, list[tuple[Any, ...]]]:
    left, right = rows(fast), rows(slow)
    for name in (*HISTORY, *CURRENT):
        assert len(left[name]) == len(right[name]), name
        for n, (a, b) in enumerate(zip(left[name], right[name], strict=True)):
            assert a == b, f"{name} row {n}: with digests {a}, reading all {b}"
    return left


@pytest.mark.parametrize("backend", BACKENDS)
def test_digests_leave_the_archive_of_reading_everything(backend: str, tmp_path: Path) -> None:
    for name in ("fast", "slow", "again"):
        (tmp_path / name).mkdir()
    with (
        fresh_database(backend, tmp_path / "fast") as fast_url,
        fresh_database(backend, tmp_path / "slow") as slow_url,
        fresh_database(backend, tmp_path / "again") as rebuilt_url,
    ):
        typed_fast = archive_steps(fast_url, steps(), forget=False)
        typed_slow = archive_steps(slow_url, steps(), forget=True)
        # the digests were used: fewer tasks typed (and the sequence is not trivial)
        assert typed_slow > 100 and typed_fast < typed_slow * 0.7, (typed_fast, typed_slow)
        fast_engine, slow_engine = db.make_engine(fast_url), db.make_engine(slow_url)
        try:
            fast = assert_same_rows(fast_engine, slow_engine)
            assert all(fast[name] for name in (*HISTORY, *CURRENT)), "a table without rows"
            assert len(fast["ingest_problems"]) > len(steps())  # problems recorded every time
            with fast_engine.connect() as connection:
                stored = connection.exec_driver_sql(
                    "SELECT COUNT(*) FROM tasks WHERE state_sha256 IS NOT NULL"
                ).scalar_one()
            assert stored > 0
            sessions = db.session_factory(fast_engine)
            with sessions() as session:
                report = verify(session)
            assert report.ok, report.breaks[:3]
            assert rebuild(sessions, rebuilt_url).identical
        finally:
            fast_engine.dispose()
            slow_engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_digest_read_with_another_classifier_is_not_used(backend: str, tmp_path: Path) -> None:
    """Tasks whose text did not change, read with a classifier that classes them otherwise."""
    job = factories.job("job-c", tasks=4, val_errors=1)
    batches: list[Batch] = []
    for n, classifier in enumerate((None, CUSTOM, CUSTOM, None, None)):
        job = factories.evolve(job, cost=100 + n)
        batches.append([(json.dumps(job), T0 + timedelta(minutes=n), classifier)])
    for name in ("fast", "slow"):
        (tmp_path / name).mkdir()
    with (
        fresh_database(backend, tmp_path / "fast") as fast_url,
        fresh_database(backend, tmp_path / "slow") as slow_url,
    ):
        typed_fast = archive_steps(fast_url, batches, forget=False)
        typed_slow = archive_steps(slow_url, batches, forget=True)
        assert (typed_fast, typed_slow) == (12, 20)  # read when first seen by each classifier
        fast_engine, slow_engine = db.make_engine(fast_url), db.make_engine(slow_url)
        try:
            fast = assert_same_rows(fast_engine, slow_engine)
            # (workflow_id, job_id, task_id, entity, entity_key, field, …)
            classes = [r for r in fast["job_changes"] if r[3:6:2] == ("task", "status_class")]
            assert len(classes) == 8  # each of the 4 tasks: running -> queued -> running
        finally:
            fast_engine.dispose()
            slow_engine.dispose()


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(
    st.dictionaries(st.text(max_size=8), json_values, max_size=6),
    st.one_of(st.none(), st.lists(json_values, max_size=4), json_values),
    st.one_of(st.none(), json_values),
)
def test_canonical_parts_are_the_canonical_text(
    value: dict[str, Any], tasks: Any, val_errors: Any
) -> None:
    if tasks is not None:
        value["tasks"] = tasks
    if val_errors is not None:
        value["val_errors"] = val_errors
    parts = canonical_parts(value, "tasks", ("val_errors",))
    assert parts.text == canonical(value)
    if isinstance(value.get("tasks"), list):
        assert parts.elements == [canonical(t) for t in value["tasks"]]
    if "val_errors" in value:
        assert parts.members["val_errors"] == canonical(value["val_errors"])
    assert parts.nesting >= depth(value)


def depth(value: Any) -> int:
    """How many containers deep ``value`` nests (a scalar: 0)."""
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        return 0
    return 1 + max(map(depth, value), default=0)


def test_a_task_read_with_a_problem_keeps_no_digest() -> None:
    body = factories.job(tasks=2, val_errors=1)
    body["tasks"][1]["progress"] = "abc"
    parsed = reader.parse_payload(json.dumps(body))
    assert parsed.tasks is not None
    assert [t.digest is None for t in parsed.tasks] == [False, True]
    assert parsed.val_errors_sha256 is not None
    body["val_errors"][0]["surprise"] = 1  # an unknown key: a problem
    assert reader.parse_payload(json.dumps(body)).val_errors_sha256 is None


def test_the_digest_depends_on_the_classifier() -> None:
    body = json.dumps(factories.job(tasks=1))
    default = reader.identify(body).task_digests
    custom = reader.identify(body, classifier=CUSTOM).task_digests
    assert default and custom and default[0] and custom[0] and default != custom


def test_an_archive_from_before_the_digests_is_read_and_fills_them(db_url: str) -> None:
    """Migration 0010 leaves existing rows NULL: read the slow way, then remembered."""
    engine = db.make_engine(db_url)
    try:
        sessions = db.session_factory(engine)
        job = factories.job("job-m", tasks=4, val_errors=1)
        archive_one(sessions, json.dumps(job), T0)
        db.downgrade(db_url, "0009")
        db.upgrade(db_url)
        with sessions() as session:
            assert verify(session).ok
            digests = session.execute(select(TASKS.c.state_sha256)).scalars().all()
            assert digests == [None] * 4
        job = factories.evolve(job, cost=5)
        job["tasks"][0]["status"] = "failed"
        result = archive_one(sessions, json.dumps(job), T0 + timedelta(minutes=1))
        assert result.changes == 4  # cost; the task's status, status_class, is_terminal: no more
        with sessions() as session:
            assert verify(session).ok
            digests = session.execute(select(TASKS.c.state_sha256)).scalars().all()
            assert len(digests) == 4 and None not in digests
            assert session.execute(select(JOBS.c.val_errors_sha256)).scalar_one() is not None
    finally:
        engine.dispose()
