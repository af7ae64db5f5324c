"""Scale-out: real ``archiver run`` processes sharing one PostgreSQL schema.

Why real processes: leases only matter between processes (each has its own pool, clock reading and
scheduler), and what has to hold is observable only from outside them: the simulator sees every
request of every worker, and the database holds the history they wrote together. So the evidence
here is (a) the simulator's own record of when each job was being fetched, (b) each worker's JSON
pass lines, (c) the history tables. Every wait is a bounded poll on one of those; nothing sleeps
for a guessed time.

PostgreSQL only (``SELECT … FOR UPDATE SKIP LOCKED`` is what is under test, and SQLite allows one
daemon per file): the fixtures skip, or fail under ``ARCHIVER_REQUIRE_ALL_DATABASES=1``, exactly
as every other database test does when ``ARCHIVER_TEST_POSTGRES_URL`` is unset.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from archiver import db
from archiver.audit.verify import verify
from archiver.models import (
    Job,
    JobChange,
    JobSnapshot,
    JobVersion,
    SyncError,
    TaskVersion,
    TrackedJob,
)
from archiver.polling import tracking
from archiver.sim.simulator import JOB_PATH_PREFIX, Faults, Response, Simulator

# Every test here runs once, on PostgreSQL: this overrides the fixture's three backends.
pytestmark = pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)

REPO = Path(__file__).resolve().parents[2]
GATE_LIMIT = 30.0  # a held request is answered after this even if the test never opens the gate
STOP_LIMIT = 20.0  # a worker told to stop must be gone within this
LOST_RE = re.compile(r"lease on (\S+) was lost")


class RecordingSimulator(Simulator):
    """The simulator, recording the (start, end) of every job request by path.

    The intervals are taken on the server, inside the request, so they lie within the client's
    own view of the fetch: two overlapping here means two workers really held one job at once.
    While ``gate`` is clear, job requests wait for it (bounded), which lets a test hold a
    worker's fetches in flight at a moment of its choosing.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetches: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.held: list[str] = []
        self.gate = threading.Event()
        self.gate.set()
        self._record = threading.Lock()

    def respond(self, method: str, raw_path: str, authorization: str | None) -> Response | None:
        path = raw_path.split("?", 1)[0]
        if not path.startswith(JOB_PATH_PREFIX):
            return super().respond(method, raw_path, authorization)
        start = time.monotonic()
        if not self.gate.is_set():
            with self._record:
                self.held.append(path)
            self.gate.wait(GATE_LIMIT)
        try:
            return super().respond(method, raw_path, authorization)
        finally:
            end = time.monotonic()
            with self._record:
                self.fetches[path].append((start, end))

    def snapshot(self) -> dict[str, list[tuple[float, float]]]:
        with self._record:
            return {path: sorted(spans) for path, spans in self.fetches.items()}


def job_path(workflow_id: str, job_id: str) -> str:
    return f"{JOB_PATH_PREFIX}{workflow_id}/jobs/{job_id}"


def path_ids(path: str) -> tuple[str, str]:
    parts = path[len(JOB_PATH_PREFIX) :].split("/")
    return unquote(parts[0]), unquote(parts[2])


