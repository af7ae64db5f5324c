"""``archiver verify`` checks the *sets* of current rows against the history, on every database.

The current tables (``jobs``, ``tasks``, ``task_dependencies``, ``val_errors``) are not chained:
their rows are derived from the history. A current row the history does not back is ``inserted``,
a row the history implies but the table lacks is ``deleted``, a differing value is ``edited``;
each must be named with its table and job, and fail the CLI (issue 14, item 3).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import factories
import pytest
from click.testing import CliRunner
from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive.batches import archive_one
from archiver.audit.verify import Report, check_anchor, take_anchor, verify
from archiver.cli import cli
from archiver.models import (
    CHANGES,
    DEPS,
    JOB_VERSIONS,
    JOBS,
    PROBLEMS,
    SNAPSHOTS,
    TASK_VERSIONS,
    TASKS,
    TRACKED,
    VAL_ERRORS,
)

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)


def build(sessions: sessionmaker[Session]) -> None:
    """job-a: task t02 removed, one of two validation errors resolved, the other seen twice;
    job-b untouched."""
    a = factories.job("job-a", tasks=3, val_errors=2, cost=100)
    later = factories.evolve(
        a,
        cost=150,
        tasks=a["tasks"][:2],
        val_errors=a["val_errors"][:1] * 2,  # the first one twice: its occurrences change
        updated_at="2026-10-05T09:00:00Z",
    )
    steps = [a, later, factories.job("job-b", tasks=2, val_errors=1, cost=40)]
    for i, payload in enumerate(steps):
        archive_one(sessions, payload, T0 + timedelta(minutes=10 * i))


def run_verify(sessions: sessionmaker[Session], **kw: Any) -> Report:
    with sessions() as session:
        return verify(session, **kw)


def one(sessions: sessionmaker[Session], query: Any) -> dict[str, Any]:
    with sessions() as session:
        row = session.execute(query).mappings().first()
        assert row is not None, query
        return dict(row)


def execute(sessions: sessionmaker[Session], *statements: Any) -> None:
    with sessions() as session:
        for statement in statements:
            session.execute(statement)
        session.commit()


def _task(s: sessionmaker[Session], task_id: str) -> dict[str, Any]:
    return one(s, select(TASKS).where(TASKS.c.job_id == "job-a", TASKS.c.task_id == task_id))


def _edge(s: sessionmaker[Session], task_id: str, dep: str) -> dict[str, Any]:
    return one(
        s,
        select(DEPS).where(
            DEPS.c.job_id == "job-a", DEPS.c.task_id == task_id, DEPS.c.depends_on_task_id == dep
        ),
    )


def _val_error(s: sessionmaker[Session], resolved: bool) -> dict[str, Any]:
    state = (
        VAL_ERRORS.c.resolved_at.is_not(None) if resolved else VAL_ERRORS.c.resolved_at.is_(None)
    )
    return one(s, select(VAL_ERRORS).where(VAL_ERRORS.c.job_id == "job-a", state))


def _without_id(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**{k: v for k, v in row.items() if k != "id"}, **changes}


# --- tasks ---------------------------------------------------------------------------------------


def _delete_task(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(s, delete(TASKS).where(TASKS.c.id == _task(s, "t00")["id"]))
    return "tasks", "deleted"


def _delete_removed_task(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(s, delete(TASKS).where(TASKS.c.id == _task(s, "t02")["id"]))
    return "tasks", "deleted"


def _forge_task(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(s, insert(TASKS).values(_without_id(_task(s, "t00"), task_id="t99")))
    return "tasks", "inserted"


def _edit_task(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(s, update(TASKS).where(TASKS.c.id == _task(s, "t00")["id"]).values(status="failed"))
    return "tasks", "edited"


def _unremove_task(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(s, update(TASKS).where(TASKS.c.id == _task(s, "t02")["id"]).values(removed_at=None))
    return "tasks", "edited"


def _remove_task(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(
        s,
        update(TASKS)
        .where(TASKS.c.id == _task(s, "t00")["id"])
        .values(removed_at=T0 + timedelta(hours=1)),
    )
    return "tasks", "edited"


# --- task_dependencies ---------------------------------------------------------------------------


def _delete_edge(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(s, delete(DEPS).where(DEPS.c.id == _edge(s, "t01", "t00")["id"]))
    return "task_dependencies", "deleted"


def _delete_removed_tasks_edge(s: sessionmaker[Session]) -> tuple[str, str]:
    # a removed task keeps its edges: archiving only rewrites the edges of the tasks it is given
    execute(s, delete(DEPS).where(DEPS.c.id == _edge(s, "t02", "t01")["id"]))
    return "task_dependencies", "deleted"


def _forge_edge(s: sessionmaker[Session]) -> tuple[str, str]:
    edge = _without_id(_edge(s, "t01", "t00"), task_id="t00", depends_on_task_id="t01")
    execute(s, insert(DEPS).values(edge))
    return "task_dependencies", "inserted"


def _edit_edge(s: sessionmaker[Session]) -> tuple[str, str]:
    row = _edge(s, "t01", "t00")
    execute(s, update(DEPS).where(DEPS.c.id == row["id"]).values(depends_on_task_id="t02"))
    return "task_dependencies", "edited"


# --- val_errors ----------------------------------------------------------------------------------


def _delete_val_error(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(s, delete(VAL_ERRORS).where(VAL_ERRORS.c.id == _val_error(s, False)["id"]))
    return "val_errors", "deleted"


def _delete_resolved_val_error(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(s, delete(VAL_ERRORS).where(VAL_ERRORS.c.id == _val_error(s, True)["id"]))
    return "val_errors", "deleted"


def _forge_val_error(s: sessionmaker[Session]) -> tuple[str, str]:
    row = _val_error(s, False)
    execute(s, insert(VAL_ERRORS).values(_without_id(row, fingerprint="f" * 64, err="forged")))
    return "val_errors", "inserted"


def _edit_val_error(s: sessionmaker[Session]) -> tuple[str, str]:
    row = _val_error(s, False)
    execute(s, update(VAL_ERRORS).where(VAL_ERRORS.c.id == row["id"]).values(err="harmless"))
    return "val_errors", "edited"


def _reopen_val_error(s: sessionmaker[Session]) -> tuple[str, str]:
    row = _val_error(s, True)
    execute(s, update(VAL_ERRORS).where(VAL_ERRORS.c.id == row["id"]).values(resolved_at=None))
    return "val_errors", "edited"


def _resolve_val_error(s: sessionmaker[Session]) -> tuple[str, str]:
    row = _val_error(s, False)
    execute(
        s,
        update(VAL_ERRORS)
        .where(VAL_ERRORS.c.id == row["id"])
        .values(resolved_at=T0 + timedelta(hours=1)),
    )
    return "val_errors", "edited"


def _edit_occurrences(s: sessionmaker[Session]) -> tuple[str, str]:
    row = _val_error(s, False)
    execute(s, update(VAL_ERRORS).where(VAL_ERRORS.c.id == row["id"]).values(occurrences=7))
    return "val_errors", "edited"


# --- jobs ----------------------------------------------------------------------------------------


def _forge_job(s: sessionmaker[Session]) -> tuple[str, str]:
    row = one(s, select(JOBS).where(JOBS.c.job_id == "job-a"))
    forged = _without_id(row, job_id="job-z", chain_seq=None, chain_sha256=None)
    execute(s, insert(JOBS).values(forged))
    return "jobs", "inserted"


def _delete_job_row(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(s, delete(JOBS).where(JOBS.c.job_id == "job-a"))
    return "jobs", "deleted"


def _edit_job(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(s, update(JOBS).where(JOBS.c.job_id == "job-a").values(status="completed"))
    return "jobs", "edited"


def _edit_job_version_number(s: sessionmaker[Session]) -> tuple[str, str]:
    execute(s, update(JOBS).where(JOBS.c.job_id == "job-a").values(version=1))
    return "jobs", "edited"


def _job_column(**values: Any) -> Callable[[sessionmaker[Session]], tuple[str, str]]:
    """Review defect: the row's own bookkeeping went unchecked, and the plan dates every later
    change from ``last_changed_at``, so a forged one shifted later history without a break."""

    def tamper(s: sessionmaker[Session]) -> tuple[str, str]:
        execute(s, update(JOBS).where(JOBS.c.job_id == "job-a").values(**values))
        return "jobs", "edited"

    return tamper


TAMPERINGS: dict[str, Callable[[sessionmaker[Session]], tuple[str, str]]] = {
    "delete a task": _delete_task,
    "delete a removed task": _delete_removed_task,
    "forge a task": _forge_task,
    "edit a task": _edit_task,
    "un-remove a task": _unremove_task,
    "remove a task": _remove_task,
    "delete an edge": _delete_edge,
    "delete a removed task's edge": _delete_removed_tasks_edge,
    "forge an edge": _forge_edge,
    "edit an edge": _edit_edge,
    "delete an open validation error": _delete_val_error,
    "delete a resolved validation error": _delete_resolved_val_error,
    "forge a validation error": _forge_val_error,
    "edit a validation error": _edit_val_error,
    "reopen a validation error": _reopen_val_error,
    "resolve a validation error": _resolve_val_error,
    "edit occurrences": _edit_occurrences,
    "forge a job": _forge_job,
    "delete a job's row": _delete_job_row,
    "edit a job": _edit_job,
    "edit a job's version": _edit_job_version_number,
    "edit a job's last_changed_at": _job_column(last_changed_at=datetime(2030, 1, 1, tzinfo=UTC)),
    "edit a job's first_seen_at": _job_column(first_seen_at=T0 - timedelta(days=1)),
    "edit a job's payload_sha256": _job_column(payload_sha256="0" * 64),
}


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=list(TAMPERINGS))
def test_each_current_row_tampering_is_named(
    db_url: str, sessions: sessionmaker[Session], tamper: str
) -> None:
    build(sessions)
    clean = run_verify(sessions)
    assert clean.ok, [b.line() for b in clean.breaks]
    table, kind = TAMPERINGS[tamper](sessions)
    job = "job-z" if tamper == "forge a job" else "job-a"
    report = run_verify(sessions)
    named = [(b.table, b.job_id, b.kind) for b in report.breaks]
    assert (table, job, kind) in named, [b.line() for b in report.breaks]
    # named once, and only there: the history itself is intact
    assert len(report.breaks) == 1, [b.line() for b in report.breaks]
    assert run_verify(sessions, job_id="job-b").ok
    result = CliRunner().invoke(cli, ["verify", "--database-url", db_url])
    assert result.exit_code == 1, result.output
    assert f"{table}" in result.stdout and f"job wf-1/{job}" in result.stdout
    assert f": {kind}: " in result.stdout


def _delete_whole_job(s: sessionmaker[Session], *, tracked_too: bool) -> None:
    tables = [SNAPSHOTS, JOB_VERSIONS, TASK_VERSIONS, CHANGES, TASKS, DEPS, VAL_ERRORS, PROBLEMS]
    statements = [delete(t).where(t.c.job_id == "job-a") for t in [*tables, JOBS]]
    if tracked_too:
        statements.append(delete(TRACKED).where(TRACKED.c.job_id == "job-a"))
    execute(s, *statements)


def _track_as_polled(s: sessionmaker[Session]) -> None:
    """The tracking rows a sync pass leaves: polled, with the status it archived."""
    for job in ("job-a", "job-b"):
        execute(
            s,
            insert(TRACKED).values(
                workflow_id="wf-1",
                job_id=job,
                added_at=T0,
                state="active",
                next_poll_at=T0 + timedelta(hours=1),
                last_polled_at=T0 + timedelta(minutes=30),
                last_status="running",
                consecutive_failures=0,
                claim_token=0,
            ),
        )


def test_a_whole_job_deleted_is_named_from_its_tracking_row(
    sessions: sessionmaker[Session],
) -> None:
    """A tracked job that a poll archived has a jobs row: its absence is the evidence."""
    build(sessions)
    _track_as_polled(sessions)
    assert run_verify(sessions).ok
    _delete_whole_job(sessions, tracked_too=False)
    report = run_verify(sessions)
    named = [(b.table, b.job_id, b.kind) for b in report.breaks]
    assert named == [("jobs", "job-a", "deleted")], [b.line() for b in report.breaks]
    assert "tracked_jobs" in report.breaks[0].detail


def test_a_whole_job_deleted_without_a_trace_is_caught_by_an_anchor(
    sessions: sessionmaker[Session],
) -> None:
    """Every row of a job gone, tracking row included: plain verify has no evidence left (the
    documented limit); the anchor taken before still names the job's head as missing."""
    build(sessions)
    _track_as_polled(sessions)
    with sessions() as session:
        digest = take_anchor(session, verify(session))
        session.commit()
    _delete_whole_job(sessions, tracked_too=True)
    assert run_verify(sessions).ok
    with sessions() as session:
        checked, breaks = check_anchor(session, digest)
    assert checked == 2
    assert [(b.job_id, b.kind) for b in breaks] == [("job-a", "deleted")]


