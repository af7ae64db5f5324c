"""The write path for workflow descriptions (issue 15, item 3) on every database: versions like
``job_versions`` (one current row, closed by the next), one change row per changed field."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive.workflows import record_estimate, record_workflow
from archiver.models import WORKFLOW_CHANGES, WORKFLOW_VERSIONS, WORKFLOWS
from archiver.polling import watching

T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Info:
    workflow_id: str = "wf-1"
    project_id: str | None = "p-1"
    legacy_project_id: str | None = None
    name: str | None = "Ortho"
    description: str | None = "rectify tiles"
    created_by: str | None = "ana"
    created_at: datetime | None = datetime(2026, 9, 1, tzinfo=UTC)
    updated_at: datetime | None = datetime(2026, 9, 2, tzinfo=UTC)


def versions(sessions: sessionmaker[Session]) -> list:
    with sessions() as session:
        return list(
            session.execute(select(WORKFLOW_VERSIONS).order_by(WORKFLOW_VERSIONS.c.version))
        )


def changes(sessions: sessionmaker[Session]) -> list[tuple]:
    with sessions() as session:
        rows = session.execute(
            select(
                WORKFLOW_CHANGES.c.field,
                WORKFLOW_CHANGES.c.old_value,
                WORKFLOW_CHANGES.c.new_value,
                WORKFLOW_CHANGES.c.observed_at,
            ).order_by(WORKFLOW_CHANGES.c.id)
        )
        return [tuple(r) for r in rows]


def current(sessions: sessionmaker[Session]):
    with sessions() as session:
        return session.execute(select(WORKFLOWS)).one()


def test_first_sight_writes_version_1_and_no_change(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        stored = record_workflow(session, Info(), T0, estimate=500)
    assert (stored.outcome, stored.version, stored.changed) == ("new", 1, ())
    (v1,) = versions(sessions)
    assert (v1.version, v1.name, v1.estimated_cost, v1.valid_from, v1.valid_to) == (
        1,
        "Ortho",
        500,
        T0,
        None,
    )
    assert changes(sessions) == []
    row = current(sessions)
    assert (row.first_seen_at, row.last_seen_at, row.estimated_at, row.state) == (
        T0,
        T0,
        T0,
        "known",
    )


def test_the_same_description_again_moves_only_last_seen(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_workflow(session, Info(), T0)
    later = T0 + timedelta(hours=1)
    with sessions.begin() as session:
        stored = record_workflow(session, Info(), later)
    assert stored.outcome == "unchanged"
    assert len(versions(sessions)) == 1 and changes(sessions) == []
    row = current(sessions)
    assert (row.first_seen_at, row.last_seen_at, row.version) == (T0, later, 1)


def test_a_rename_closes_the_version_and_logs_old_and_new(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_workflow(session, Info(), T0, estimate=500)
    later = T0 + timedelta(hours=2)
    renamed = replace(Info(), name="Ortho v2", updated_at=datetime(2026, 10, 1, tzinfo=UTC))
    with sessions.begin() as session:
        stored = record_workflow(session, renamed, later)
    assert (stored.outcome, stored.version, stored.changed) == (
        "changed",
        2,
        ("name", "updated_at"),
    )
    v1, v2 = versions(sessions)
    assert (v1.valid_to, v2.valid_from, v2.valid_to) == (later, later, None)
    assert (v2.name, v2.estimated_cost) == ("Ortho v2", 500)  # the estimate carries over
    assert changes(sessions) == [
        ("name", "Ortho", "Ortho v2", later),
        ("updated_at", "2026-09-02T00:00:00.000000Z", "2026-10-01T00:00:00.000000Z", later),
    ]


def test_a_new_estimate_is_a_version_and_a_missing_one_keeps_the_last(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        record_workflow(session, Info(), T0, estimate=500)
    t1, t2 = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    with sessions.begin() as session:
        record_estimate(session, "wf-1", 650, t1)
    with sessions.begin() as session:
        kept = record_estimate(session, "wf-1", None, t2)  # the answer had no integer
    assert kept.outcome == "unchanged"
    assert changes(sessions) == [("estimated_cost", "500", "650", t1)]
    row = current(sessions)
    assert (row.estimated_cost, row.estimated_at, row.version) == (650, t2, 2)


def test_a_workflow_watched_before_it_was_described(sessions: sessionmaker[Session]) -> None:
    """Watching by id makes an undescribed row (version 0); its first description is still
    version 1 with no change, and its watch state is kept."""
    with sessions.begin() as session:
        watching.watch_workflows(session, ["wf-1"], T0)
    assert versions(sessions) == []
    later = T0 + timedelta(minutes=5)
    with sessions.begin() as session:
        record_estimate(session, "wf-1", 42, later)  # an estimate before the description
        stored = record_workflow(session, Info(), later)
    assert (stored.outcome, stored.version, stored.state) == ("new", 1, "watched")
    (v1,) = versions(sessions)
    assert v1.estimated_cost == 42
    assert changes(sessions) == []
    row = current(sessions)
    assert (row.first_seen_at, row.state, row.watched) == (later, "watched", True)


def test_text_a_column_cannot_hold_is_made_storable(sessions: sessionmaker[Session]) -> None:
    odd = replace(Info(), name="nul\x00here", created_by="x" * 300)
    with sessions.begin() as session:
        record_workflow(session, odd, T0)
    row = current(sessions)
    assert row.name == "nul\ufffdhere"
    assert row.created_by is None  # longer than its column: left out, not cut