@dataclass
class Worker:
    """One ``archiver run`` process; its stderr (JSON log lines) goes to a file we can re-read."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        """The complete JSON lines so far (a half-written last line is left for the next read)."""
        docs = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines(True):
            if not line.endswith("\n"):
                break
            try:
                docs.append(json.loads(line))
            except ValueError:
                docs.append({"msg": line.rstrip("\n"), "level": "raw"})
        return docs

    def passes(self) -> list[dict[str, Any]]:
        return [doc for doc in self.lines() if doc.get("event") == "pass"]

    def tail(self, count: int = 15) -> str:
        lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        return f"--- {self.name} (pid {self.proc.pid}, exit {self.proc.poll()}) ---\n" + "\n".join(
            lines[-count:]
        )


class Fleet:
    """The workers of one test: started here, and always gone when the test ends."""

    def __init__(self, tmp_path: Path, database_url: str, api_url: str, key: str) -> None:
        self.tmp_path = tmp_path
        self.env = {
            **{k: v for k, v in os.environ.items() if k.startswith(("PATH", "HOME", "LANG"))},
            "PYTHONPATH": str(REPO),  # this checkout's archiver, whatever is installed
            "ARCHIVER_DATABASE_URL": database_url,
            "PIXXEL_API_URL": api_url,
            "PIXXEL_API_KEY": key,
        }
        self.workers: list[Worker] = []

    def start(self, name: str, *flags: str) -> Worker:
        log = self.tmp_path / f"{name}.log"
        with open(log, "wb") as sink:  # the child keeps its own descriptor
            proc = subprocess.Popen(
                [sys.executable, "-m", "archiver", "run", "--log-format", "json", *flags],
                env=self.env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(name, proc, log)
        self.workers.append(worker)
        return worker

    def logs(self) -> str:
        return "\n".join(w.tail() for w in self.workers)

    def stop(self, *workers: Worker) -> dict[str, int | None]:
        """SIGTERM, then wait (bounded) for each; returns the exit codes (None: did not exit)."""
        chosen = workers or tuple(self.workers)
        for worker in chosen:
            if worker.proc.poll() is None:
                worker.proc.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        deadline = time.monotonic() + STOP_LIMIT
        for worker in chosen:
            try:
                codes[worker.name] = worker.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                codes[worker.name] = None
        return codes

    def kill_all(self) -> None:
        """Whatever happened, no child outlives the test (SIGKILL also ends a stopped one)."""
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
            worker.proc.wait(STOP_LIMIT)


@pytest.fixture
def fleet_factory(tmp_path: Path) -> Iterator[Callable[[str, str, str], Fleet]]:
    fleets: list[Fleet] = []

    def make(database_url: str, api_url: str, key: str) -> Fleet:
        fleet = Fleet(tmp_path, database_url, api_url, key)
        fleets.append(fleet)
        return fleet

    try:
        yield make
    finally:
        for fleet in fleets:
            fleet.kill_all()


def poll_until(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll ``condition`` every 0.1 s until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str]
) -> None:
    """``poll_until``, failing the test with the workers' logs on timeout."""
    if not poll_until(condition, timeout):
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs()}")


def track_all(sessions: sessionmaker[Session], pairs: list[tuple[str, str]]) -> None:
    with sessions.begin() as session:
        tracking.track(session, pairs, datetime.now(UTC))


def assert_history_unduplicated(session: Session) -> None:
    """What two workers archiving one job twice would leave behind, checked table by table."""
    chains: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in session.execute(
        select(
            JobVersion.workflow_id,
            JobVersion.job_id,
            JobVersion.version,
            JobVersion.valid_from,
            JobVersion.valid_to,
        ).order_by(JobVersion.workflow_id, JobVersion.job_id, JobVersion.version)
    ):
        chains[(row.workflow_id, row.job_id)].append(row)
    assert chains, "nothing was archived"
    for key, rows in chains.items():
        assert [r.version for r in rows] == list(range(1, len(rows) + 1)), key
        assert [r.valid_to is None for r in rows] == [False] * (len(rows) - 1) + [True], key
        for before, after in pairwise(rows):
            assert before.valid_to == after.valid_from, (key, before.version)
    # task chains: contiguous versions, at most one open and only the last (a removed task has
    # none open, and a re-added one restarts after a gap, so valid times are not chained here)
    task_chains: dict[tuple[str, str, str], list[Any]] = defaultdict(list)
    for row in session.execute(
        select(
            TaskVersion.workflow_id,
            TaskVersion.job_id,
            TaskVersion.task_id,
            TaskVersion.version,
            TaskVersion.valid_to,
        ).order_by(
            TaskVersion.workflow_id, TaskVersion.job_id, TaskVersion.task_id, TaskVersion.version
        )
    ):
        task_chains[(row.workflow_id, row.job_id, row.task_id)].append(row)
    for key, rows in task_chains.items():
        assert [r.version for r in rows] == list(range(1, len(rows) + 1)), key
        assert all(r.valid_to is not None for r in rows[:-1]), key
    identity = (
        JobChange.workflow_id,
        JobChange.job_id,
        JobChange.entity,
        JobChange.entity_key,
        JobChange.field,
        JobChange.old_value,
        JobChange.new_value,
        JobChange.observed_at,
    )
    twice = session.execute(
        select(*identity, func.count()).group_by(*identity).having(func.count() > 1).limit(5)
    ).all()
    assert twice == [], f"change rows recorded twice: {twice}"
    held = session.execute(
        select(TrackedJob.workflow_id, TrackedJob.job_id, TrackedJob.lease_owner).where(
            TrackedJob.lease_owner.is_not(None) | TrackedJob.lease_expires_at.is_not(None)
        )
    ).all()
    assert held == [], f"leases still held after a clean stop: {held[:5]}"


