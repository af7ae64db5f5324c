"""Rebuild reproduces what ingest did, whatever order payloads arrive in (issue 14, item 7).

Why: ``rebuild`` replays only the snapshots, so anything ingest decided by what a replay cannot
see (sightings of an unchanged payload, which move ``last_seen_at`` and write no snapshot) made an
untampered archive "differ" from its rebuild. P fetched at 10:00 and again at 10:20, then Q
fetched at 10:15 with a newer ``updated_at``, used to date Q's change 10:20 in the archive and
10:15 in the rebuild. Here: that scenario, and the property behind it on every database (random
fetch times, repeats, equal, missing and far-future ``updated_at``, random arrival order and batch
sizes: the archive verifies, keeps its history in order, and rebuilds identical).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import factories
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive.batches import Entry, archive_batch, archive_one
from archiver.audit.rebuild import DERIVED, dry_run
from archiver.audit.verify import verify
from archiver.models import JobChange, JobSnapshot, JobVersion

T0 = datetime(2026, 10, 1, 10, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def stamp(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def assert_rebuilds_identical(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        report = verify(session)
        assert report.ok, [str(b) for b in report.breaks]
    rebuilt = dry_run(sessions)
    assert not rebuilt.rejected, rebuilt.rejected
    assert rebuilt.identical, [(d.table, d.only_before, d.only_after) for d in rebuilt.diffs]


def assert_history_in_order(sessions: sessionmaker[Session], job_id: str) -> None:
    """DESIGN: a payload never writes history out of order (by chain position, times rise)."""
    with sessions() as session:
        starts = session.scalars(
            select(JobVersion.valid_from)
            .where(JobVersion.job_id == job_id)
            .order_by(JobVersion.version)
        ).all()
        seen = session.scalars(
            select(JobChange.observed_at)
            .where(JobChange.job_id == job_id)
            .order_by(JobChange.chain_seq)
        ).all()
    assert starts == sorted(starts)
    assert seen == sorted(seen)


def test_a_repeat_sighting_does_not_date_a_later_change(sessions: sessionmaker[Session]) -> None:
    p = factories.job("j", tasks=2, val_errors=1, updated_at=stamp(T0), cost=10)
    q = factories.job("j", tasks=2, val_errors=1, updated_at=stamp(T0 + 10 * MINUTE), cost=20)
    assert archive_one(sessions, p, T0).outcome == "new"
    assert archive_one(sessions, p, T0 + 20 * MINUTE).outcome == "unchanged"  # no snapshot
    assert archive_one(sessions, q, T0 + 15 * MINUTE).outcome == "changed"
    with sessions() as session:
        dated = session.scalars(
            select(JobChange.observed_at).where(JobChange.field == "cost").order_by(JobChange.id)
        ).all()
        snapshots = session.execute(
            select(JobSnapshot.fetched_at, JobSnapshot.applied).order_by(JobSnapshot.id)
        ).all()
    # the change is dated by what the evidence shows: Q's fetch, after P's
    assert dated == [T0, T0 + 15 * MINUTE]
    assert [tuple(s) for s in snapshots] == [(T0, True), (T0 + 15 * MINUTE, True)]
    assert_rebuilds_identical(sessions)
    assert_history_in_order(sessions, "j")


def test_a_stale_decision_made_by_a_sighting_is_replayed(sessions: sessionmaker[Session]) -> None:
    """An unchanged sighting at 10:20 makes R (same updated_at, fetched 10:15) stale; the replay,
    which never saw the 10:20 sighting, keeps R as the evidence it was instead of applying it."""
    p = factories.job("j", tasks=2, val_errors=0, updated_at=stamp(T0), cost=10)
    r = factories.job("j", tasks=2, val_errors=0, updated_at=stamp(T0), cost=30)
    archive_one(sessions, p, T0)
    archive_one(sessions, p, T0 + 20 * MINUTE)
    assert archive_one(sessions, r, T0 + 15 * MINUTE).outcome == "stale"
    assert_rebuilds_identical(sessions)


# --- the property ---------------------------------------------------------------------------------

# updated_at of a payload, in minutes after T0: None is a payload without one, "far" is year 9999;
# 40 lies in the future of early fetches (beyond the skew allowance) but not of later ones
UPDATED = st.sampled_from([0, 0, 1, 2, 5, 40, None, "far"])
FETCH = st.integers(0, 45)  # minutes after T0: out of order, and often equal
fresh = st.tuples(
    st.just("new"),
    st.integers(0, 1),  # which job
    UPDATED,
    st.sampled_from([10, 20, 30]),  # cost
    st.sampled_from(["running", "completed"]),  # the first task's status
    FETCH,
)
repeat = st.tuples(st.just("repeat"), st.integers(0, 9), FETCH)  # an earlier body, fetched again
steps = st.lists(st.one_of(fresh, fresh, repeat), min_size=1, max_size=9)
sizes = st.lists(st.integers(1, 4), min_size=1, max_size=4)  # batch sizes, cycled


def body_of(job_id: str, updated: Any, cost: int, task_status: str) -> dict[str, Any]:
    payload = factories.job(job_id, tasks=2, val_errors=1, cost=cost)
    if updated is None:
        del payload["updated_at"]
    else:
        at = "9999-12-31T23:59:59Z" if updated == "far" else stamp(T0 + updated * MINUTE)
        payload["updated_at"] = at
    payload["tasks"][0]["status"] = task_status
    return payload


def arrivals(prefix: str, drawn: list[tuple]) -> list[tuple[dict[str, Any], datetime]]:
    out: list[tuple[dict[str, Any], datetime]] = []
    for step in drawn:
        if step[0] == "new":
            _, job, updated, cost, task_status, minute = step
            out.append(
                (body_of(f"{prefix}-{job}", updated, cost, task_status), T0 + minute * MINUTE)
            )
        elif out:
            _, index, minute = step
            out.append((out[index % len(out)][0], T0 + minute * MINUTE))
    return out


def forget(sessions: sessionmaker[Session], prefix: str) -> None:
    """Drop an example's jobs, so each example's rebuild replays only its own snapshots."""
    with sessions.begin() as session:
        for table in DERIVED:
            session.execute(delete(table).where(table.c.job_id.like(f"{prefix}-%")))


def test_any_arrival_order_rebuilds_identical(sessions: sessionmaker[Session]) -> None:
    backend = sessions.kw["bind"].dialect.name

    @settings(
        max_examples=60 if backend == "sqlite" else 20,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        derandomize=True,
    )
    @given(steps, sizes)
    def run(drawn: list[tuple], batch_sizes: list[int]) -> None:
        prefix = f"ord-{uuid.uuid4().hex[:12]}"
        sequence = arrivals(prefix, drawn)
        start, turn = 0, 0
        while start < len(sequence):
            size = batch_sizes[turn % len(batch_sizes)]
            chunk = sequence[start : start + size]
            archive_batch(sessions, [Entry(payload, at) for payload, at in chunk])
            start, turn = start + size, turn + 1
        try:
            assert_rebuilds_identical(sessions)
            for job in (0, 1):
                assert_history_in_order(sessions, f"{prefix}-{job}")
        finally:
            forget(sessions, prefix)

    run()
