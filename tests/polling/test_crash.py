"""Crash consistency: ``kill -9`` the archiver mid-sync, again and again, then sync once more.

The archive must then equal a clean run's: the same current rows, and no version, change or
snapshot row duplicated or missing, because each job is one transaction. CI runs a short
variant (5 kills of a 150-job sync); ``ARCHIVER_LONG_SUITES=1`` (the flag of every long
variant) runs 30 kills of a 1,000-job sync, and ``ARCHIVER_CRASH_KILLS``/``ARCHIVER_CRASH_JOBS``
set either number.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from archive_dump import OBSERVATION_TIMES
from figures import record_figures
from sqlalchemy import select, text
from sqlalchemy.engine import Engine, make_url

from archiver import db
from archiver.audit.verify import verify
from archiver.models import (
    CHANGES,
    DEPS,
    JOB_VERSIONS,
    JOBS,
    SNAPSHOTS,
    TASK_VERSIONS,
    TASKS,
    VAL_ERRORS,
)
from archiver.polling import tracking
from archiver.sim.simulator import Simulator

LONG = os.environ.get("ARCHIVER_LONG_SUITES") == "1"
KILLS = int(os.environ.get("ARCHIVER_CRASH_KILLS", "30" if LONG else "5"))
JOBS_N = int(os.environ.get("ARCHIVER_CRASH_JOBS", "1000" if LONG else "150"))
TIME_COLUMNS = OBSERVATION_TIMES | {"id"}


def snapshot_of(engine: Engine) -> dict[str, Counter[tuple[Any, ...]]]:
    """Every row of the archive without surrogate ids or the times at which things were seen."""
    out: dict[str, Counter[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in (
            JOBS,
            TASKS,
            DEPS,
            VAL_ERRORS,
            JOB_VERSIONS,
            TASK_VERSIONS,
            CHANGES,
            SNAPSHOTS,
        ):
            columns = [c for c in table.columns if c.name not in TIME_COLUMNS]
            rows = conn.execute(select(*columns))
            out[table.name] = Counter(tuple(repr(v) for v in row) for row in rows)
    return out


def sync_command(url: str, api_url: str, key: str) -> tuple[list[str], dict[str, str]]:
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        "ARCHIVER_DATABASE_URL": url,
        "PIXXEL_API_URL": api_url,
        "PIXXEL_API_KEY": key,
    }
    args = [
        sys.executable,
        "-m",
        "archiver",
        "sync",
        "--all",
        "--concurrency",
        "4",
        "--rate-limit",
        "0",
        "--max-retries",
        "0",
    ]
    return args, env


def prepare(url: str, sim: Simulator) -> Engine:
    db.upgrade(url)
    engine = db.make_engine(url)
    with db.session_factory(engine).begin() as session:
        tracking.track(session, sim.job_ids(), datetime.now(UTC))
    return engine


def test_kill_9_mid_sync_then_resync_equals_a_clean_run(empty_db_url: str, tmp_path: Path) -> None:
    backend = make_url(empty_db_url).get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        pytest.skip("the crash suite runs on SQLite and PostgreSQL")
    sim = Simulator(seed=21, jobs=JOBS_N, tasks=(2, 5), clock=lambda: 30.0, cache_jobs=JOBS_N)
    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    rng = random.Random(7)
    kills = 0
    with sim.serve() as server:
        clean = prepare(clean_url, sim)
        args, env = sync_command(clean_url, server.url, sim.api_key)
        assert subprocess.run(args, env=env, capture_output=True, timeout=300).returncode == 0
        crashed = prepare(empty_db_url, sim)
        args, env = sync_command(empty_db_url, server.url, sim.api_key)
        for _ in range(KILLS):
            start = server.request_count
            target = start + rng.randint(1, JOBS_N - 1)
            proc = subprocess.Popen(
                args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            deadline = time.monotonic() + 120
            while (
                server.request_count < target
                and proc.poll() is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.005)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait(timeout=30)
        final = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr
    assert kills >= KILLS - 1  # a sync may finish before its kill point; nearly all were killed
    expected, got = snapshot_of(clean), snapshot_of(crashed)
    for name in expected:
        assert got[name] == expected[name], f"{name} differs from a clean run"
    assert sum(expected["jobs"].values()) == JOBS_N
    if backend == "sqlite":
        with crashed.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
    with db.session_factory(crashed)() as session:  # the chains hold through the kills
        report = verify(session)
    assert report.ok and report.jobs == JOBS_N, [b.line() for b in report.breaks[:5]]
    clean.dispose()
    crashed.dispose()
    record_figures("crash", backend=backend, runs=1, jobs=JOBS_N, faults=kills, rows_lost=0)
