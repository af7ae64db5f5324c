"""Scale-out on PostgreSQL: jobs archived per second by 1, 2 and 4 ``archiver run`` processes.

    python -m bench.scaleout [--database-url postgresql://…] [--jobs 600] [--workers 1,2,4]
                             [--runs 3] [--concurrency 8] [--latency 0]

Why this shape: what scale-out buys is how fast one pass drains a backlog, so each run is one
pass's work (a first archive of ``--jobs`` jobs with 10-30 tasks) shared by real worker processes
through leases. The workers are started and idle-polling (``--interval 0.25``) before the jobs
become due, all at one instant, so process start-up is not measured; the rate is jobs over the
time from the simulator's first job request to the last job's commit (the latest
``tracked_jobs.last_polled_at``, stamped in the job's own transaction).

Every configuration gets a fresh schema (dropped afterwards) and the same simulator instance, its
clock frozen mid-lifecycle and its render cache warmed, so every run archives the same payloads
and the simulator does as little as it can. It still runs in this process, on the same cores as
the workers and PostgreSQL, so beside each rate the table shows the cores the workers and this
process used over the measured window, the cores every local ``postgres`` process used (other
clients' included), jobs per CPU-second of the workers and PostgreSQL (what a job costs, however
many cores the rest of the machine left free), the cores busy with anything else (other work on a
shared machine), and how busy the whole machine was. Configurations are measured in rounds
(1, 2, 4, 1, 2, 4, …) so that other work weighs on each alike; a configuration's row is its
median run by rate.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from archiver import db
from archiver.models import Job, JobSnapshot, JobVersion, SyncError, TrackedJob
from archiver.polling import tracking
from archiver.sim.simulator import JOB_PATH_PREFIX, Faults, Response, Simulator

REPO = Path(__file__).resolve().parents[1]
DUE_IN = 1.5  # seconds after tracking at which the jobs all fall due (every worker is polling)
RUN_LIMIT = 300.0  # a run that has not archived every job by then is a failure, not a figure


class TimedSimulator(Simulator):
    """Notes the wall-clock time of the first job request: the start of the measured window."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.first_request: float | None = None
        self._first = threading.Lock()

    def respond(self, method: str, raw_path: str, authorization: str | None) -> Response | None:
        if self.first_request is None and raw_path.startswith(JOB_PATH_PREFIX):
            with self._first:
                if self.first_request is None:
                    self.first_request = time.time()
        return super().respond(method, raw_path, authorization)


def cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine, from /proc/stat (None elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) a live process has used, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_cpu() -> dict[int, float]:
    """CPU seconds by pid of every process named ``postgres`` here (other clients' too)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm == "postgres":
                found[int(entry.name)] = process_cpu(int(entry.name))
    return found


def cpu_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used in between by the processes alive at the end (one that exited is not counted)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def fresh_schema(base_url: str) -> tuple[str, Callable[[], None]]:
    """A new schema selected through the connection's search_path, and how to drop it."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = db.make_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    url = db.normalize_url(base_url).update_query_dict({"options": f"-csearch_path={name}"})

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


def passes_logged(log: Path) -> int:
    count = 0
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            count += json.loads(line).get("event") == "pass"
        except ValueError:
            continue
    return count


def wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class RunResult:
    rate: float  # jobs/s
    workers_cpu: float  # cores used by the worker processes over the measured window
    simulator_cpu: float  # cores used by this process (the simulator, mostly)
    postgres_cpu: float  # cores used by PostgreSQL processes (a local server; every client's)
    machine_busy: float | None  # fraction of all cores busy (PostgreSQL and anything else too)
    load: float  # 1-minute load average when the run began: other work on the machine

    @property
    def per_core(self) -> float:
        """Jobs per CPU-second of the workers and PostgreSQL: the cost of a job, whatever the
        machine's other work left them; flat across configurations means leases cost nothing."""
        used = self.workers_cpu + self.postgres_cpu
        return self.rate / used if used > 0 else 0.0

    @property
    def other_cpu(self) -> float:
        """Cores busy with anything else: the bench's own polling, and other work on the box."""
        if self.machine_busy is None:
            return 0.0
        ours = self.workers_cpu + self.simulator_cpu + self.postgres_cpu
        return max(0.0, self.machine_busy * (os.cpu_count() or 1) - ours)


