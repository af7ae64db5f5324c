"""The daemon: passes driven directly (no sleeps), leases, outages, health, metrics, signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from http_helpers import ScriptedServer, echo_job, error
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from tcp_proxy import TcpProxy

from archiver import db
from archiver.api.client import ApiClient
from archiver.config import Settings
from archiver.errors import ConfigError
from archiver.models import Job, JobVersion, SyncError, TrackedJob
from archiver.polling import leases, tracking
from archiver.polling.daemon import Daemon
from archiver.polling.sync import SyncPass
from archiver.sim.simulator import Faults, Simulator

pytestmark = (
    pytest.mark.integration
)  # the daemon against real servers and databases, and in subprocesses


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def daemon_settings(db_url: str, api_url: str, key: str = "sim-key", **kw: object) -> Settings:
    values: dict = {
        "api_key": key,
        "api_url": api_url,
        "database_url": db_url,
        "max_retries": 0,
        "request_deadline": 5.0,
        "read_timeout": 5.0,
        "connect_timeout": 2.0,
        "poll_interval": 0.001,  # due again at once: passes can follow each other without sleeps
        "poll_jitter": 0.0,
        "rate_limit": 0.0,
        "run_interval": 60.0,
    }
    values.update(kw)
    return Settings(**values)


def sample(daemon: Daemon, name: str, **labels: str) -> float:
    return daemon.metrics.registry.get_sample_value(name, labels) or 0.0


def track(sessions: sessionmaker[Session], pairs: list[tuple[str, str]]) -> None:
    with sessions.begin() as session:
        tracking.track(session, pairs, datetime.now(UTC))


@pytest.fixture
def simulated() -> Iterator[tuple[Simulator, str]]:
    clock = Clock()
    sim = Simulator(seed=4, jobs=6, tasks=(2, 4), clock=clock)
    with sim.serve() as server:
        yield sim, server.url


@pytest.fixture
def daemon_factory() -> Iterator:
    made: list[Daemon] = []

    def make(settings: Settings) -> Daemon:
        daemon = Daemon(settings)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.client.close()
        daemon.engine.dispose()


def test_pass_archives_reports_metrics_and_releases_leases(
    db_url: str, simulated: tuple[Simulator, str], daemon_factory, sessions: sessionmaker
) -> None:
    sim, url = simulated
    daemon = daemon_factory(daemon_settings(db_url, url))
    track(sessions, sim.job_ids())
    assert daemon.health.problems(now=time.time()) == []  # not failing before the first pass
    summary = daemon.pass_once()
    assert summary is not None and summary.counts["new"] == 6
    assert daemon.health.problems() == []
    assert sample(daemon, "archiver_jobs_total", outcome="new") == 6
    assert sample(daemon, "archiver_api_requests_total", status="200") == 6
    assert sample(daemon, "archiver_passes_total", result="ok") == 1
    assert sample(daemon, "archiver_tracked_jobs", state="active") == 6
    assert sample(daemon, "archiver_last_successful_pass_timestamp_seconds") > 0
    with sessions() as session:
        rows = session.execute(
            select(TrackedJob.lease_owner, TrackedJob.lease_expires_at, TrackedJob.claim_token)
        ).all()
    assert {tuple(r) for r in rows} == {(None, None, 1)}
    assert daemon.pass_once().due == 6  # due again (tiny poll interval): claimed again
    with sessions() as session:
        assert set(session.scalars(select(TrackedJob.claim_token))) == {2}


def test_a_lease_lost_inside_a_batch_keeps_only_that_job_out(
    sessions: sessionmaker[Session], db_url: str
) -> None:
    """The pass archives what its threads fetched in one transaction: a job whose lease another
    worker took meanwhile is left out of it (written nothing, its lease untouched), the others
    go in with their tracking rows."""
    with ScriptedServer() as server:
        server.always(echo_job)
        track(sessions, [("w", "a"), ("w", "b"), ("w", "c")])
        now = datetime.now(UTC)
        with sessions.begin() as session:
            held = leases.claim(session, "worker-A", now, 10, lease_seconds=600)
        with sessions.begin() as session:  # worker B takes b over (an expired lease, say)
            session.execute(
                update(TrackedJob)
                .where(TrackedJob.job_id == "b")
                .values(lease_owner="worker-B", claim_token=TrackedJob.claim_token + 1)
            )
        settings = daemon_settings(db_url, server.url, concurrency=3)
        sync = SyncPass.from_settings(settings, sessions, ApiClient(settings))
        outcomes: dict[str, str] = {}
        summary = sync.run(claims=held, on_job=lambda o: outcomes.update({o.job_id: o.outcome}))
    assert outcomes == {"a": "new", "b": "lost", "c": "new"}
    assert (summary.counts["new"], summary.counts["lost"]) == (2, 1)
    with sessions() as session:
        assert sorted(session.scalars(select(Job.job_id))) == ["a", "c"]
        rows = {r.job_id: r for r in session.scalars(select(TrackedJob))}
    assert rows["b"].lease_owner == "worker-B" and rows["b"].last_polled_at is None
    assert [rows[j].lease_owner for j in ("a", "c")] == [None, None]
    assert all(rows[j].last_polled_at is not None for j in ("a", "c"))


def test_health_fails_when_passes_stop_succeeding(
    db_url: str, simulated: tuple[Simulator, str], daemon_factory
) -> None:
    _, url = simulated
    daemon = daemon_factory(daemon_settings(db_url, url, run_interval=10.0))
    daemon.pass_once()
    status, body = daemon.health.report()
    assert status == 200 and body["status"] == "ok"
    later = time.time() + 31
    assert any("more than 3 intervals" in p for p in daemon.health.problems(now=later))


def test_a_stalled_worker_whose_lease_was_taken_writes_nothing(
    sessions: sessionmaker[Session], db_url: str
) -> None:
    with ScriptedServer() as server:
        server.always(echo_job)
        track(sessions, [("w", "a"), ("w", "b")])
        now = datetime.now(UTC)
        with sessions.begin() as session:  # A's lease is already over when B claims
            stalled = leases.claim(session, "worker-A", now, 10, lease_seconds=-1)
        with sessions.begin() as session:
            taken = leases.claim(session, "worker-B", now, 10, lease_seconds=600)
        assert [c.token for c in stalled] == [1, 1] and [c.token for c in taken] == [2, 2]
        settings = daemon_settings(db_url, server.url)
        sync = SyncPass.from_settings(settings, sessions, ApiClient(settings))
        late = sync.run(claims=stalled[:1])
        assert late.counts["lost"] == 1
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 0
        server.always(error(503, "unavailable", "down"))
        failed_late = sync.run(claims=stalled[1:])
        assert failed_late.counts["lost"] == 1
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(SyncError)) == 0
            row = tracking.load(session, "w", "b")
        assert (row["lease_owner"], row["consecutive_failures"]) == ("worker-B", 0)
        server.always(echo_job)
        assert sync.run(claims=taken).counts["new"] == 2
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 2
        assert set(session.scalars(select(TrackedJob.lease_owner))) == {None}


def test_claims_skip_live_leases_and_take_expired_ones(sessions: sessionmaker[Session]) -> None:
    track(sessions, [("w", str(i)) for i in range(5)])
    now = datetime.now(UTC)
    with sessions.begin() as session:
        first = leases.claim(session, "A", now, 3, 600)
    with sessions.begin() as session:
        second = leases.claim(session, "B", now, 10, 600)
    assert {c.job_id for c in first}.isdisjoint({c.job_id for c in second})
    assert len(first) + len(second) == 5
    with sessions.begin() as session:
        assert leases.claim(session, "C", now, 10, 600) == []
        assert leases.release(session, "A") == 3
    with sessions.begin() as session:
        assert {c.job_id for c in leases.claim(session, "C", now, 10, 600)} == {
            c.job_id for c in first
        }


def test_rejected_key_pauses_polling_and_resumes(
    db_url: str, simulated: tuple[Simulator, str], daemon_factory, sessions: sessionmaker
) -> None:
    sim, url = simulated
    daemon = daemon_factory(daemon_settings(db_url, url))
    track(sessions, sim.job_ids())
    sim.api_key = "rotated-by-the-provider"
    first = daemon.pass_once()
    assert first is not None and first.auth_error
    problems = daemon.health.problems()
    assert any("API key rejected" in p for p in problems)
    assert sample(daemon, "archiver_api_key_rejected") == 1
    before = sample(daemon, "archiver_api_requests_total", status="403")
    daemon.pass_once()  # paused: probes with exactly one request
    assert sample(daemon, "archiver_api_requests_total", status="403") == before + 1
    sim.api_key = "sim-key"
    resumed = daemon.pass_once()  # one probe job, then the rest at full concurrency
    assert resumed is not None and resumed.auth_error is None and resumed.counts["new"] == 5
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 6
    assert daemon.health.problems() == []
    assert sample(daemon, "archiver_api_key_rejected") == 0
    with sessions() as session:  # the rejected passes did not count against the jobs
        assert set(session.scalars(select(TrackedJob.consecutive_failures))) == {0}


def test_api_outage_is_survived_and_recovered(
    db_url: str, daemon_factory, sessions: sessionmaker
) -> None:
    sim = Simulator(seed=4, jobs=5, tasks=(2, 3), clock=Clock())
    server = sim.serve()
    port = server.port
    daemon = daemon_factory(daemon_settings(db_url, server.url))
    track(sessions, sim.job_ids())
    server.stop()
    down = daemon.pass_once()
    assert down is not None and down.failed == 5
    assert sample(daemon, "archiver_job_failures_total", reason="transport") == 5
    with sim.serve(port=port):
        up = daemon.pass_once()
    assert up is not None and up.counts["new"] == 5 and up.failed == 0
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 5
        assert set(session.scalars(select(TrackedJob.consecutive_failures))) == {0}


def test_unreachable_api_is_logged_once_and_counted_against_no_job(
    db_url: str, daemon_factory, sessions: sessionmaker, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 16, item 5: like a rejected key, one cause in the log, no job penalized."""
    sim = Simulator(seed=4, jobs=8, tasks=(2, 3), clock=Clock())
    server = sim.serve()
    port, url = server.port, server.url
    server.stop()
    daemon = daemon_factory(daemon_settings(db_url, url, concurrency=8))
    track(sessions, sim.job_ids())
    columns = (TrackedJob.next_poll_at, TrackedJob.consecutive_failures, TrackedJob.state)
    with sessions() as session:
        before = session.execute(select(*columns).order_by(TrackedJob.id)).all()
    with caplog.at_level("INFO"):
        for _ in range(2):
            down = daemon.pass_once()
            assert down is not None and down.api_unusable == "connection refused"
            assert (down.failed, down.due) == (5, 5)  # the other claims are given back
    said = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR")]
    assert [getattr(r, "event", None) for r in said] == ["api_unusable"]  # once, no job's line
    assert "PIXXEL_API_URL" in said[0].getMessage()
    assert any("API unreachable or wrong URL" in p for p in daemon.health.problems())
    with sessions() as session:
        assert session.execute(select(*columns).order_by(TrackedJob.id)).all() == before
    with sim.serve(port=port), caplog.at_level("INFO"):
        up = daemon.pass_once()
    assert up is not None and up.counts["new"] == 8 and up.api_unusable is None
    assert daemon.health.problems() == []
    assert any(getattr(r, "event", None) == "api_usable" for r in caplog.records)


