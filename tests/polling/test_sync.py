"""Sync passes against real HTTP servers on 127.0.0.1: the simulator and a scripted server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from http_helpers import Reply, ScriptedServer, echo_job, error
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.api.client import ApiClient
from archiver.config import Settings
from archiver.models import (
    IngestProblem,
    Job,
    JobChange,
    SyncError,
    SyncRun,
    Task,
    TrackedJob,
)
from archiver.polling import tracking
from archiver.polling.sync import SyncPass
from archiver.sim.simulator import Faults, Simulator

pytestmark = (
    pytest.mark.integration
)  # real HTTP servers (the simulator, a scripted server) and subprocesses


class Clock:
    """A hand-moved clock for the simulator: lifecycles advance without sleeping."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def settings_for(url: str, key: str = "sim-key", **overrides: object) -> Settings:
    values: dict = {
        "api_key": key,
        "api_url": url,
        "max_retries": 0,
        "request_deadline": 5.0,
        "read_timeout": 5.0,
        "poll_interval": 60.0,
        "poll_jitter": 0.0,
        "rate_limit": 0.0,
    }
    values.update(overrides)
    return Settings(**values)


def make_pass(sessions: sessionmaker[Session], settings: Settings, now: datetime) -> SyncPass:
    return SyncPass.from_settings(settings, sessions, ApiClient(settings), now=lambda: now)


def count(sessions: sessionmaker[Session], model: type, *where: object) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def simulator(clock: Clock) -> Iterator[tuple[Simulator, str]]:
    sim = Simulator(seed=3, jobs=6, tasks=(2, 5), clock=clock, time_scale=60.0)
    with sim.serve() as server:
        yield sim, server.url


T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)


def test_simulator_to_sync_to_sql(
    sessions: sessionmaker[Session], simulator: tuple[Simulator, str], clock: Clock
) -> None:
    sim, url = simulator
    settings = settings_for(url)
    with sessions.begin() as session:
        tracking.track(session, sim.job_ids(), T0)

    first = make_pass(sessions, settings, T0).run()
    assert (first.due, first.counts["new"], first.failed) == (6, 6, 0)
    with sessions() as session:
        archived = {(j.workflow_id, j.job_id): j for j in session.scalars(select(Job))}
    assert set(archived) == set(sim.job_ids())
    for (wf, job_id), job in archived.items():
        expected = sim.payload(wf, job_id, t=0.0)
        assert (job.status, job.cost) == (expected["status"], expected["cost"])
    assert count(sessions, Task) == sum(
        len(sim.payload(w, j, t=0.0)["tasks"]) for w, j in sim.job_ids()
    )

    again = make_pass(sessions, settings, T0).run()  # nothing due yet
    assert again.due == 0

    clock.t = 30.0  # half a simulated hour later: jobs are running or done
    later = make_pass(sessions, settings, T0 + timedelta(seconds=61)).run()
    assert later.due == 6 and later.counts["changed"] >= 1 and later.failed == 0
    assert count(sessions, JobChange, JobChange.observed_at > T0) > 0

    clock.t = sim.settle_time() + 1
    end = T0 + timedelta(seconds=200)
    final = make_pass(sessions, settings, end).run(everything=True)
    assert final.failed == 0
    with sessions() as session:
        for job in session.scalars(select(Job)):
            assert (
                job.is_terminal and job.status == sim.payload(job.workflow_id, job.job_id)["status"]
            )
        states = set(session.scalars(select(TrackedJob.state)))
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
    assert states == {"settling"}
    assert [r.jobs_total for r in runs] == [6, 0, 6, 6]
    assert runs[0].archived == 6 and runs[0].finished_at is not None


def test_rejected_key_stops_the_pass_at_once(
    sessions: sessionmaker[Session], simulator: tuple[Simulator, str]
) -> None:
    _, url = simulator
    many = [(f"wf-{i}", f"job-{i}") for i in range(40)]
    with sessions.begin() as session:
        tracking.track(session, many, T0)
    settings = settings_for(url, key="wrong-key", concurrency=2)
    summary = make_pass(sessions, settings, T0).run()
    assert summary.auth_error and "invalid_api_key" in summary.auth_error
    assert summary.counts["skipped"] >= 40 - 2 * 4 - 2  # at most the in-flight window was tried
    assert summary.failed <= 2
    assert count(sessions, Job) == 0
    # the key is at fault, not the jobs: their schedules and failure counts are untouched
    with sessions() as session:
        rows = session.execute(select(TrackedJob.consecutive_failures, TrackedJob.next_poll_at))
        assert {tuple(r) for r in rows} == {(0, T0)}