def assert_never_fetched_twice_at_once(fetches: dict[str, list[tuple[float, float]]]) -> None:
    for path, spans in fetches.items():
        for (s1, e1), (s2, e2) in pairwise(spans):
            assert s2 >= e1, f"{path} fetched twice at once: {(s1, e1)} and {(s2, e2)}"


POLL = 2.0
JITTER = 0.1  # the default --poll-jitter: next poll in POLL * (1 ± JITTER)
CLOCK_SLACK = 0.05  # wall clock (schedules) against monotonic (the recorded intervals)


def test_three_workers_split_the_jobs_and_write_one_history(
    db_url: str, fleet_factory: Callable[[str, str, str], Fleet]
) -> None:
    """Three workers, 300 jobs due every 2 s, several passes: the leases must split each pass's
    due jobs so that a job is fetched once per pass (never by two workers, never twice at once)
    and the history they write together is the one a single worker would have written."""
    sim = RecordingSimulator(seed=11, jobs=300, tasks=(2, 6), faults=Faults(latency=0.02))
    engine = db.make_engine(db_url)
    sessions = db.session_factory(engine)
    ids = sim.job_ids()
    track_all(sessions, ids)
    flags = (
        "--interval",
        "1",
        "--poll-interval",
        str(POLL),
        # terminal jobs too: every job keeps being polled at the same rate all along
        "--settle-interval",
        str(POLL),
        "--concurrency",
        "4",
        "--rate-limit",
        "0",
        # one request per fetch: a retry would look like a second fetch inside one pass
        "--max-retries",
        "0",
    )
    try:
        with sim.serve() as server:
            fleet = fleet_factory(db_url, server.url, sim.api_key)
            workers = [fleet.start(f"worker-{i}", *flags) for i in range(3)]
            started = time.monotonic()

            def enough() -> bool:
                fetched = sim.snapshot()
                return (
                    time.monotonic() - started >= 8.0
                    and all(len(fetched.get(job_path(*key), [])) >= 2 for key in ids)
                    and all(any(p["due"] > 0 for p in w.passes()) for w in workers)
                )

            reached = poll_until(enough, 45.0)
            codes = fleet.stop()
            fetches = sim.snapshot()
        # the sharpest evidence first: a broken lease shows here even if the run also stalled
        assert_never_fetched_twice_at_once(fetches)
        assert reached, f"not every job was fetched twice by busy workers in 45s\n{fleet.logs()}"
        assert codes == {w.name: 0 for w in workers}, fleet.logs()
        assert set(fetches) == {job_path(*key) for key in ids}
        shortest = POLL * (1 - JITTER) - CLOCK_SLACK
        for path, spans in fetches.items():
            assert len(spans) >= 2, path
            for (_, end), (start, _) in pairwise(spans):
                assert start - end >= shortest, f"{path} fetched again after {start - end:.3f}s"
        for worker in workers:
            lines = worker.lines()
            assert any(p["due"] > 0 for p in worker.passes()), worker.tail()
            assert not [d for d in lines if d.get("level") in ("error", "raw")], worker.tail()
            assert sum(p["lost"] for p in worker.passes()) == 0, worker.tail()
            assert '"stopped cleanly"' in worker.log.read_text(), worker.tail()
        handled = sum(p["due"] - p["skipped"] for w in workers for p in w.passes())
        assert handled == sum(len(spans) for spans in fetches.values())
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Job)) == len(ids)
            assert session.scalar(select(func.count()).select_from(SyncError)) == 0
            assert_history_unduplicated(session)
            report = verify(session)  # three writers, one whole chain per job
            assert report.ok and report.jobs == len(ids), [b.line() for b in report.breaks[:5]]
    finally:
        engine.dispose()