# --- the same breaks whether a job is read whole or by pages -------------------------------------


def _chain_row(s: sessionmaker[Session], seq: int) -> dict[str, Any]:
    return one(s, select(CHANGES).where(CHANGES.c.job_id == "job-a", CHANGES.c.chain_seq == seq))


def _change_seqs(s: sessionmaker[Session]) -> list[int]:
    with s() as session:
        query = select(CHANGES.c.chain_seq).where(CHANGES.c.job_id == "job-a")
        return sorted(session.scalars(query))


def _chain_edit(s: sessionmaker[Session]) -> None:
    row = _chain_row(s, _change_seqs(s)[2])
    execute(s, update(CHANGES).where(CHANGES.c.id == row["id"]).values(new_value="x"))


def _chain_delete(s: sessionmaker[Session]) -> None:
    row = _chain_row(s, _change_seqs(s)[3])
    execute(s, delete(CHANGES).where(CHANGES.c.id == row["id"]))


def _chain_swap(s: sessionmaker[Session]) -> None:
    first, second = (_chain_row(s, seq) for seq in _change_seqs(s)[4:6])
    execute(
        s,
        update(CHANGES).where(CHANGES.c.id == first["id"]).values(chain_seq=-1),
        update(CHANGES).where(CHANGES.c.id == second["id"]).values(chain_seq=first["chain_seq"]),
        update(CHANGES).where(CHANGES.c.id == first["id"]).values(chain_seq=second["chain_seq"]),
    )


