"""History semantics on every database: versions, changes, snapshots, staleness, atomicity."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import factories
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive.batches import archive_one
from archiver.errors import PayloadError
from archiver.models import (
    IngestProblem,
    Job,
    JobChange,
    JobSnapshot,
    JobVersion,
    Task,
    TaskDependency,
    TaskVersion,
    ValError,
)

T0 = datetime(2026, 10, 1, 10, 6, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def count(sessions: sessionmaker[Session], model: Any, *where: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def history_counts(sessions: sessionmaker[Session]) -> tuple[int, ...]:
    return tuple(
        count(sessions, m) for m in (JobVersion, TaskVersion, JobChange, JobSnapshot, IngestProblem)
    )


def changes(sessions: sessionmaker[Session], entity: str | None = None) -> list[tuple]:
    with sessions() as session:
        query = select(
            JobChange.entity,
            JobChange.entity_key,
            JobChange.field,
            JobChange.old_value,
            JobChange.new_value,
        ).order_by(JobChange.id)
        if entity:
            query = query.where(JobChange.entity == entity)
        return [tuple(r) for r in session.execute(query)]


def job_row(sessions: sessionmaker[Session]) -> Job:
    with sessions() as session:
        return session.scalars(select(Job)).one()


def test_first_archive_writes_current_state_and_full_history(sessions: sessionmaker) -> None:
    result = archive_one(sessions, factories.job(), T0)
    assert (result.outcome, result.version, result.problems) == ("new", 1, 0)
    job = job_row(sessions)
    assert (job.status, job.status_class, job.is_terminal, job.cost) == (
        "running",
        "running",
        False,
        1200,
    )
    assert job.progress_pct == 42 and job.time_taken_s == 3723.5
    assert job.created_at == datetime(2026, 10, 1, 9, 59, tzinfo=UTC)
    assert job.first_seen_at == job.last_seen_at == job.last_changed_at == T0
    assert job.spec == [123, 34, 97, 34, 58, 49, 125]
    assert count(sessions, Task) == 20
    assert count(sessions, TaskDependency) == 37  # t01: 1 edge, every later task: 2
    assert count(sessions, ValError) == 3
    assert count(sessions, TaskVersion) == 20
    assert count(sessions, JobSnapshot) == 1
    with sessions() as session:
        task = session.scalars(select(Task).where(Task.task_id == "t05")).one()
        assert (task.block_id, task.block_name, task.block_version) == (
            "blk-t05",
            "ortho-rectify",
            "1.4.2",
        )
        assert task.depends_on == ["t03", "t04"] and task.progress == 50
        assert task.finished_at is None and task.time_taken_s == 300
        version = session.scalars(select(JobVersion)).one()
        assert (version.version, version.valid_from, version.valid_to) == (1, T0, None)
    task_changes = changes(sessions, "task")
    assert {(c[2], c[3], c[4]) for c in task_changes} == {("presence", None, "present")}
    assert len(task_changes) == 20  # a new task's first state is its task_versions row 1
    first = changes(sessions, "job")
    assert ("job", None, "cost", None, "1200") in first
    assert ("job", None, "finished_at", None, None) not in first  # unset fields are not changes


def test_same_payload_twice_moves_only_last_seen(sessions: sessionmaker) -> None:
    archive_one(sessions, factories.job(), T0)
    before = history_counts(sessions)
    result = archive_one(sessions, factories.job(), T0 + MINUTE)
    assert result.outcome == "unchanged" and result.changes == 0
    assert history_counts(sessions) == before
    job = job_row(sessions)
    assert job.last_seen_at == T0 + MINUTE and job.last_changed_at == T0
    with sessions() as session:
        assert set(session.scalars(select(Task.last_seen_at))) == {T0 + MINUTE}
        assert set(session.scalars(select(ValError.last_seen_at))) == {T0 + MINUTE}


def test_change_writes_version_and_field_changes(sessions: sessionmaker) -> None:
    first = factories.job()
    archive_one(sessions, first, T0)
    second = factories.evolve(
        first, status="completed", cost=1500, progress="100%", updated_at="2026-10-01T10:09:00Z"
    )
    second["tasks"][3]["status"] = "failed"
    second["tasks"][3]["err_msg"] = "out of memory"
    result = archive_one(sessions, second, T0 + MINUTE)
    assert (result.outcome, result.version) == ("changed", 2)
    assert result.changes == 11
    job_changes = [c for c in changes(sessions, "job") if c[3] is not None]
    assert [c[2] for c in job_changes] == [
        "status",
        "status_class",
        "is_terminal",
        "progress",
        "progress_pct",
        "cost",
        "updated_at",
    ]
    task_changes = changes(sessions, "task")[-4:]
    assert task_changes == [
        ("task", "t03", "status", "running", "failed"),
        ("task", "t03", "status_class", "running", "failed"),
        ("task", "t03", "is_terminal", "false", "true"),
        ("task", "t03", "err_msg", "", "out of memory"),
    ]
    with sessions() as session:
        versions = session.execute(
            select(
                JobVersion.version, JobVersion.valid_from, JobVersion.valid_to, JobVersion.cost
            ).order_by(JobVersion.version)
        ).all()
        assert [tuple(v) for v in versions] == [
            (1, T0, T0 + MINUTE, 1200),
            (2, T0 + MINUTE, None, 1500),
        ]
        t03 = session.execute(
            select(TaskVersion.version, TaskVersion.status, TaskVersion.valid_to)
            .where(TaskVersion.task_id == "t03")
            .order_by(TaskVersion.version)
        ).all()
        assert [tuple(v) for v in t03] == [(1, "running", T0 + MINUTE), (2, "failed", None)]
    assert count(sessions, TaskVersion) == 21
    assert job_row(sessions).last_changed_at == T0 + MINUTE


def test_removed_task_and_reappearing_task(sessions: sessionmaker) -> None:
    first = factories.job(tasks=3, val_errors=0)
    archive_one(sessions, first, T0)
    without = factories.evolve(first, updated_at="2026-10-01T10:06:00Z")
    without["tasks"] = [t for t in without["tasks"] if t["id"] != "t02"]
    archive_one(sessions, without, T0 + MINUTE)
    with sessions() as session:
        t02 = session.scalars(select(Task).where(Task.task_id == "t02")).one()
        assert t02.removed_at == T0 + MINUTE
        closed = session.scalars(select(TaskVersion.valid_to).where(TaskVersion.task_id == "t02"))
        assert list(closed) == [T0 + MINUTE]
    assert changes(sessions, "task")[-1] == ("task", "t02", "presence", "present", "removed")
    back = factories.evolve(first, updated_at="2026-10-01T10:07:00Z")
    archive_one(sessions, back, T0 + 2 * MINUTE)
    with sessions() as session:
        t02 = session.scalars(select(Task).where(Task.task_id == "t02")).one()
        assert (t02.removed_at, t02.version, t02.first_seen_at) == (None, 2, T0)
    assert changes(sessions, "task")[-1] == ("task", "t02", "presence", "removed", "present")
    assert count(sessions, TaskVersion, TaskVersion.task_id == "t02") == 2


def test_absent_tasks_keep_archived_tasks(sessions: sessionmaker) -> None:
    first = factories.job(tasks=4)
    archive_one(sessions, first, T0)
    no_tasks = factories.evolve(first, cost=2000, updated_at="2026-10-01T10:06:00Z")
    del no_tasks["tasks"]
    archive_one(sessions, no_tasks, T0 + MINUTE)
    null_tasks = factories.evolve(
        no_tasks, cost=2100, tasks=None, updated_at="2026-10-01T10:07:00Z"
    )
    archive_one(sessions, null_tasks, T0 + 2 * MINUTE)
    assert count(sessions, Task, Task.removed_at.is_(None)) == 4
    assert [c for c in changes(sessions, "task") if c[4] == "removed"] == []
    assert job_row(sessions).cost == 2100


def test_val_error_resolved_and_reopened(sessions: sessionmaker) -> None:
    first = factories.job(tasks=1, val_errors=2)
    archive_one(sessions, first, T0)
    fixed = factories.evolve(
        first, val_errors=first["val_errors"][:1], updated_at="2026-10-01T10:06:00Z"
    )
    archive_one(sessions, fixed, T0 + MINUTE)
    with sessions() as session:
        resolved = session.scalars(select(ValError).where(ValError.resolved_at.is_not(None))).one()
        assert (resolved.source_component, resolved.target_component) == ("comp-1", "comp-2")
        assert resolved.resolved_at == T0 + MINUTE
    assert changes(sessions, "val_error")[-1][2:] == ("state", "open", "resolved")
    none = factories.evolve(first, val_errors=None, updated_at="2026-10-01T10:07:00Z")
    archive_one(sessions, none, T0 + 2 * MINUTE)  # null: Go's empty slice, everything resolved
    assert count(sessions, ValError, ValError.resolved_at.is_(None)) == 0
    again = factories.evolve(first, updated_at="2026-10-01T10:08:00Z")
    archive_one(sessions, again, T0 + 3 * MINUTE)
    assert count(sessions, ValError, ValError.resolved_at.is_(None)) == 2
    assert [c[2:] for c in changes(sessions, "val_error")[-2:]] == [
        ("state", "resolved", "open")
    ] * 2
    assert count(sessions, ValError) == 2


def test_stale_payload_is_kept_but_never_applied(sessions: sessionmaker) -> None:
    old = factories.job()
    new = factories.evolve(old, status="completed", cost=1500, updated_at="2026-10-01T10:09:00Z")
    archive_one(sessions, new, T0 + MINUTE)
    before = history_counts(sessions)
    result = archive_one(sessions, old, T0 + 2 * MINUTE)  # fetched later, but older by updated_at
    assert result.outcome == "stale"
    job = job_row(sessions)
    assert (job.status, job.cost, job.version, job.last_seen_at) == (
        "completed",
        1500,
        1,
        T0 + MINUTE,
    )
    versions, task_versions, change_rows, snapshots, problems = history_counts(sessions)
    assert (versions, task_versions, change_rows, problems) == (
        before[0],
        before[1],
        before[2],
        before[4],
    )
    assert snapshots == before[3] + 1
    with sessions() as session:
        assert (
            session.scalar(select(JobSnapshot.applied).order_by(JobSnapshot.id.desc()).limit(1))
            is False
        )
    assert archive_one(sessions, old, T0 + 3 * MINUTE).outcome == "stale"
    assert count(sessions, JobSnapshot) == snapshots  # kept once


def test_stale_by_fetch_time_when_updated_at_is_equal(sessions: sessionmaker) -> None:
    a = factories.job()
    b = factories.evolve(a, cost=9999)
    archive_one(sessions, b, T0 + MINUTE)
    assert archive_one(sessions, a, T0).outcome == "stale"
    assert job_row(sessions).cost == 9999


def test_a_b_a_keeps_every_snapshot_in_order(sessions: sessionmaker) -> None:
    a = factories.job(tasks=2)
    b = factories.evolve(a, cost=5)
    archive_one(sessions, a, T0)
    archive_one(sessions, b, T0 + MINUTE)
    archive_one(sessions, a, T0 + 2 * MINUTE)
    with sessions() as session:
        costs = session.scalars(select(JobVersion.cost).order_by(JobVersion.version)).all()
        snaps = session.scalars(select(JobSnapshot.fetched_at).order_by(JobSnapshot.id)).all()
    assert costs == [1200, 5, 1200]
    assert snaps == [T0, T0 + MINUTE, T0 + 2 * MINUTE]


def test_unparsable_values_are_null_recorded_and_kept_in_snapshot(sessions: sessionmaker) -> None:
    bad = factories.job(tasks=2, progress="most of it", time_taken="ages", cost="12abc")
    bad["tasks"][0]["progress"] = "lots"
    result = archive_one(sessions, bad, T0)
    assert result.problems == 4
    job = job_row(sessions)
    assert (job.progress, job.progress_pct, job.time_taken_s, job.cost) == (
        "most of it",
        None,
        None,
        None,
    )
    with sessions() as session:
        rows = session.execute(
            select(IngestProblem.task_id, IngestProblem.field, IngestProblem.raw_value).order_by(
                IngestProblem.id
            )
        ).all()
        body = session.scalar(select(JobSnapshot.body))
    assert [tuple(r) for r in rows] == [
        (None, "progress", "most of it"),
        (None, "cost", "12abc"),
        (None, "time_taken", "ages"),
        ("t00", "progress", "lots"),
    ]
    assert '"12abc"' in body and '"ages"' in body


def test_cost_beyond_64_bits_is_rejected_and_nothing_written(sessions: sessionmaker) -> None:
    archive_one(sessions, factories.job(), T0)
    before = history_counts(sessions)
    with pytest.raises(PayloadError, match="beyond the 64-bit range"):
        archive_one(
            sessions, factories.job(cost=2**64, updated_at="2026-10-02T00:00:00Z"), T0 + MINUTE
        )
    assert history_counts(sessions) == before
    assert job_row(sessions).cost == 1200


def test_failure_mid_archive_leaves_no_partial_job(sessions: sessionmaker) -> None:
    archive_one(sessions, factories.job("keep"), T0)
    before = history_counts(sessions)

    def explode(session: Session, _result: Any) -> None:
        raise RuntimeError("crash after all rows were written, before commit")

    with pytest.raises(RuntimeError):
        archive_one(sessions, factories.job("lost"), T0, before_commit=explode)
    with pytest.raises(RuntimeError):
        archive_one(
            sessions,
            factories.job("keep", cost=1, updated_at="2026-10-02T00:00:00Z"),
            T0 + MINUTE,
            before_commit=explode,
        )
    assert history_counts(sessions) == before
    assert count(sessions, Job) == 1 and job_row(sessions).cost == 1200
    for model in (Task, TaskDependency, ValError, JobSnapshot):
        assert count(sessions, model, model.job_id == "lost") == 0


def test_hostile_strings_round_trip(sessions: sessionmaker) -> None:
    payload = factories.job(
        "job-'; DROP TABLE jobs; --", tasks=2, val_errors=1, created_by='Zoë 🚀 "quoted" \\ back'
    )
    payload["tasks"][0]["name"] = "x\x00y"  # PostgreSQL refuses NUL in text
    payload["tasks"][1]["err_msg"] = "lone \ud83d surrogate"
    payload["val_errors"][0]["reason"] = "r" * 100_000
    result = archive_one(sessions, payload, T0)
    assert result.outcome == "new" and result.problems == 2
    with sessions() as session:
        job = session.scalars(select(Job)).one()
        assert job.job_id == "job-'; DROP TABLE jobs; --"
        assert job.created_by == 'Zoë 🚀 "quoted" \\ back'
        names = dict(session.execute(select(Task.task_id, Task.name)).all())
        assert names["t00"] == "x\ufffdy"
        assert len(session.scalar(select(ValError.reason))) == 100_000
        assert session.execute(text("select count(*) from jobs")).scalar() == 1


def test_ids_differing_only_in_case_or_trailing_space_are_distinct(sessions: sessionmaker) -> None:
    for job_id in ("Job", "job", "job "):
        archive_one(sessions, factories.job(job_id, tasks=1, val_errors=0), T0)
    assert count(sessions, Job) == 3


def test_duplicate_task_ids_and_odd_dependencies(sessions: sessionmaker) -> None:
    payload = factories.job(tasks=3, val_errors=0)
    payload["tasks"].append(factories.task("t01", depends_on=["t01", "ghost", "t02"]))
    payload["tasks"][2]["depends_on"] = ["t01"]
    result = archive_one(sessions, payload, T0)
    assert count(sessions, Task) == 3
    with sessions() as session:
        edges = set(
            session.execute(select(TaskDependency.task_id, TaskDependency.depends_on_task_id))
        )
        messages = set(session.scalars(select(IngestProblem.message)))
    assert {("t01", "t01"), ("t01", "ghost"), ("t01", "t02"), ("t02", "t01")} <= edges
    assert {
        "duplicate task id; the last one was kept",
        "task depends on itself",
        "depends on a task not in this job",
        "dependency cycle",
    } <= messages
    assert result.problems == 4


def test_five_megabyte_payload(sessions: sessionmaker) -> None:
    payload = factories.job(tasks=50)
    for task in payload["tasks"]:
        task["info_logs"] = list(range(10_000))
    result = archive_one(sessions, payload, T0)
    assert result.outcome == "new"
    with sessions() as session:
        assert len(session.scalar(select(JobSnapshot.body))) > 2_000_000
        logs = session.scalar(select(Task.info_logs).where(Task.task_id == "t49"))
        assert logs[-1] == 9_999


def test_a_poll_with_the_same_bytes_is_not_decoded(
    sessions: sessionmaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's common case: identical bytes are recognized by their digest alone; the same
    data spelled differently goes the full way once, and its spelling is remembered."""
    import json

    import archiver.archive.batches

    payload = factories.job(tasks=3)
    body = json.dumps(payload)
    archive_one(sessions, body, T0, workflow_id="wf-1", job_id="job-1")
    decoded: list[int] = []
    real_identify = archiver.archive.batches.identify

    def counting_identify(*args: Any, **kwargs: Any) -> Any:
        decoded.append(1)
        return real_identify(*args, **kwargs)

    monkeypatch.setattr(archiver.archive.batches, "identify", counting_identify)
    later = T0 + timedelta(minutes=5)
    result = archive_one(sessions, body.encode(), later, workflow_id="wf-1", job_id="job-1")
    assert (result.outcome, result.version, result.status, decoded) == (
        "unchanged",
        1,
        "running",
        [],
    )
    with sessions() as session:
        seen = session.execute(
            select(Job.last_seen_at, Task.last_seen_at).join(
                Task, (Task.workflow_id == Job.workflow_id) & (Task.job_id == Job.job_id)
            )
        ).all()
    assert {tuple(r) for r in seen} == {(later, later)}

    reordered = json.dumps(payload, sort_keys=True)  # the same data, other bytes
    result = archive_one(
        sessions, reordered, later + timedelta(minutes=5), workflow_id="wf-1", job_id="job-1"
    )
    assert (result.outcome, len(decoded)) == ("unchanged", 1)
    archive_one(
        sessions, reordered, later + timedelta(minutes=9), workflow_id="wf-1", job_id="job-1"
    )
    assert len(decoded) == 1  # remembered: not decoded again
    # without the ids (a file ingest) the digest finds the one job whose body this is
    assert archive_one(sessions, reordered, later + timedelta(minutes=10)).outcome == "unchanged"
    assert len(decoded) == 1
    with sessions() as session:
        counts = [
            session.scalar(select(func.count()).select_from(m))
            for m in (JobSnapshot, JobVersion, JobChange)
        ]
    assert counts[:2] == [1, 1]  # no history from any of the repeats
    # a body that does not name its workflow (a poll gave it) is not recognized without the ids:
    # decoded, it is refused as it would be on an archive that never saw it
    anonymous = json.dumps({k: v for k, v in payload.items() if k != "workflow_id"} | {"id": "j2"})
    archive_one(sessions, anonymous, later, workflow_id="wf-1", job_id="j2")
    assert len(decoded) == 2
    with pytest.raises(PayloadError, match="no workflow_id"):
        archive_one(sessions, anonymous, later + timedelta(minutes=10))
    assert len(decoded) == 3


def test_a_removed_task_keeps_its_last_sighting(sessions: sessionmaker[Session]) -> None:
    """Review defect: a task absent from a newer payload keeps last_seen_at at its last
    sighting and gets removed_at."""
    first = factories.job(tasks=3)
    archive_one(sessions, first, T0)
    later = factories.evolve(first, updated_at="2026-10-01T10:06:00Z")
    later["tasks"] = later["tasks"][:2]
    archive_one(sessions, later, T0 + timedelta(minutes=5))
    with sessions() as session:
        gone = session.scalars(select(Task).where(Task.task_id == "t02")).one()
    assert (gone.last_seen_at, gone.removed_at) == (T0, T0 + timedelta(minutes=5))
