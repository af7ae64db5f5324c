"""Peak memory of a sync pass as the tracked set grows from 10,000 to 100,000 jobs.

What is measured: the peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) of a child process that
does nothing but one ``archiver sync`` pass (``SyncPass``, concurrency 8, no rate limit) against a
SQLite archive holding T tracked jobs. The simulator and the database set-up live in the parent,
so neither is counted. Fetching 100,000 jobs would take most of an hour here, so each pass syncs
the same D jobs whatever T is, in two ways:

* ``due``: only D of the T jobs are due (``SyncPass.run()``), the others next tomorrow: the
  daemon's ordinary pass on a quiet archive;
* ``all``: every one of the T jobs is due (``run(everything=True)``, as after an outage, or as
  any pass when the poll interval is shorter than a pass), and the pass is stopped (``stop``)
  once D jobs are done: whatever the pass holds per due job is held for all T.

Jobs are small (1-3 tasks), so archiving them is quick; the question is whether memory follows
the tracked set, not the payloads.

    python -m bench.memory child --url URL --api-url URL [--stop-after D]  (used by the parent)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver import db
from archiver.config import Settings
from archiver.polling import tracking
from archiver.sim.simulator import Simulator
from bench.sync import FrozenClock
from bench.workload import AT, SEED, TIME_SCALE

SMALL_TASKS = (1, 3)
ROOT = Path(__file__).resolve().parent.parent  # where ``-m bench.memory`` imports from


@dataclass(frozen=True)
class MemoryRun:
    variant: str  # "due": only D due; "all": all T due, stopped after D
    tracked: int
    synced: int
    peak_rss_mb: float  # ru_maxrss
    vmhwm_mb: float  # /proc/self/status VmHWM, the same peak seen by the kernel (0 off Linux)
    seconds: float


def _prepare(path: Path, ids: list[tuple[str, str]], due: int) -> None:
    """Track every id; the first ``due`` are due now, the others only tomorrow."""
    url = f"sqlite:///{path}"
    db.upgrade(url)
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        tracking.track(session, ids[:due], now - timedelta(hours=1))
        tracking.track(session, ids[due:], now + timedelta(days=1))
    engine.dispose()


VARIANTS = ("due", "all")


def measure(
    tracked: tuple[int, ...], due: int, runs: int
) -> dict[tuple[str, int], list[MemoryRun]]:
    """``runs`` child syncs per (variant, tracked-set size), all interleaved within each run."""
    out: dict[tuple[str, int], list[MemoryRun]] = {
        (variant, size): [] for variant in VARIANTS for size in tracked
    }
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        templates = {}
        sims = {}
        for size in tracked:
            clock = FrozenClock()
            sims[size] = Simulator(
                seed=SEED, jobs=size, clock=clock, time_scale=TIME_SCALE, tasks=SMALL_TASKS
            )
            clock.now = AT
            templates[size] = Path(tmp) / f"tracked-{size}.db"
            _prepare(templates[size], sims[size].job_ids(), due)
        for run in range(runs):
            for variant, size in out:
                path = Path(tmp) / f"run-{run}-{variant}-{size}.db"
                shutil.copyfile(templates[size], path)
                with sims[size].serve() as server:
                    found = _child(variant, size, due, path, server.url, sims[size].api_key)
                out[(variant, size)].append(found)
                path.unlink()
    return out


# Linux keeps the peak RSS across execve (the old image's high-water mark is folded into
# ru_maxrss), and subprocess vforks: a child spawned straight from this process would report this
# process's peak (payloads, dlt) as its own. A bare interpreter in between forks the measured child
# from ~10 MB instead.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def _child(
    variant: str, tracked: int, due: int, path: Path, api_url: str, api_key: str
) -> MemoryRun:
    command = [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "bench.memory", "child"]
    command += ["--url", f"sqlite:///{path}", "--api-url", api_url]
    if variant == "all":
        command += ["--stop-after", str(due)]
    env = {**os.environ, "BENCH_API_KEY": api_key}  # not on the command line
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # a stopped pass finishes the jobs already in flight: a few more than asked
    if not due <= report["synced"] <= due + 64 or (variant == "due" and report["synced"] != due):
        raise AssertionError(f"memory child synced {report['synced']} jobs, expected {due}")
    return MemoryRun(
        variant,
        tracked,
        int(report["synced"]),
        report["maxrss_kb"] / 1024,
        report["vmhwm_kb"] / 1024,
        report["seconds"],
    )


def child(
    url: str, api_url: str, api_key: str, concurrency: int = 8, stop_after: int = 0
) -> dict[str, float]:
    """One sync pass in this process (everything, stopped after ``stop_after`` jobs, if given)."""
    from archiver.api.client import ApiClient
    from archiver.polling import malloc
    from archiver.polling.sync import JobOutcome, SyncPass

    malloc.return_large_blocks()  # as `archiver sync` sets up its process
    settings = Settings(api_key=api_key, api_url=api_url, rate_limit=0.0, concurrency=concurrency)
    engine = db.make_engine(url)
    done = 0
    start = time.perf_counter()
    with ApiClient(settings) as client:
        sync = SyncPass.from_settings(settings, db.session_factory(engine), client)

        def count(outcome: JobOutcome) -> None:
            nonlocal done
            done += outcome.outcome != "skipped"
            if stop_after and done >= stop_after:
                sync.stop.set()

        summary = sync.run(everything=bool(stop_after), on_job=count)
    seconds = time.perf_counter() - start
    engine.dispose()
    if summary.failed:
        raise RuntimeError(f"sync failed: {summary.errors[:3]}")
    return {
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "vmhwm_kb": _vmhwm_kb(),
        "synced": summary.archived + summary.counts["unchanged"],
        "due": summary.due,
        "seconds": seconds,
    }


def _vmhwm_kb() -> int:
    """The kernel's own high-water mark of this image (a cross-check of ru_maxrss), 0 if unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory")
    parser.add_argument("mode", choices=["child"])
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--stop-after", type=int, default=0, help="all due; stop after this many")
    args = parser.parse_args(argv)
    key = os.environ["BENCH_API_KEY"]
    report = child(args.url, args.api_url, key, args.concurrency, args.stop_after)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