def _chain_forge(s: sessionmaker[Session]) -> None:
    row = _chain_row(s, _change_seqs(s)[1])
    unchained = _without_id(row, chain_seq=None, prev_sha256=None, row_sha256=None)
    execute(s, insert(CHANGES).values(unchained))
    foreign = _without_id(row, chain_seq=10_000, prev_sha256="f" * 64, row_sha256="e" * 64)
    execute(s, insert(CHANGES).values(foreign))


def _chain_and_current(s: sessionmaker[Session]) -> None:
    _chain_delete(s)
    _delete_task(s)
    _forge_edge(s)
    _reopen_val_error(s)


PAGED: dict[str, Callable[[sessionmaker[Session]], None]] = {
    "edit a change": _chain_edit,
    "delete a change": _chain_delete,
    "swap two changes": _chain_swap,
    "forge changes": _chain_forge,
    "chain and current rows": _chain_and_current,
}


@pytest.mark.parametrize("tamper", PAGED, ids=list(PAGED))
def test_reading_by_pages_names_the_same_breaks(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, tamper: str
) -> None:
    """A job longer than the budget is read by pages and merged: with a budget of 2 rows every
    job is, and every break must come out as when the jobs are read whole."""
    from archiver.audit import walk

    build(sessions)
    PAGED[tamper](sessions)
    whole = run_verify(sessions)
    assert not whole.ok
    monkeypatch.setattr(walk, "BUDGET", 2)
    paged = run_verify(sessions)
    assert sorted(paged.breaks, key=repr) == sorted(whole.breaks, key=repr)
    assert (paged.rows, paged.snapshots, paged.heads) == (whole.rows, whole.snapshots, whole.heads)


def test_past_the_lookup_cap_a_link_break_is_still_named(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Link breaks are classified by a query only so many times per job: past it, still named."""
    from archiver.audit import walk

    build(sessions)
    _chain_swap(sessions)
    _chain_delete(sessions)
    found = run_verify(sessions).breaks
    monkeypatch.setattr(walk, "LOOKUPS", 0)
    monkeypatch.setattr(walk, "RECENT", 1)
    capped = run_verify(sessions).breaks
    assert [(b.table, b.row_id) for b in capped] == [(b.table, b.row_id) for b in found]
    assert any("not looked up" in b.detail for b in capped), [b.line() for b in capped]
