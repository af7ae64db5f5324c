"""One hostile value cannot freeze ``archiver run`` (issue 14, item 1): the pass ends, the other
jobs of the batch are archived, ``/healthz`` answers and SIGTERM stops the daemon.

Before numbers were judged by their size, ``"cost": "1e999999999"`` never finished converting:
the pass hung inside one C call holding the GIL, so neither the health thread nor the signal
handler ever ran, and on PostgreSQL the job's lease row stayed locked.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from datetime import UTC, datetime

from daemon_harness import RunningDaemon
from http_helpers import Recorded, Reply, ScriptedServer, echo_job, job
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.models import Job, SyncError
from archiver.polling import tracking

KEY = "hostile-daemon-key-0123456789"
HUGE = "1e999999999"
HOSTILE = {
    "cost": HUGE,
    "estimated_duration": HUGE,
    "progress": "1/0." + "0" * 200_000 + "1",
    "tasks": [{"id": "t1", "estimated_time_duration": HUGE, "progress": "9" * 5000}],
}
JOBS = [("w1", f"j{i}") for i in range(6)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answer(request: Recorded) -> Reply:
    if request.segments()[-1] == "j3":
        return Reply(200, job("j3", "w1", **HOSTILE))
    return echo_job(request)


def test_a_huge_exponent_neither_freezes_the_pass_nor_the_daemon(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        tracking.track(session, JOBS, datetime(2026, 10, 1, tzinfo=UTC))
    port = free_port()
    with (
        ScriptedServer() as server,
        RunningDaemon(
            db_url, server.url, KEY, interval=30.0, extra=("--metrics-port", str(port))
        ) as daemon,
    ):
        server.always(answer)
        # a pass takes well under a second; the bound only keeps a hung daemon from hanging CI
        first = daemon.wait_for(daemon.passes, 60, "the first pass")[0]
        assert (first.doc["due"], first.doc["failed"]) == (6, 1), daemon.tail()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as health:
            assert json.loads(health.read())["status"] == "ok"
        assert daemon.stop(timeout=20) == 0
    with sessions() as session:
        archived = set(session.scalars(select(Job.job_id)))
        errors = session.scalars(select(SyncError.message).where(SyncError.job_id == "j3")).all()
    assert archived == {"j0", "j1", "j2", "j4", "j5"}
    assert len(errors) == 1 and "beyond the 64-bit" in errors[0], errors
