"""Database faults under the real daemon: the database unreachable for a while, and the
archiver's sessions killed mid-pass. The daemon must survive, be back to full passes within two
intervals of the database's return, and leave the archive a clean run leaves (no partial job);
``sync_runs``/``sync_errors`` must tell the outage afterwards.

The daemon (``archiver run`` in a subprocess) reaches PostgreSQL or MariaDB through
``tests/tcp_proxy.py``: cutting the proxy refuses new connections and kills the open ones, which
is what a database restart or a network cut looks like from the archiver, without stopping the
shared servers. Sessions are killed with ``pg_terminate_backend`` / ``KILL``, only the
archiver's own (its ``application_name`` on PostgreSQL, its per-test database on MariaDB).

SQLite is not applicable: it is a library inside the archiver's process, with no connection to
lose and no server to go away; its failure is the process dying, which ``test_crash.py`` covers.

CI runs an 8 s outage and 2 kills; ``ARCHIVER_LONG_SUITES=1`` runs a 60 s outage and 10 kills.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from archive_dump import (
    ARCHIVE_TABLES,
    OBSERVATION_TIMES,
    Dump,
    TableDump,
    dump,
    first_difference,
)
from daemon_harness import LONG, RunningDaemon
from figures import record_figures
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine, make_url
from tcp_proxy import TcpProxy

from archiver import db
from archiver.api.client import ApiClient
from archiver.audit.verify import verify
from archiver.config import Settings
from archiver.models import Job, SyncError, SyncRun
from archiver.polling import tracking
from archiver.polling.sync import SyncPass
from archiver.sim.simulator import Faults, SimServer, Simulator

OUTAGE_SECONDS = 60.0 if LONG else 8.0
KILLS = 10 if LONG else 2
JOBS_N = 200 if LONG else 60
INTERVAL = 2.0


def archive_of(engine: Engine) -> Dump:
    """The archive's rows, without the times at which the archiver saw things."""
    out: Dump = {}
    for name, table in dump(engine, tables=ARCHIVE_TABLES).items():
        keep = [i for i, c in enumerate(table.columns) if c not in OBSERVATION_TIMES]
        rows = tuple(tuple(row[i] for i in keep) for row in table.rows)
        out[name] = TableDump(tuple(table.columns[i] for i in keep), tuple(sorted(rows, key=str)))
    return out


def clean_archive(sim: Simulator, api_url: str, tmp_path: Path) -> Dump:
    """What one undisturbed pass over every job leaves (SQLite: the parity suite shows the three
    databases keep the same archive)."""
    url = f"sqlite:///{tmp_path / 'clean.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    with sessions.begin() as session:
        tracking.track(session, sim.job_ids(), datetime.now(UTC))
    settings = Settings(
        api_key=sim.api_key, api_url=api_url, database_url=url, max_retries=0, rate_limit=0.0
    )
    with ApiClient(settings) as client:
        sync = SyncPass.from_settings(settings, sessions, client)
        assert sync.run(everything=True).counts["new"] == JOBS_N
    try:
        return archive_of(engine)
    finally:
        engine.dispose()


@dataclass
class Setup:
    backend: str
    url: str  # direct, for the test's own checks
    sim: Simulator
    server: SimServer
    engine: Engine

    @property
    def api_url(self) -> str:
        return self.server.url

    def requests(self) -> int:
        return self.server.request_count


@pytest.fixture
def setup(empty_db_url: str, tmp_path: Path) -> Iterator[Setup]:
    backend = make_url(empty_db_url).get_backend_name()
    backend = "mariadb" if backend == "mysql" else backend
    if backend == "sqlite":
        pytest.skip("SQLite is embedded: no server to lose (the crash suite covers its faults)")
    # a frozen clock: every pass sees the same payloads, so the archive must equal one clean pass
    sim = Simulator(seed=33, jobs=JOBS_N, tasks=(2, 5), clock=lambda: 30.0, cache_jobs=JOBS_N)
    sim.faults = Faults(latency=0.02)  # a pass lasts long enough to be cut in the middle
    db.upgrade(empty_db_url)
    engine = db.make_engine(empty_db_url)
    with db.session_factory(engine).begin() as session:
        tracking.track(session, sim.job_ids(), datetime.now(UTC))
    with sim.serve() as server:
        yield Setup(backend, empty_db_url, sim, server, engine)
    engine.dispose()


