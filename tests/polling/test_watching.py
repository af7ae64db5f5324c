"""Watching workflows (issue 15, item 1) on every database: the states and what moves them,
the watch-all rules, and what ``tracked --workflows`` is built from."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive.workflows import record_workflow
from archiver.models import TRACKED, WORKFLOWS
from archiver.polling import tracking, watching

T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Info:
    workflow_id: str
    project_id: str | None = "p-1"
    legacy_project_id: str | None = None
    name: str | None = "a name"
    description: str | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


def states(sessions: sessionmaker[Session]) -> dict[str, tuple[str, bool, str | None]]:
    with sessions() as session:
        rows = session.execute(
            select(
                WORKFLOWS.c.workflow_id,
                WORKFLOWS.c.state,
                WORKFLOWS.c.watched,
                WORKFLOWS.c.watch_source,
            )
        )
        return {r.workflow_id: (r.state, r.watched, r.watch_source) for r in rows}


def found_by_rule(session: Session, workflow_id: str, project_id: str = "p-1") -> bool:
    record_workflow(session, Info(workflow_id, project_id), T0)
    return watching.watch_found(session, workflow_id, T0)


def test_watch_unwatch_and_watch_again(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        first = watching.watch_workflows(session, ["wf-1", "wf-2", "wf-1"], T0)
    assert (first.started, first.resumed, first.already) == (["wf-1", "wf-2"], [], [])
    assert states(sessions)["wf-1"] == ("watched", True, "workflow")

    with sessions.begin() as session:
        assert watching.unwatch_workflow(session, "wf-1", T0).found
        assert not watching.unwatch_workflow(session, "wf-9", T0).found
    assert states(sessions)["wf-1"] == ("unwatched", False, "workflow")

    with sessions.begin() as session:
        session.execute(
            WORKFLOWS.update()
            .where(WORKFLOWS.c.workflow_id == "wf-2")
            .values(**watching.state_values("paused", T0))
        )
        again = watching.watch_workflows(session, ["wf-1", "wf-2"], T0)
    assert (again.started, again.resumed) == (["wf-1"], ["wf-2"])
    assert states(sessions) == {
        "wf-1": ("watched", True, "workflow"),
        "wf-2": ("watched", True, "workflow"),
    }


def test_paused_counts_as_watched_and_state_values_refuses_unknown_states() -> None:
    assert watching.state_values("paused", T0) == {"state": "paused", "watched": True}
    assert watching.state_values("known", T0)["watched"] is False
    with pytest.raises(ValueError, match="unknown workflow state 'gone'"):
        watching.state_values("gone", T0)


def test_a_rule_does_not_rewatch_an_unwatched_workflow(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        assert watching.watch_all(session, None, T0)
        assert not watching.watch_all(session, None, T0)  # already active
        assert found_by_rule(session, "wf-1")
        assert found_by_rule(session, "wf-2")
        watching.unwatch_workflow(session, "wf-1", T0)
        assert not found_by_rule(session, "wf-1")
        assert not found_by_rule(session, "wf-2")  # watched already
    assert states(sessions) == {
        "wf-1": ("unwatched", False, "all"),
        "wf-2": ("watched", True, "all"),
    }


def test_removing_a_rule_stops_only_what_it_alone_watched(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        watching.watch_all(session, None, T0)
        watching.watch_all(session, "p-2", T0)
        found_by_rule(session, "wf-a", "p-1")
        found_by_rule(session, "wf-b", "p-2")
        watching.watch_workflows(session, ["wf-c"], T0)
        found_by_rule(session, "wf-c", "p-1")  # watched by id too
    with sessions.begin() as session:
        assert watching.unwatch_rule(session, None, T0) == (True, 1)  # wf-a; p-2 keeps wf-b
        assert watching.unwatch_rule(session, None, T0) == (False, 0)
    assert states(sessions) == {
        "wf-a": ("known", False, "all"),
        "wf-b": ("watched", True, "all"),
        "wf-c": ("watched", True, "workflow"),
    }
    with sessions.begin() as session:
        assert watching.unwatch_rule(session, "p-2", T0) == (True, 1)
        assert [r.project_id for r in watching.list_rules(session)] == []
        # a rule added again finds the known ones again
        watching.watch_all(session, None, T0)
        assert found_by_rule(session, "wf-a")


def test_unwatch_with_jobs_untracks_them_and_without_keeps_them_polled(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        watching.watch_workflows(session, ["wf-1", "wf-2"], T0)
        tracking.track(session, [("wf-1", "a"), ("wf-1", "b"), ("wf-2", "c")], T0)
        kept = watching.unwatch_workflow(session, "wf-1", T0)
        gone = watching.unwatch_workflow(session, "wf-2", T0, with_jobs=True)
    assert (kept.jobs_still_polled, kept.jobs_untracked) == (2, 0)
    assert gone.jobs_untracked == 1
    with sessions() as session:
        jobs = dict(session.execute(select(TRACKED.c.job_id, TRACKED.c.state)).all())
        listed = {w.workflow_id: w.jobs_known for w in watching.list_watched(session)}
    assert jobs == {"a": "active", "b": "active", "c": "untracked"}
    assert listed == {"wf-1": 2, "wf-2": 0}


def test_list_watched_leaves_out_workflows_never_watched(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_workflow(session, Info("wf-seen"), T0)
        watching.watch_workflows(session, ["wf-1"], T0)
        record_workflow(session, Info("wf-1", name="Ortho"), T0)
        shown = watching.list_watched(session)
    assert [(w.workflow_id, w.name, w.state, w.jobs_known) for w in shown] == [
        ("wf-1", "Ortho", "watched", 0)
    ]


def test_ids_are_checked_by_the_id_rule() -> None:
    assert watching.validate_workflow_id("wf-1") is None
    problem = watching.validate_workflow_id("wf\n1")
    assert problem is not None and "control character" in problem and "'wf\\n1'" in problem
