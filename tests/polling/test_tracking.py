"""Tracked jobs and the polling policy: files, states, due times, backoff, pausing, settling."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from archiver.api.client import _retry_after
from archiver.errors import NotFoundError, RateLimitedError, ServerError
from archiver.polling import tracking
from archiver.polling.tracking import PollingPolicy

NOW = datetime(2026, 10, 1, 12, tzinfo=UTC)


def policy(**overrides: float) -> PollingPolicy:
    values = {
        "interval": 60.0,
        "jitter": 0.0,
        "settle_window": 3600.0,
        "settle_interval": 600.0,
        "backoff_max": 1000.0,
        "pause_after": 3,
    }
    values.update(overrides)
    return PollingPolicy(**values, rng=random.Random(1))  # type: ignore[arg-type]


def test_track_file_with_header_comments_and_bad_lines() -> None:
    text = (
        "workflow_id,job_id\n"
        "w1,j1\n"
        "\n"
        "# a comment\n"
        "w1,j2,extra\n"
        "w2, j3 \n"
        ",j4\n"
        "w1,j1\n"
        "w5," + "x" * 300 + "\n"
    )
    result = tracking.read_track_file(text)
    assert result.pairs == [("w1", "j1"), ("w2", "j3")]
    assert result.errors == [
        "line 5: expected workflow_id,job_id, got 3 fields",
        "line 7: empty workflow_id",
        "line 9: job_id '" + "x" * 98 + "… is longer than 191 characters",
    ]


def test_track_file_without_header() -> None:
    assert tracking.read_track_file("w1,j1\nw1,j2\n").pairs == [("w1", "j1"), ("w1", "j2")]


def test_track_untrack_resume_and_due(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        assert tracking.track(session, [("w", "a"), ("w", "b"), ("w", "c")], NOW) == 3
        assert tracking.track(session, [("w", "a"), ("w", "d")], NOW) == 1  # a keeps its schedule
    with sessions.begin() as session:
        assert tracking.untrack(session, "w", "b")
        assert not tracking.untrack(session, "w", "nope")
        tracking.apply(session, "w", "c", {"state": "paused", "next_poll_at": None})
        tracking.apply(session, "w", "d", {"next_poll_at": NOW + timedelta(hours=1)})
    with sessions() as session:
        assert tracking.due_jobs(session, NOW) == [("w", "a")]
        assert tracking.due_jobs(session, NOW + timedelta(hours=2)) == [("w", "a"), ("w", "d")]
        assert sorted(tracking.due_jobs(session, NOW, everything=True)) == [
            ("w", "a"),
            ("w", "c"),
            ("w", "d"),
        ]
    with sessions.begin() as session:
        assert tracking.track(session, [("w", "b"), ("w", "c")], NOW) == 2  # resumed
    with sessions() as session:
        states = {r["job_id"]: r["state"] for r in tracking.list_tracked(session)}
        assert states == {"a": "active", "b": "active", "c": "active", "d": "active"}
        assert tracking.load(session, "w", "c")["next_poll_at"] == NOW


def test_success_schedules_next_poll_and_settles_terminal_jobs() -> None:
    p = policy()
    active = p.after_success({}, NOW, "running", False)
    assert (active["state"], active["next_poll_at"]) == ("active", NOW + timedelta(seconds=60))
    settling = p.after_success({"state": "active"}, NOW, "completed", True)
    assert settling["state"] == "settling"
    assert settling["terminal_since"] == NOW
    assert settling["next_poll_at"] == NOW + timedelta(seconds=600)
    later = NOW + timedelta(seconds=3599)
    still = p.after_success({"terminal_since": NOW}, later, "completed", True)
    assert still["state"] == "settling" and still["terminal_since"] == NOW
    done = p.after_success(
        {"terminal_since": NOW}, NOW + timedelta(seconds=3600), "completed", True
    )
    assert (done["state"], done["next_poll_at"]) == ("settled", None)
    revived = p.after_success({"terminal_since": NOW}, later, "running", False)
    assert (revived["state"], revived["terminal_since"]) == ("active", None)


def test_failures_back_off_exponentially_up_to_the_cap() -> None:
    p = policy()
    row: dict = {"state": "active", "consecutive_failures": 0}
    delays = []
    for _ in range(6):
        values = p.after_failure(row, NOW, ServerError("503"), "503 Service Unavailable")
        delays.append((values["next_poll_at"] - NOW).total_seconds())
        row.update(values)
    assert delays == [60, 120, 240, 480, 960, 1000]
    assert row["consecutive_failures"] == 6 and row["last_error"] == "503 Service Unavailable"
    assert row["state"] == "active"


def test_rate_limit_waits_at_least_retry_after() -> None:
    values = policy().after_failure(
        {"consecutive_failures": 0}, NOW, RateLimitedError("429", retry_after=900.0), "429"
    )
    assert values["next_poll_at"] == NOW + timedelta(seconds=900)


def test_repeated_not_found_pauses_with_reason() -> None:
    p = policy()
    row: dict = {"state": "active", "consecutive_failures": 0}
    for expected in ("active", "active", "paused"):
        row.update(p.after_failure(row, NOW, NotFoundError("404 Not Found"), "404 Not Found"))
        assert row.get("state", "active") == expected
    assert row["next_poll_at"] is None and row["last_error"] == "404 Not Found"


@pytest.mark.parametrize("jitter", [0.1, 0.5])
def test_jitter_stays_within_its_fraction(jitter: float) -> None:
    p = policy(jitter=jitter)
    for _ in range(200):
        delay = (p.after_success({}, NOW, "running", False)["next_poll_at"] - NOW).total_seconds()
        assert 60 * (1 - jitter) <= delay <= 60 * (1 + jitter)


@pytest.mark.parametrize("everything", [False, True])
def test_due_pages_visit_each_due_job_once_while_the_pass_reschedules_them(
    sessions: sessionmaker[Session], everything: bool
) -> None:
    """A pass pages through the due jobs (flat memory) while it moves each one into the future."""
    jobs = [("w", f"j{i}") for i in range(7)]
    with sessions.begin() as session:
        tracking.track(session, jobs, NOW)
        for i, (wf, jid) in enumerate(jobs):  # j6 most overdue ... j0 least; j3 not due at all
            due_at = NOW + timedelta(hours=1) if jid == "j3" else NOW - timedelta(minutes=i)
            tracking.apply(session, wf, jid, {"next_poll_at": due_at})
    with sessions() as session:
        expected = tracking.due_jobs(session, NOW, everything=everything)
        assert tracking.count_due(session, NOW, everything=everything) == len(expected)
    seen = []
    for wf, jid in tracking.due_pages(sessions, NOW, everything=everything, page=2):
        seen.append((wf, jid))
        with sessions.begin() as session:  # archived: next poll in an hour
            tracking.apply(session, wf, jid, {"next_poll_at": NOW + timedelta(hours=1)})
    assert seen == expected
    assert len(seen) == (7 if everything else 6)
    if not everything:
        assert seen[0] == ("w", "j6") and ("w", "j3") not in seen


def test_absurd_retry_after_cannot_overflow_the_schedule() -> None:
    """Review defect: an absurd Retry-After (400 digits, 10^12 s) or a 5,000th failure
    overflowed the schedule; the next poll is capped at the backoff maximum."""
    assert _retry_after("9" * 400) is None
    values = policy(backoff_max=6 * 3600.0).after_failure(
        {"consecutive_failures": 0}, NOW, RateLimitedError("429", retry_after=1e12), "429"
    )
    assert values["next_poll_at"] == NOW + timedelta(hours=6)
    many = policy(backoff_max=6 * 3600.0).after_failure(
        {"consecutive_failures": 5000}, NOW, RateLimitedError("x"), "x"
    )
    assert many["next_poll_at"] == NOW + timedelta(hours=6)


def test_untracked_during_a_fetch_stays_untracked() -> None:
    """Review defect: a job untracked while its fetch was under way must stay untracked."""
    values = policy().after_success({"state": "untracked"}, NOW, "running", False)
    assert "state" not in values and "next_poll_at" not in values