def proxied(url: str, port: int, tag: str) -> str:
    parsed = make_url(url)
    parsed = parsed.set(host="127.0.0.1", port=port)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.update_query_dict({"application_name": tag})
    return parsed.render_as_string(hide_password=False)


def kill_sessions(setup: Setup, tag: str) -> int:
    """Kill every session the archiver has open on its database; how many there were."""
    with setup.engine.connect() as conn:
        if setup.backend == "postgresql":
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :tag"
                    ),
                    {"tag": tag},
                ).all()
            )
        name = make_url(setup.url).database
        ids = conn.scalars(
            text(
                "SELECT id FROM information_schema.processlist "
                "WHERE db = :name AND id <> CONNECTION_ID()"
            ),
            {"name": name},
        ).all()
        for session_id in ids:
            try:
                conn.execute(text(f"KILL {int(session_id)}"))
            except Exception as exc:  # it may have ended meanwhile
                if "Unknown thread id" not in str(exc):
                    raise
        return len(ids)


def check_archive(setup: Setup, tmp_path: Path) -> None:
    expected = clean_archive(setup.sim, setup.api_url, tmp_path)
    got = archive_of(setup.engine)
    assert got == expected, first_difference(expected, got, ("clean run", "faulted run"))
    with setup.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Job)) == JOBS_N
    with db.session_factory(setup.engine)() as session:  # every chain whole through the faults
        report = verify(session)
    assert report.ok and report.jobs == JOBS_N, [b.line() for b in report.breaks[:5]]


