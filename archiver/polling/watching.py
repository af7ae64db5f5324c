"""Which workflows each pass lists: watched by id, or found through a watch-all rule.

A workflow's ``state``: ``watched`` (each pass lists its jobs), ``paused`` (its listJobs kept
answering 403/404; watching it again resumes it), ``unwatched`` (the user stopped watching it: a
watch-all rule does not bring it back, only ``watch_workflows`` does), ``known`` (described, not
watched: found by a rule that was removed since). ``workflows.watched`` is true in the first two
states, for SQL that asks only that; ``state_values`` is the one place that sets both.

Stopping to watch a workflow does not stop its jobs: those already tracked keep their own
schedule until they settle, so late cost changes still land; ``with_jobs`` untracks them too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, func, select, update
from sqlalchemy.orm import Session

from archiver.archive.workflows import ensure_row
from archiver.db import upsert
from archiver.ids import id_problem, shown_id
from archiver.models import TRACKED, WATCH_RULES, WORKFLOWS

WATCHED_STATES = ("watched", "paused")
STATES = ("watched", "paused", "unwatched", "known")


def state_values(state: str, now: datetime, source: str | None = None) -> dict[str, Any]:
    """The columns a move to ``state`` writes: ``watched`` always agrees with ``state``."""
    if state not in STATES:
        raise ValueError(f"unknown workflow state {state!r}")
    values: dict[str, Any] = {"state": state, "watched": state in WATCHED_STATES}
    if state == "watched":
        values.update(consecutive_failures=0, watched_at=now)
        if source is not None:
            values["watch_source"] = source
    return values


def validate_workflow_id(workflow_id: str, name: str = "workflow_id") -> str | None:
    """Why ``workflow_id`` cannot be watched (or, with ``name``, another id sent to the
    listing endpoints), or None."""
    if workflow_id in (".", ".."):  # a path segment no HTTP client sends as it is
        return f"{name} {workflow_id!r} cannot be sent to the API as an id"
    problem = id_problem(workflow_id)
    return f"{name} {shown_id(workflow_id)} {problem}" if problem else None


@dataclass(frozen=True)
class WatchResult:
    started: list[str]  # not watched before (new, unwatched or known)
    resumed: list[str]  # paused before
    already: list[str]  # watched already


def watch_workflows(session: Session, workflow_ids: Sequence[str], now: datetime) -> WatchResult:
    """Watch these workflows by id; a paused or unwatched one is resumed. The next pass
    describes each one not described yet and lists its jobs."""
    started: list[str] = []
    resumed: list[str] = []
    already: list[str] = []
    for workflow_id in dict.fromkeys(workflow_ids):
        ensure_row(session, workflow_id, now)
        state = session.execute(
            select(WORKFLOWS.c.state)
            .where(WORKFLOWS.c.workflow_id == workflow_id)
            .with_for_update()
        ).scalar_one()
        if state == "watched":
            already.append(workflow_id)
            # watched by a rule so far: now by id as well, so removing the rule keeps it
            _set(session, workflow_id, {"watch_source": "workflow"})
            continue
        (resumed if state == "paused" else started).append(workflow_id)
        _set(session, workflow_id, state_values("watched", now, "workflow"))
    return WatchResult(started, resumed, already)


def watch_found(session: Session, workflow_id: str, now: datetime) -> bool:
    """A rule found this workflow: watch it unless the user unwatched it (or it is paused).
    True when it was not watched before. The row exists (the rule's listing described it)."""
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(WORKFLOWS)
        .where(WORKFLOWS.c.workflow_id == workflow_id, WORKFLOWS.c.state == "known")
        .values(**state_values("watched", now, "all"))
    )
    return bool(result.rowcount)


@dataclass(frozen=True)
class UnwatchResult:
    found: bool
    jobs_untracked: int = 0
    jobs_still_polled: int = 0  # tracked jobs that keep their schedule until they settle


def unwatch_workflow(
    session: Session, workflow_id: str, now: datetime, *, with_jobs: bool = False
) -> UnwatchResult:
    """Stop listing this workflow; a watch-all rule will not bring it back. Its tracked jobs
    keep being polled until they settle, unless ``with_jobs``: then they are untracked too."""
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(WORKFLOWS)
        .where(WORKFLOWS.c.workflow_id == workflow_id)
        .values(**state_values("unwatched", now), lease_owner=None, lease_expires_at=None)
    )
    if not result.rowcount:
        return UnwatchResult(False)
    polled = TRACKED.c.state.in_(("active", "settling"))
    if with_jobs:
        untracked: CursorResult[Any] = session.execute(  # type: ignore[assignment]
            update(TRACKED)
            .where(TRACKED.c.workflow_id == workflow_id, TRACKED.c.state != "untracked")
            .values(state="untracked", next_poll_at=None)
        )
        return UnwatchResult(True, jobs_untracked=int(untracked.rowcount or 0))
    still = session.execute(
        select(func.count())
        .select_from(TRACKED)
        .where(TRACKED.c.workflow_id == workflow_id, polled)
    ).scalar_one()
    return UnwatchResult(True, jobs_still_polled=int(still))