def test_untracked_jobs_get_no_requests(sessions: sessionmaker[Session]) -> None:
    with ScriptedServer() as server:
        server.always(echo_job)
        with sessions.begin() as session:
            tracking.track(session, [("w", "a"), ("w", "b"), ("w", "c")], T0)
            tracking.untrack(session, "w", "b")
        summary = make_pass(sessions, settings_for(server.url), T0).run(everything=True)
        paths = sorted(r.path for r in server.requests)
    assert summary.due == 2
    assert paths == ["/v0/workflows/w/jobs/a", "/v0/workflows/w/jobs/c"]


def test_repeated_404_pauses_the_job_and_tracking_resumes_it(
    sessions: sessionmaker[Session],
) -> None:
    with ScriptedServer() as server:
        server.always(error(404, "not_found", "no such job"))
        with sessions.begin() as session:
            tracking.track(session, [("w", "gone")], T0)
        settings = settings_for(server.url, pause_after=3)
        now = T0
        for _ in range(3):
            make_pass(sessions, settings, now).run()
            now += timedelta(days=1)
        with sessions() as session:
            row = tracking.load(session, "w", "gone")
        assert (row["state"], row["consecutive_failures"]) == ("paused", 3)
        assert "404" in row["last_error"] and "no such job" in row["last_error"]
        assert make_pass(sessions, settings, now).run().due == 0  # paused: not polled
        assert len(server.requests) == 3
        with sessions.begin() as session:
            assert tracking.track(session, [("w", "gone")], now) == 1
        assert make_pass(sessions, settings, now).run().due == 1
    assert count(sessions, SyncError, SyncError.http_status == 404) == 4


def test_failures_are_recorded_and_backed_off_while_others_archive(
    sessions: sessionmaker[Session],
) -> None:
    def answer(request):  # type: ignore[no-untyped-def]
        if request.path.endswith("/bad"):
            return error(503, "unavailable", "try later")
        if request.path.endswith("/html"):
            return Reply(200, "<html>oops</html>", headers={"Content-Type": "text/html"})
        return echo_job(request)

    with ScriptedServer() as server:
        server.always(answer)
        with sessions.begin() as session:
            tracking.track(session, [("w", "ok"), ("w", "bad"), ("w", "html")], T0)
        summary = make_pass(sessions, settings_for(server.url), T0).run()
    assert (summary.counts["new"], summary.failed) == (1, 2)
    with sessions() as session:
        bad = tracking.load(session, "w", "bad")
        errors = {
            (e.job_id, e.reason, e.http_status)
            for e in session.scalars(
                select(SyncError).where(SyncError.sync_run_id == summary.run_id)
            )
        }
    assert bad["next_poll_at"] == T0 + timedelta(seconds=60)
    assert bad["consecutive_failures"] == 1
    assert errors == {("bad", "server_error", 503), ("html", "invalid_response", 200)}
    assert count(sessions, Job) == 1


def test_simulator_faults_converge_to_a_clean_archive(
    sessions: sessionmaker[Session], clock: Clock
) -> None:
    faults = Faults(error_rate=0.2, malformed_rate=0.1, drop_rate=0.05)
    sim = Simulator(seed=5, jobs=8, tasks=(2, 4), clock=clock, faults=faults)
    clock.t = sim.settle_time() + 1
    with sim.serve() as server, sessions.begin() as session:
        tracking.track(session, sim.job_ids(), T0)
    with sim.serve() as server:
        settings = settings_for(server.url, max_retries=3, backoff_base=0.01, backoff_max=0.05)
        now = T0
        for _ in range(6):
            make_pass(sessions, settings, now).run(everything=True)
            now += timedelta(hours=1)
    with sessions() as session:
        for job in session.scalars(select(Job)):
            expected = sim.payload(job.workflow_id, job.job_id)
            assert (job.status, job.cost) == (expected["status"], expected["cost"])
    assert count(sessions, Job) == 8


def test_cli_sync_with_a_sentinel_key_leaks_it_nowhere(tmp_path: Path, clock: Clock) -> None:
    sentinel = "SENTINEL-KEY-7f2c9e"
    db_path = tmp_path / "a.db"
    env = {
        "PATH": "/usr/bin:/bin",
        "ARCHIVER_DATABASE_URL": f"sqlite:///{db_path}",
        "PIXXEL_API_KEY": sentinel,
        "HOME": str(tmp_path),
    }
    sim = Simulator(seed=1, jobs=3, tasks=(2, 3), api_key=sentinel, clock=clock)
    ids = tmp_path / "ids.csv"
    sim.write_ids_csv(ids)
    outputs = []

    def archiver(*args: str, key: str = sentinel) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "archiver", *args],
            env={**env, "PIXXEL_API_KEY": key},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        outputs.append(proc.stdout + proc.stderr)
        return proc

    with sim.serve() as server:
        env["PIXXEL_API_URL"] = server.url
        assert archiver("db", "upgrade").returncode == 0
        assert archiver("track", "--file", str(ids)).returncode == 0
        ok = archiver("sync")
        assert ok.returncode == 0, ok.stderr
        assert "archived 3 (new 3, changed 0)" in ok.stdout
        rejected = archiver("sync", "--all", key=sentinel + "-wrong")
        assert rejected.returncode == 1
        assert "the API rejected the key" in rejected.stderr
        assert "PIXXEL_API_KEY" in rejected.stderr
        listed = archiver("tracked", "--format", "json")
        assert [r["state"] for r in json.loads(listed.stdout)] == ["active"] * 3
    for output in outputs:
        assert sentinel not in output
        assert "Traceback" not in output
    for path in tmp_path.glob("a.db*"):
        assert sentinel.encode() not in path.read_bytes()