def test_database_outage_is_survived_and_recovered_within_two_intervals(
    setup: Setup, tmp_path: Path
) -> None:
    tag = f"archiver-{uuid.uuid4().hex[:8]}"
    url = make_url(setup.url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 0) as proxy:
        via = proxied(setup.url, proxy.port, tag)
        with RunningDaemon(via, setup.api_url, setup.sim.api_key, interval=INTERVAL) as daemon:
            daemon.wait_for(lambda: setup.requests() >= JOBS_N // 3, 30, "a third of a pass")
            proxy.cut()  # mid-pass: the sessions die under the jobs being written
            cut_at = time.monotonic()
            while time.monotonic() - cut_at < OUTAGE_SECONDS:
                assert daemon.proc.poll() is None, daemon.tail()
                time.sleep(0.2)
            proxy.restore()
            restored_at = time.monotonic()
            failed = daemon.failures(since=cut_at)
            back = daemon.full_pass(JOBS_N, restored_at, timeout=4 * INTERVAL + 20)
            # from the database's return to the start of the first full, successful pass (its
            # line comes at its end: a 200-job pass takes seconds of its own)
            recovery = back.at - back.doc["seconds"] - restored_at
            completed = back.at - restored_at
            first_back = daemon.passes(restored_at)[0]
            assert daemon.proc.poll() is None
            assert daemon.stop() == 0, daemon.tail()
    # every interval of the outage tried a pass, failed it and said why
    assert len(failed) >= int(OUTAGE_SECONDS / INTERVAL) - 1, daemon.tail()
    assert all("pass failed" in e.doc["msg"] for e in failed)
    assert first_back is back  # the first pass after the database's return was a full one
    assert recovery <= 2 * INTERVAL, (
        f"back to full passes {recovery:.1f}s after the database; "
        f"passes since: {[e.doc for e in daemon.passes(restored_at)]}"
    )
    check_archive(setup, tmp_path)
    with setup.engine.connect() as conn:
        unfinished = conn.scalar(
            select(func.count()).select_from(SyncRun).where(SyncRun.finished_at.is_(None))
        )
        errors = conn.execute(
            select(SyncError.reason, SyncError.message, SyncError.workflow_id)
        ).all()
    assert unfinished == 0  # the pass the outage interrupted is closed, not left open
    outage = [e for e in errors if e.reason == "database"]
    assert any("database unreachable" in e.message for e in outage), errors
    assert all(e.workflow_id is None for e in outage)
    record_figures(
        "db_faults",
        backend=setup.backend,
        runs=1,
        faults=1,
        outage_s=OUTAGE_SECONDS,
        failed_passes=len(failed),
        recovery_s=round(recovery, 2),
        recovered_pass_done_s=round(completed, 2),
        interval_s=INTERVAL,
        rows_lost=0,
    )


def test_sessions_killed_mid_pass_leave_no_partial_job(setup: Setup, tmp_path: Path) -> None:
    tag = f"archiver-{uuid.uuid4().hex[:8]}"
    rng = random.Random(5)
    url = make_url(setup.url)
    killed = 0
    with TcpProxy(url.host or "127.0.0.1", url.port or 0) as proxy:
        via = proxied(setup.url, proxy.port, tag)
        with RunningDaemon(via, setup.api_url, setup.sim.api_key, interval=INTERVAL) as daemon:
            for _ in range(KILLS):
                target = setup.requests() + rng.randint(5, JOBS_N // 2)
                # requests only move during a pass: this is mid-pass
                daemon.wait_for(lambda t=target: setup.requests() >= t, 30, "requests")
                killed += kill_sessions(setup, tag)
            last_kill = time.monotonic()
            back = daemon.full_pass(JOBS_N, last_kill, timeout=4 * INTERVAL + 20)
            recovery = back.at - last_kill
            failed = daemon.failures()
            assert daemon.stop() == 0, daemon.tail()
    assert killed >= KILLS  # each kill found the archiver's sessions
    assert failed, "no pass noticed its sessions being killed"
    # the pass that began before the last kill may end afterwards: allow its length too
    assert recovery <= 2 * INTERVAL + max(e.doc["seconds"] for e in daemon.passes()), recovery
    check_archive(setup, tmp_path)
    record_figures(
        "db_faults",
        backend=setup.backend,
        runs=1,
        faults=KILLS,
        sessions_killed=killed,
        failed_passes=len(failed),
        recovery_s=round(recovery, 2),
        rows_lost=0,
    )


def test_a_database_that_stops_answering_is_cut_loose(setup: Setup, tmp_path: Path) -> None:
    """The path goes silent without closing anything (a frozen server or proxy, a partition):
    the statements in flight would wait for ever. Past its lease the daemon cuts them, the pass
    fails, and once a path works again full passes resume; the old connections stay silent."""
    tag = f"archiver-{uuid.uuid4().hex[:8]}"
    lease = 4.0
    url = make_url(setup.url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 0) as proxy:
        via = proxied(setup.url, proxy.port, tag)
        extra = ("--lease-seconds", str(lease))
        with RunningDaemon(
            via, setup.api_url, setup.sim.api_key, interval=INTERVAL, extra=extra
        ) as daemon:
            daemon.wait_for(lambda: setup.requests() >= JOBS_N // 3, 30, "a third of a pass")
            proxy.freeze()
            frozen_at = time.monotonic()
            # the stalled pass fails on its own, while the old connections are still silent
            failed = daemon.wait_for(
                lambda: daemon.failures(frozen_at), lease + 15, "the stalled pass to fail"
            )
            failed_after = failed[0].at - frozen_at
            cut = [e for e in daemon.snapshot() if e.doc.get("event") == "db_stalled"]
            proxy.restore()  # a new path; the frozen connections stay frozen
            restored_at = time.monotonic()
            back = daemon.full_pass(JOBS_N, restored_at, timeout=4 * INTERVAL + 20)
            recovery = back.at - back.doc["seconds"] - restored_at
            assert daemon.stop() == 0, daemon.tail()
    assert cut, daemon.tail()  # the watchdog did it, and said so
    assert "stopped answering" in cut[0].doc["msg"]
    assert failed_after <= lease + 1 + 10 + 2  # lease, check period, connect timeout, slack
    assert recovery <= 2 * INTERVAL, recovery
    check_archive(setup, tmp_path)
    record_figures(
        "db_faults",
        backend=setup.backend,
        runs=1,
        faults=1,
        stalled_connections_cut=len(cut),
        stalled_pass_failed_after_s=round(failed_after, 2),
        recovery_s=round(recovery, 2),
        rows_lost=0,
    )
