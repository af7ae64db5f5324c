"""Load: many tracked jobs, pass after pass, under the real daemon (``archiver run``).

Pass time and the daemon's peak resident memory per pass must stay flat (no leak, no pass that
slows down as history grows), and ``archiver tracked`` and ``archiver report status`` must stay
responsive while the daemon writes. The figures are printed (``pytest -s``) and recorded (see
``tests/figures.py``).

CI runs 1,000 jobs x 5 passes on SQLite, the jobs frozen after the first pass (well under a
minute); ``ARCHIVER_LONG_SUITES=1`` runs 10,000 live jobs x 20 passes. ``ARCHIVER_LOAD_BACKEND``
(sqlite, postgresql or mariadb) picks the database of the long run; CI keeps to SQLite, the
embedded default, the one most users run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import fresh_database
from daemon_harness import LONG, RunningDaemon, archiver_env, reset_peak, rss_kib
from figures import record_figures

from archiver import db
from archiver.polling import tracking
from archiver.sim.simulator import Simulator

JOBS_N = 10_000 if LONG else 1_000
PASSES = 20 if LONG else 5
BACKEND = os.environ.get("ARCHIVER_LOAD_BACKEND", "sqlite") if LONG else "sqlite"
TIME_GROWTH = 2.0  # the last pass may take at most twice the median of the early ones
RSS_GROWTH_MB = 100 if LONG else 50  # and its peak may exceed theirs by at most this
COMMAND_LIMIT = 30.0 if LONG else 10.0  # seconds for `archiver tracked` / `report status`
# the long run's jobs live (time_scale 60: they run, complete and get re-priced, so history grows
# pass after pass); CI's stand still after the first pass, which keeps it under a minute
CLOCK = time.monotonic if LONG else (lambda: 30.0)
PROBE_EVERY = 10.0 if LONG else 6.0  # seconds between two runs of those commands


@pytest.fixture
def load_db(tmp_path: Path) -> Iterator[str]:
    with fresh_database(BACKEND, tmp_path) as url:
        yield url


def run_command(url: str, *args: str) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "archiver", *args],
        env=archiver_env(url, "http://127.0.0.1:9", "unused"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return took, done.stdout


def test_pass_time_and_memory_stay_flat_and_commands_stay_responsive(load_db: str) -> None:
    url = load_db
    db.upgrade(url)
    engine = db.make_engine(url)
    with db.session_factory(engine).begin() as session:
        sim = Simulator(seed=10, jobs=JOBS_N, tasks=(2, 4), cache_jobs=JOBS_N, clock=CLOCK)
        tracking.track(session, sim.job_ids(), datetime.now(UTC))
    engine.dispose()
    seconds: list[float] = []
    peaks_mb: list[float] = []
    rss_mb: list[float] = []
    commands: dict[str, list[float]] = {"tracked": [], "report status": []}
    with (
        sim.serve() as server,
        RunningDaemon(
            url, server.url, sim.api_key, interval=1.0, extra=("--concurrency", "8")
        ) as daemon,
    ):
        seen = 0
        stop_probing = threading.Event()

        def probe() -> None:  # the commands people run while the daemon writes, now and then
            while not stop_probing.wait(PROBE_EVERY) and len(commands["tracked"]) < 50:
                took, out = run_command(url, "tracked", "--format", "csv")
                assert out.count("\n") == JOBS_N + 1
                commands["tracked"].append(took)
                took, out = run_command(url, "report", "status")
                assert out.strip()
                commands["report status"].append(took)

        prober = threading.Thread(target=probe, daemon=True)
        prober.start()
        try:
            while seen < PASSES:
                daemon.wait_for(
                    lambda s=seen: len(daemon.passes()) > s, 600 if LONG else 60, "a pass"
                )
                passes = daemon.passes()
                for event in passes[seen:]:
                    current, peak = rss_kib(daemon.pid)
                    reset_peak(daemon.pid)  # the next peak is the next pass's
                    assert event.doc["due"] == JOBS_N and event.doc["failed"] == 0, event.doc
                    seconds.append(event.doc["seconds"])
                    peaks_mb.append(peak / 1024)
                    rss_mb.append(current / 1024)
                seen = len(passes)
        finally:
            stop_probing.set()
            prober.join(COMMAND_LIMIT * 3)
        assert daemon.stop() == 0, daemon.tail()
    seconds, peaks_mb = seconds[:PASSES], peaks_mb[:PASSES]
    early = statistics.median(seconds[1:4])  # the first pass writes every job new: heavier
    print(
        f"\nload {BACKEND}: {JOBS_N} jobs x {PASSES} passes; pass seconds "
        f"{[round(s, 2) for s in seconds]}; peak RSS MB {[round(p) for p in peaks_mb]}; "
        f"tracked s {[round(t, 2) for t in commands['tracked']]}; "
        f"report status s {[round(t, 2) for t in commands['report status']]}"
    )
    record_figures(
        "load",
        backend=BACKEND,
        jobs=JOBS_N,
        passes=PASSES,
        pass_seconds=[round(s, 3) for s in seconds],
        peak_rss_mb=[round(p, 1) for p in peaks_mb],
        tracked_seconds=[round(t, 2) for t in commands["tracked"]],
        report_status_seconds=[round(t, 2) for t in commands["report status"]],
        rows_lost=0,
    )
    assert seconds[-1] <= TIME_GROWTH * early + 0.5, (seconds, early)
    assert peaks_mb[-1] <= max(peaks_mb[1:4]) + RSS_GROWTH_MB, peaks_mb
    assert commands["tracked"] and commands["report status"]
    assert max(commands["tracked"]) <= COMMAND_LIMIT, commands
    assert max(commands["report status"]) <= COMMAND_LIMIT, commands