def test_database_outage_fails_health_and_recovers(
    empty_db_url: str, simulated: tuple[Simulator, str], daemon_factory
) -> None:
    url = make_url(empty_db_url)
    if url.get_backend_name() == "sqlite":
        pytest.skip("an embedded database has no outage to simulate")
    sim, api_url = simulated
    db.upgrade(empty_db_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        daemon = daemon_factory(daemon_settings(proxied, api_url))
        daemon.db_check_cache_seconds = 0
        track(daemon.sessions, sim.job_ids()[:3])
        assert daemon.pass_once().counts["new"] == 3
        proxy.cut()  # sessions killed, new connections refused
        assert daemon.pass_once() is None
        assert any(p.startswith("database:") for p in daemon.health.problems())
        assert sample(daemon, "archiver_passes_total", result="failed") == 1
        proxy.restore()
        back = daemon.pass_once()
        assert back is not None and back.failed == 0 and back.due == 3
        assert daemon.health.problems() == []
    with db.session_factory(db.make_engine(empty_db_url))() as session:
        versions = session.scalar(
            select(func.count()).select_from(JobVersion).where(JobVersion.valid_to.is_(None))
        )
        assert versions == 3  # one open version per job: nothing half-written or duplicated


def test_metric_series_do_not_grow_with_tracked_jobs(tmp_path: Path, daemon_factory) -> None:
    counts = []
    with ScriptedServer() as server:
        server.always(echo_job)
        for n in (10, 1000):
            url = f"sqlite:///{tmp_path / f'{n}.db'}"
            db.upgrade(url)
            daemon = daemon_factory(daemon_settings(url, server.url, concurrency=8))
            track(daemon.sessions, [("w", f"job-{i}") for i in range(n)])
            assert daemon.pass_once().counts["new"] == n
            counts.append(sum(len(family.samples) for family in daemon.metrics.registry.collect()))
    assert counts[0] == counts[1]


def test_second_daemon_on_one_sqlite_file_refuses(tmp_path: Path, daemon_factory) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    db.upgrade(url)
    first = daemon_factory(daemon_settings(url, "http://127.0.0.1:9"))
    first.lock_sqlite()
    second = daemon_factory(daemon_settings(url, "http://127.0.0.1:9"))
    with pytest.raises(ConfigError, match="SQLite allows one daemon per file"):
        second.lock_sqlite()


def test_sigterm_mid_pass_exits_zero_and_leaves_a_consistent_database(tmp_path: Path) -> None:
    db_path = tmp_path / "run.db"
    url = f"sqlite:///{db_path}"
    db.upgrade(url)
    sim = Simulator(seed=9, jobs=30, tasks=(2, 3), faults=Faults(latency=0.3))
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    track(sessions, sim.job_ids())
    with sim.serve() as server:
        env = {
            **{k: v for k, v in os.environ.items() if k.startswith(("PATH", "HOME", "LANG"))},
            "ARCHIVER_DATABASE_URL": url,
            "PIXXEL_API_URL": server.url,
            "PIXXEL_API_KEY": sim.api_key,
        }
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "archiver",
                "run",
                "--concurrency",
                "2",
                "--rate-limit",
                "0",
                "--request-deadline",
                "3",
                "--max-retries",
                "0",
                "--log-format",
                "json",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while server.request_count < 4 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        finally:
            proc.kill()
        took = time.monotonic() - sent
    assert proc.returncode == 0, err
    assert took < 2 * 3 + 1.5
    assert '"msg": "stopped cleanly"' in err
    with sessions() as session:
        archived = session.scalar(select(func.count()).select_from(Job))
        open_versions = session.scalar(
            select(func.count()).select_from(JobVersion).where(JobVersion.valid_to.is_(None))
        )
        held = session.scalar(
            select(func.count()).select_from(TrackedJob).where(TrackedJob.lease_owner.is_not(None))
        )
        still_due = session.scalar(
            select(func.count()).select_from(TrackedJob).where(TrackedJob.last_polled_at.is_(None))
        )
    engine.dispose()
    assert 1 <= archived < 30
    assert open_versions == archived
    assert held == 0
    assert still_due == 30 - archived


def test_leases_left_by_a_failed_pass_do_not_hide_jobs_from_the_next(
    db_url: str, simulated: tuple[Simulator, str], daemon_factory, sessions: sessionmaker
) -> None:
    """Regression (issue 7, database faults): a pass the database failed could not release its
    leases; the next pass skipped those jobs until they expired, minutes later."""
    sim, url = simulated
    daemon = daemon_factory(daemon_settings(db_url, url))
    track(sessions, sim.job_ids())
    with sessions.begin() as session:  # what a pass cut off by the database leaves behind
        held = leases.claim(session, daemon.owner, datetime.now(UTC), 4, lease_seconds=600)
    assert len(held) == 4
    summary = daemon.pass_once()
    assert summary is not None and summary.due == 6 and summary.counts["new"] == 6


def test_an_outage_is_written_down_once_the_database_is_back(
    empty_db_url: str, simulated: tuple[Simulator, str], daemon_factory
) -> None:
    url = make_url(empty_db_url)
    if url.get_backend_name() == "sqlite":
        pytest.skip("an embedded database has no outage to simulate")
    sim, api_url = simulated
    db.upgrade(empty_db_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as proxy:
        proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        daemon = daemon_factory(daemon_settings(proxied, api_url))
        track(daemon.sessions, sim.job_ids())
        proxy.cut()
        assert daemon.pass_once() is None and daemon.pass_once() is None
        proxy.restore()
        back = daemon.pass_once()
        assert back is not None and back.counts["new"] == 6
    engine = db.make_engine(empty_db_url)
    with db.session_factory(engine)() as session:
        rows = session.execute(
            select(SyncError.sync_run_id, SyncError.reason, SyncError.message, SyncError.job_id)
        ).all()
    engine.dispose()
    assert len(rows) == 1
    run_id, reason, message, job_id = rows[0]
    assert (run_id, reason, job_id) == (back.run_id, "database", None)
    assert "database unreachable for" in message and "2 passes failed" in message
    assert "OperationalError" in message


def test_a_mysql_handshake_that_goes_silent_fails_instead_of_hanging() -> None:
    """PyMySQL waits for the server's greeting with no timeout once TCP is connected; a path that
    goes silent right then would hang a pass where the stall watchdog cannot see. The daemon's
    engine bounds it at twice the lease."""
    import socket
    import time as _time

    from sqlalchemy.exc import OperationalError

    from archiver import db
    from archiver.config import Settings
    from archiver.polling.daemon import _stall_bounds

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (the kernel completes TCP) and never says a word
    try:
        port = silent.getsockname()[1]
        url = f"mysql://root@127.0.0.1:{port}/test"
        settings = Settings(database_url=url, lease_seconds=1.0)
        assert _stall_bounds(Settings(database_url="sqlite:///x.db")) == {}
        engine = db.make_engine(url, **_stall_bounds(settings))
        started = _time.monotonic()
        try:
            with pytest.raises(OperationalError, match=r"timed out|Lost connection"):
                engine.connect()
        finally:
            engine.dispose()
        assert _time.monotonic() - started < 2 * 1.0 + 3
    finally:
        silent.close()