def one_run(
    sim: TimedSimulator, api_url: str, base_url: str, workers: int, args: argparse.Namespace
) -> RunResult:
    """One pass's work (a first archive of every job) shared by ``workers`` processes."""
    url, drop = fresh_schema(base_url)
    engine = db.make_engine(url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        db.upgrade(url)
        sessions = db.session_factory(engine)
        env = {
            **{k: v for k, v in os.environ.items() if k.startswith(("PATH", "HOME", "LANG"))},
            "PYTHONPATH": str(REPO),
            "ARCHIVER_DATABASE_URL": url,
            "PIXXEL_API_URL": api_url,
            "PIXXEL_API_KEY": sim.api_key,
        }
        flags = ["--interval", "0.25", "--poll-interval", "3600", "--rate-limit", "0"]
        flags += ["--concurrency", str(args.concurrency), "--log-format", "json"]
        with tempfile.TemporaryDirectory() as tmp:
            logs = [Path(tmp) / f"worker-{i}.log" for i in range(workers)]
            for log in logs:
                with open(log, "wb") as sink:
                    procs.append(
                        subprocess.Popen(
                            [sys.executable, "-m", "archiver", "run", *flags],
                            env=env,
                            cwd=REPO,
                            stdin=subprocess.DEVNULL,
                            stdout=sink,
                            stderr=subprocess.STDOUT,
                        )
                    )
            wait(lambda: all(passes_logged(log) for log in logs), 60, "the workers to start")
            sim.first_request = None
            due = datetime.now(UTC) + timedelta(seconds=DUE_IN)
            with sessions.begin() as session:
                tracking.track(session, sim.job_ids(), due)
            load = os.getloadavg()[0]
            cpu_before = cpu_times()
            wall_before, own_before = time.monotonic(), time.process_time()
            workers_before = sum(process_cpu(p.pid) for p in procs)
            postgres_before = postgres_cpu()

            def archived() -> bool:
                with sessions() as session:
                    return session.scalar(select(func.count()).select_from(Job)) == args.jobs

            wait(archived, RUN_LIMIT, f"{args.jobs} jobs to be archived")
            cpu_after = cpu_times()
            wall = time.monotonic() - wall_before
            own = (time.process_time() - own_before) / wall
            used = (sum(process_cpu(p.pid) for p in procs) - workers_before) / wall
            database = cpu_since(postgres_before, postgres_cpu()) / wall
            with sessions() as session:
                last = session.scalar(select(func.max(TrackedJob.last_polled_at)))
                # a figure only counts if the work was done once: one version and one snapshot
                # per job (a first archive), no failure
                once = [
                    session.scalar(select(func.count()).select_from(model))
                    for model in (JobVersion, JobSnapshot, SyncError)
                ]
            if once != [args.jobs, args.jobs, 0]:
                raise SystemExit(
                    f"bench: versions, snapshots, errors = {once}, not [{args.jobs}, …, 0]"
                )
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc, log in zip(procs, logs, strict=True):
                if proc.wait(30) != 0:
                    raise SystemExit(
                        f"bench: a worker exited {proc.returncode}:\n{log.read_text()}"
                    )
        assert sim.first_request is not None and last is not None
        seconds = last.timestamp() - sim.first_request
        busy = None
        if cpu_before and cpu_after and cpu_after[1] > cpu_before[1]:
            busy = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
        return RunResult(args.jobs / seconds, used, own, database, busy, load)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        engine.dispose()
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("ARCHIVER_BENCH_POSTGRES_URL")
        or os.environ.get("ARCHIVER_TEST_POSTGRES_URL"),
        help="PostgreSQL URL; a schema is created and dropped per run "
        "[env ARCHIVER_BENCH_POSTGRES_URL or ARCHIVER_TEST_POSTGRES_URL]",
    )
    parser.add_argument("--jobs", type=int, default=600)
    parser.add_argument("--workers", default="1,2,4", help="comma-separated process counts")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8, help="fetch threads per worker")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds the simulator adds to every request"
    )
    args = parser.parse_args()
    if not args.database_url or db.normalize_url(args.database_url).get_backend_name() != (
        "postgresql"
    ):
        raise SystemExit("bench: give a PostgreSQL URL (--database-url)")
    counts = [int(n) for n in args.workers.split(",")]
    frozen = [20.0]  # mid-lifecycle: running jobs with tasks in every phase, the same every run
    sim = TimedSimulator(
        seed=2,
        jobs=args.jobs,
        clock=lambda: frozen[0],
        cache_jobs=args.jobs,
        faults=Faults(latency=args.latency),
    )
    for index in range(args.jobs):  # warm the render cache: measure the archiver, not the fake
        sim.payload_bytes(index, frozen[0])
    results: dict[int, list[RunResult]] = {workers: [] for workers in counts}
    with sim.serve() as server:
        # rounds of every configuration, not one configuration after another: whatever else
        # the machine is doing meanwhile then weighs on every configuration alike
        for round_ in range(args.runs):
            for workers in counts:
                result = one_run(sim, server.url, args.database_url, workers, args)
                results[workers].append(result)
                print(
                    f"  round {round_ + 1}, {workers} worker(s): {result.rate:.0f} jobs/s, "
                    f"{result.per_core:.0f} per core-second (load {result.load:.1f}, other "
                    f"processes {result.other_cpu:.2f} cores)",
                    file=sys.stderr,
                )
    rows = [
        (workers, sorted(runs, key=lambda r: r.rate)[len(runs) // 2])
        for workers, runs in results.items()
    ]
    base = rows[0][1].rate
    print(
        f"{args.jobs} simulated jobs (10-30 tasks), first archive, PostgreSQL, "
        f"--concurrency {args.concurrency} per worker, API latency {args.latency * 1000:.0f} ms, "
        f"median of {args.runs}; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        "| workers | jobs/s | vs 1 worker | cores: workers | cores: PostgreSQL "
        "| jobs per core-second | cores: simulator | cores: other | machine CPU busy |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for workers, r in rows:
        busy = f"{r.machine_busy:.0%}" if r.machine_busy is not None else "n/a"
        print(
            f"| {workers} | {r.rate:.0f} | {r.rate / base:.2f}x | {r.workers_cpu:.2f} "
            f"| {r.postgres_cpu:.2f} | {r.per_core:.0f} | {r.simulator_cpu:.2f} "
            f"| {r.other_cpu:.2f} | {busy} |"
        )


if __name__ == "__main__":
    main()
