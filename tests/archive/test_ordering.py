"""How payloads are ordered when a provider timestamp lies (issue 14, item 2), on every database.

Why: staleness is decided by the API's ``updated_at`` first. One payload dated far in the future
(year 9999) used to win every later comparison, so every real later payload was judged stale and
the job froze in the state of that one payload, silently. An ``updated_at`` later than the
payload's own fetch time by more than ``CLOCK_SKEW`` is now a recorded problem and orders nothing:
neither when it arrives nor later, as the archived value a newer payload is compared with.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import factories
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive.batches import Entry, archive_batch, archive_one
from archiver.archive.ingest import ingest, read_items
from archiver.archive.plan import CLOCK_SKEW
from archiver.audit.rebuild import dry_run
from archiver.audit.verify import verify
from archiver.models import IngestProblem, Job, JobChange, JobSnapshot

T0 = datetime(2026, 10, 1, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
FAR_FUTURE = "9999-12-31T23:59:59Z"


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def body(job_id: str, updated_at: str, **fields: Any) -> dict[str, Any]:
    return factories.job(job_id, tasks=2, val_errors=0, updated_at=updated_at, **fields)


def job_row(sessions: sessionmaker[Session], job_id: str) -> Job:
    with sessions() as session:
        return session.scalars(select(Job).where(Job.job_id == job_id)).one()


def future_problems(sessions: sessionmaker[Session], job_id: str) -> list[IngestProblem]:
    with sessions() as session:
        return list(
            session.scalars(
                select(IngestProblem).where(
                    IngestProblem.job_id == job_id, IngestProblem.field == "updated_at"
                )
            )
        )


def assert_sound(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        assert verify(session).ok
    report = dry_run(sessions)
    assert report.identical, report.diffs
    assert not report.rejected


def test_a_far_future_updated_at_does_not_freeze_the_job(sessions: sessionmaker[Session]) -> None:
    archive_one(sessions, body("j", stamp(T0), status="running", cost=10), T0)
    frozen = archive_one(sessions, body("j", FAR_FUTURE, status="running", cost=20), T0 + MINUTE)
    assert (frozen.outcome, frozen.problems) == ("changed", 1)  # counted like any problem
    # the typed column keeps the provider's value: it is data, only not a clock
    assert job_row(sessions, "j").updated_at == datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    [problem] = future_problems(sessions, "j")
    assert problem.raw_value is not None and problem.raw_value.startswith("9999-12-31")
    assert "later than the fetch time" in problem.message
    assert "not used to order payloads" in problem.message

    done = archive_one(
        sessions, body("j", stamp(T0 + 2 * MINUTE), status="completed", cost=5000), T0 + 3 * MINUTE
    )
    assert (done.outcome, done.status, done.is_terminal) == ("changed", "completed", True)
    job = job_row(sessions, "j")
    assert (job.status, job.cost, job.version) == ("completed", 5000, 3)
    assert job.updated_at == T0 + 2 * MINUTE
    assert len(future_problems(sessions, "j")) == 1  # only the payload that carried it
    assert_sound(sessions)


def test_a_far_future_first_payload_orders_nothing(sessions: sessionmaker[Session]) -> None:
    archive_one(sessions, body("j", FAR_FUTURE, status="running", cost=20), T0)
    assert len(future_problems(sessions, "j")) == 1
    later = archive_one(sessions, body("j", stamp(T0), status="completed", cost=5000), T0 + MINUTE)
    assert later.outcome == "changed"
    assert (job_row(sessions, "j").status, job_row(sessions, "j").cost) == ("completed", 5000)
    assert_sound(sessions)


def test_without_a_usable_updated_at_fetch_time_orders(sessions: sessionmaker[Session]) -> None:
    """A far-future payload fetched before the archived state is older, and stays out."""
    archive_one(sessions, body("j", stamp(T0), status="running", cost=10), T0)
    archive_one(sessions, body("j", stamp(T0), status="completed", cost=5000), T0 + 2 * MINUTE)
    late = archive_one(sessions, body("j", FAR_FUTURE, status="failed", cost=1), T0 + MINUTE)
    assert late.outcome == "stale"
    assert (job_row(sessions, "j").status, job_row(sessions, "j").cost) == ("completed", 5000)
    with sessions() as session:
        applied = session.scalars(select(JobSnapshot.applied).order_by(JobSnapshot.id)).all()
    assert applied == [True, True, False]
    assert_sound(sessions)


def test_the_clock_skew_allowance_is_honoured(sessions: sessionmaker[Session]) -> None:
    """Within the allowance the provider's clock still orders; just past it, it does not."""
    archive_one(sessions, body("a", stamp(T0 + CLOCK_SKEW), cost=1), T0)
    archive_one(sessions, body("b", stamp(T0 + CLOCK_SKEW + timedelta(seconds=1)), cost=1), T0)
    assert future_problems(sessions, "a") == []
    assert len(future_problems(sessions, "b")) == 1
    # fetched later, but older by a trusted updated_at: stale for a, not for b
    later = T0 + MINUTE
    assert archive_one(sessions, body("a", stamp(T0), cost=2), later).outcome == "stale"
    assert archive_one(sessions, body("b", stamp(T0), cost=2), later).outcome == "changed"
    assert_sound(sessions)


def test_ingest_of_a_captured_sequence_reaches_the_terminal_state(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """The ``ingest`` path (envelopes, in batches): the same rule, the same recorded problem."""
    steps = [
        (T0, body("j", stamp(T0), status="running", cost=10)),
        (T0 + MINUTE, body("j", FAR_FUTURE, status="running", cost=20)),
        (T0 + 3 * MINUTE, body("j", stamp(T0 + 2 * MINUTE), status="completed", cost=5000)),
    ]
    lines = [json.dumps({"fetched_at": stamp(at), "payload": p}) for at, p in steps]
    data = ("\n".join(lines) + "\n").encode()
    summary = ingest(sessions, read_items("capture.jsonl", data, None), now=lambda: T0)
    assert (summary.new, summary.changed, summary.stale, summary.failed) == (1, 2, 0, 0)
    assert summary.problems == 1
    job = job_row(sessions, "j")
    assert (job.status, job.cost, job.is_terminal) == ("completed", 5000, True)
    assert len(future_problems(sessions, "j")) == 1
    assert_sound(sessions)


def test_a_batch_applies_the_rule_per_job(sessions: sessionmaker[Session]) -> None:
    archive_batch(
        sessions,
        [Entry(body(j, FAR_FUTURE, status="running"), T0) for j in ("a", "b")],
    )
    results = archive_batch(
        sessions,
        [
            Entry(body("a", stamp(T0), status="completed", cost=5000), T0 + MINUTE),
            Entry(body("b", stamp(T0), status="failed", cost=7), T0 + MINUTE),
        ],
    )
    assert [(r.outcome, r.status) for r in results] == [  # type: ignore[union-attr]
        ("changed", "completed"),
        ("changed", "failed"),
    ]
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(IngestProblem)) == 2
        cost_changes = session.scalar(
            select(func.count()).select_from(JobChange).where(JobChange.field == "cost")
        )
    assert cost_changes == 4  # first sight and the later payload, per job
    assert_sound(sessions)