def test_a_pass_from_settings_takes_its_parts_from_them() -> None:
    settings = Settings(
        concurrency=3,
        rate_limit=4.0,
        poll_interval=90.0,
        pause_after=5,
        status_map={"archived": "succeeded"},
    )
    sync = SyncPass.from_settings(settings, sessionmaker(), ApiClient(settings), now=lambda: T0)
    assert (sync.concurrency, sync.limiter.interval) == (3, 0.25)
    assert sync.policy == tracking.PollingPolicy.from_settings(settings)
    assert sync.classifier.classify("archived") == "succeeded"
    assert sync.now() == T0


def test_building_a_pass_leaves_the_allocator_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tuning malloc is the process's choice (``archiver sync``, the daemon's start)."""
    from archiver.polling import malloc

    def refuse() -> bool:
        raise AssertionError("SyncPass tuned malloc")

    monkeypatch.setattr(malloc, "return_large_blocks", refuse)
    SyncPass.from_settings(Settings(), sessionmaker(), ApiClient(Settings()))


def test_sync_survives_an_absurd_retry_after(sessions: sessionmaker[Session]) -> None:
    """Review defect: an absurd Retry-After in a pass fails only its job, which is due again
    at the backoff maximum; the other job is archived."""
    with ScriptedServer() as server:
        server.always(
            lambda r: (
                Reply(429, {"error": {"code": "slow_down"}}, {"Retry-After": "1" + "0" * 12})
                if r.path.endswith("/a")
                else echo_job(r)
            )
        )
        with sessions.begin() as session:
            tracking.track(session, [("w", "a"), ("w", "b")], T0)
        settings = Settings(
            api_key="k", api_url=server.url, max_retries=0, rate_limit=0, poll_jitter=0.0
        )
        summary = make_pass(sessions, settings, T0).run()
    assert (summary.failed, summary.counts["new"]) == (1, 1)
    with sessions() as session:
        assert tracking.load(session, "w", "a")["next_poll_at"] == T0 + timedelta(hours=6)


def test_a_far_future_updated_at_does_not_keep_a_job_polled_for_ever(
    sessions: sessionmaker[Session],
) -> None:
    """Issue 14, item 2, through sync: after a payload dated year 9999, the real later payload
    (completed, cost 5000) still archives, and the job settles instead of being polled for ever."""
    real_now = datetime.now(UTC)  # the client stamps fetches with the wall clock

    def payload(updated_at: str, **fields: object) -> Reply:
        return Reply(200, {"id": "j", "workflow_id": "w", "updated_at": updated_at, **fields})

    def iso(at: datetime) -> str:
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")

    with ScriptedServer() as server:
        server.script(
            payload(iso(real_now - timedelta(minutes=10)), status="running", cost=10),
            payload("9999-12-31T23:59:59Z", status="running", cost=20),
            payload(iso(real_now), status="completed", cost=5000),
        )
        server.always(payload(iso(real_now), status="completed", cost=5000))
        settings = settings_for(server.url, settle_window=3600.0, settle_interval=600.0)
        with sessions.begin() as session:
            tracking.track(session, [("w", "j")], T0)
        outcomes = []
        for minutes in (0, 1, 2):
            summary = make_pass(sessions, settings, T0 + timedelta(minutes=minutes)).run(
                everything=True
            )
            outcomes.append({k: v for k, v in summary.counts.items() if v})
        assert outcomes == [{"new": 1}, {"changed": 1}, {"changed": 1}]
        with sessions() as session:
            job = session.scalars(select(Job)).one()
            assert (job.status, job.cost, job.is_terminal) == ("completed", 5000, True)
            assert tracking.load(session, "w", "j")["state"] == "settling"
        assert count(sessions, IngestProblem, IngestProblem.field == "updated_at") == 1
        end = T0 + timedelta(minutes=2, seconds=3601)
        assert make_pass(sessions, settings, end).run().due == 1
        with sessions() as session:
            assert tracking.load(session, "w", "j")["state"] == "settled"
        assert make_pass(sessions, settings, end + timedelta(days=1)).run().due == 0
        assert len(server.requests) == 4