def test_a_worker_paused_past_its_lease_writes_nothing(
    db_url: str, fleet_factory: Callable[[str, str, str], Fleet]
) -> None:
    """A worker frozen (SIGSTOP) with two fetches in flight past its 2 s lease; another worker
    takes those jobs over and archives them; the first, resumed, must write nothing for them.
    SIGSTOP stands for what does this in production: a GC pause, a VM migration, swapping."""
    sim = RecordingSimulator(seed=12, jobs=20, tasks=(2, 4))
    engine = db.make_engine(db_url)
    sessions = db.session_factory(engine)
    track_all(sessions, sim.job_ids())
    common = ("--interval", "1", "--poll-interval", "600", "--rate-limit", "0")
    try:
        with sim.serve() as server:
            fleet = fleet_factory(db_url, server.url, sim.api_key)
            sim.gate.clear()
            # A claims two jobs (its window is its concurrency) and fetches them; the simulator
            # holds both requests, so A is stopped with both in flight, then answered.
            a = fleet.start("worker-A", *common, "--lease-seconds", "2", "--concurrency", "2")
            wait_for(lambda: len(sim.held) == 2, 30.0, "A's two requests", fleet.logs)
            os.kill(a.proc.pid, signal.SIGSTOP)
            held = sorted(sim.held)
            sim.gate.set()
            wait_for(
                lambda: all(len(sim.snapshot().get(p, [])) == 1 for p in held),
                10.0,
                "the answers to A's requests",
                fleet.logs,
            )

            def expired() -> bool:  # by the database's clock, the one leases are judged by
                with engine.connect() as conn:
                    return not conn.execute(
                        text(
                            "SELECT 1 FROM tracked_jobs WHERE lease_expires_at IS NOT NULL "
                            "AND lease_expires_at >= statement_timestamp()"
                        )
                    ).first()

            wait_for(expired, 10.0, "A's leases to expire", fleet.logs)
            b = fleet.start("worker-B", *common, "--concurrency", "4")
            a_jobs = [path_ids(p) for p in held]

            def b_archived_all() -> bool:
                with sessions() as session:
                    owners = session.scalars(
                        select(TrackedJob.lease_owner).where(TrackedJob.last_polled_at.is_not(None))
                    ).all()
                return len(owners) == 20 and set(owners) == {None}  # archived, leases released

            wait_for(b_archived_all, 30.0, "B to archive every job", fleet.logs)
            with sessions() as session:
                tokens = {
                    (r.workflow_id, r.job_id): r.claim_token
                    for r in session.execute(
                        select(TrackedJob.workflow_id, TrackedJob.job_id, TrackedJob.claim_token)
                    )
                }
            assert {tokens[key] for key in a_jobs} == {2}, tokens  # taken over by B
            os.kill(a.proc.pid, signal.SIGCONT)
            wait_for(lambda: bool(a.passes()), 20.0, "A's first pass to end", fleet.logs)
            codes = fleet.stop()
            assert codes == {"worker-A": 0, "worker-B": 0}, fleet.logs()
            fetches = sim.snapshot()
        lost = {m.group(1) for d in a.lines() if (m := LOST_RE.search(str(d.get("msg"))))}
        assert lost == {f"{w}/{j}" for w, j in a_jobs}, a.tail()
        first = a.passes()[0]
        assert (first["due"], first["lost"], first["new"], first["failed"]) == (2, 2, 0, 0)
        assert sum(p["due"] for p in a.passes()) == 2, a.tail()
        assert sum(p["new"] for p in b.passes()) == 20, b.tail()
        assert_never_fetched_twice_at_once(fetches)
        assert all(len(fetches[p]) == 2 for p in held)  # A's (answered, never written), B's
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 20
            assert session.scalar(select(func.count()).select_from(SyncError)) == 0
            for wf, job_id in a_jobs:  # B's archive only: A left no snapshot, version or change
                snapshots = session.execute(
                    select(JobSnapshot.applied, JobSnapshot.fetched_at).where(
                        JobSnapshot.workflow_id == wf, JobSnapshot.job_id == job_id
                    )
                ).all()
                assert [s.applied for s in snapshots] == [True], (wf, job_id)
                versions = session.scalar(
                    select(func.count())
                    .select_from(JobVersion)
                    .where(JobVersion.workflow_id == wf, JobVersion.job_id == job_id)
                )
                assert versions == 1, (wf, job_id)
            assert_history_unduplicated(session)
    finally:
        engine.dispose()