def rule_key(project_id: str | None) -> str:
    return project_id or ""


def watch_all(session: Session, project_id: str | None, now: datetime) -> bool:
    """Add (or resume) the rule that watches every workflow the key can list, or a project's.
    True when it was not active before."""
    key = rule_key(project_id)
    upsert(
        session,
        WATCH_RULES,
        [
            {
                "project_id": key,
                "added_at": now,
                "state": "untracked",
                "consecutive_failures": 0,
                "claim_token": 0,
            }
        ],
        key=("project_id",),
        update=(),
    )
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(WATCH_RULES)
        .where(WATCH_RULES.c.project_id == key, WATCH_RULES.c.state != "active")
        .values(state="active", added_at=now, consecutive_failures=0, last_error=None)
    )
    return bool(result.rowcount)


def unwatch_rule(session: Session, project_id: str | None, now: datetime) -> tuple[bool, int]:
    """Remove a watch-all rule. The workflows only it watched are no longer listed (state
    ``known``: a rule added later finds them again); those watched by id stay. Returns whether
    the rule was active and how many workflows stopped being watched."""
    key = rule_key(project_id)
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(WATCH_RULES)
        .where(WATCH_RULES.c.project_id == key, WATCH_RULES.c.state == "active")
        .values(state="untracked")
    )
    if not result.rowcount:
        return False, 0
    active = set(
        session.scalars(select(WATCH_RULES.c.project_id).where(WATCH_RULES.c.state == "active"))
    )
    if "" in active:
        return True, 0  # every workflow is still covered by the rule for all projects
    query = update(WORKFLOWS).where(
        WORKFLOWS.c.watch_source == "all", WORKFLOWS.c.state.in_(WATCHED_STATES)
    )
    if active:
        query = query.where(
            WORKFLOWS.c.project_id.is_(None) | WORKFLOWS.c.project_id.not_in(sorted(active))
        )
    stopped: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        query.values(**state_values("known", now), lease_owner=None, lease_expires_at=None)
    )
    return True, int(stopped.rowcount or 0)


@dataclass(frozen=True)
class WatchedWorkflow:
    workflow_id: str
    name: str | None
    state: str
    watch_source: str | None
    jobs_known: int  # tracked jobs of the workflow (untracked ones not counted)
    jobs_listed: int | None  # jobs in its last listing
    last_listed_at: datetime | None
    estimated_cost: int | None
    last_error: str | None


def list_watched(session: Session, state: str | None = None) -> list[WatchedWorkflow]:
    """Workflows that are or were watched (``known`` ones, never watched, are left out)."""
    jobs = (
        select(TRACKED.c.workflow_id, func.count().label("n"))
        .where(TRACKED.c.state != "untracked")
        .group_by(TRACKED.c.workflow_id)
        .subquery()
    )
    query = (
        select(WORKFLOWS, func.coalesce(jobs.c.n, 0).label("jobs_known"))
        .outerjoin(jobs, jobs.c.workflow_id == WORKFLOWS.c.workflow_id)
        .where(WORKFLOWS.c.state != "known")
        .order_by(WORKFLOWS.c.workflow_id)
    )
    if state:
        query = query.where(WORKFLOWS.c.state == state)
    return [
        WatchedWorkflow(
            r["workflow_id"],
            r["name"],
            r["state"],
            r["watch_source"],
            int(r["jobs_known"]),
            r["jobs_listed"],
            r["last_listed_at"],
            r["estimated_cost"],
            r["last_error"],
        )
        for r in session.execute(query).mappings()
    ]


@dataclass(frozen=True)
class RuleRow:
    project_id: str  # "" for every project
    state: str
    workflows_listed: int | None
    last_listed_at: datetime | None
    last_error: str | None


def list_rules(session: Session, *, active_only: bool = True) -> list[RuleRow]:
    query = select(WATCH_RULES).order_by(WATCH_RULES.c.project_id)
    if active_only:
        query = query.where(WATCH_RULES.c.state == "active")
    return [
        RuleRow(
            r["project_id"], r["state"], r["workflows_listed"], r["last_listed_at"], r["last_error"]
        )
        for r in session.execute(query).mappings()
    ]


def _set(session: Session, workflow_id: str, values: dict[str, Any]) -> None:
    session.execute(
        update(WORKFLOWS).where(WORKFLOWS.c.workflow_id == workflow_id).values(**values)
    )
