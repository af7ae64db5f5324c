"""Peak memory of a sync pass as the tracked set grows from 10,000 to 100,000 jobs.

What is measured: the peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) of a child process that
does nothing but one ``archiver sync`` pass (``SyncPass.run()``, due jobs only, concurrency 8,
no rate limit) against a SQLite archive holding T tracked jobs, of which the same D are due in
both cases. The simulator and the database set-up live in the parent, so neither is counted.
Why due-limited: fetching 100,000 jobs would take most of an hour here; the question is whether
the pass's memory grows with the *tracked* set (a due query or a schedule held in memory), which
a due-limited pass answers. Jobs are small (1-3 tasks), so archiving them is quick.

    python -m bench.memory child --url URL --api-url URL --api-key KEY  (used by the parent)
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

from archiver import db, tracking
from archiver.config import Settings
from archiver.simulator import Simulator
from bench.sync import FrozenClock
from bench.workload import AT, SEED, TIME_SCALE

SMALL_TASKS = (1, 3)
ROOT = Path(__file__).resolve().parent.parent  # where ``-m bench.memory`` imports from


@dataclass(frozen=True)
class MemoryRun:
    tracked: int
    due: int
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


def measure(tracked: tuple[int, ...], due: int, runs: int) -> dict[int, list[MemoryRun]]:
    """``runs`` child syncs per tracked-set size, the sizes interleaved within each run."""
    out: dict[int, list[MemoryRun]] = {size: [] for size in tracked}
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
            for size in tracked:
                path = Path(tmp) / f"run-{run}-{size}.db"
                shutil.copyfile(templates[size], path)
                with sims[size].serve() as server:
                    out[size].append(_child(size, due, path, server.url, sims[size].api_key))
                path.unlink()
    return out


# Linux keeps the peak RSS across execve (the old image's high-water mark is folded into
# ru_maxrss), and subprocess vforks: a child spawned straight from this process would report this
# process's peak (payloads, dlt) as its own. A bare interpreter in between forks the measured child
# from ~10 MB instead.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def _child(tracked: int, due: int, path: Path, api_url: str, api_key: str) -> MemoryRun:
    command = [sys.executable, "-c", _LAUNCHER, sys.executable, "-m", "bench.memory", "child"]
    command += ["--url", f"sqlite:///{path}", "--api-url", api_url]
    env = {**os.environ, "BENCH_API_KEY": api_key}  # not on the command line
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, cwd=ROOT, check=False, timeout=1800
    )
    if done.returncode != 0:
        raise RuntimeError(f"memory child failed ({done.returncode}): {done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["synced"] != due:
        raise AssertionError(f"memory child synced {report['synced']} jobs, expected {due}")
    return MemoryRun(
        tracked, due, report["maxrss_kb"] / 1024, report["vmhwm_kb"] / 1024, report["seconds"]
    )


def child(url: str, api_url: str, api_key: str, concurrency: int = 8) -> dict[str, float]:
    """One due-only sync pass in this process; returns its peak RSS and what it did."""
    from archiver.client import ApiClient
    from archiver.statuses import DEFAULT_CLASSIFIER
    from archiver.sync import SyncPass

    settings = Settings(api_key=api_key, api_url=api_url, rate_limit=0.0, concurrency=concurrency)
    engine = db.make_engine(url)
    start = time.perf_counter()
    with ApiClient(settings) as client:
        summary = SyncPass(
            db.session_factory(engine),
            client,
            policy=tracking.PollingPolicy.from_settings(settings),
            classifier=DEFAULT_CLASSIFIER,
            concurrency=concurrency,
        ).run()
    seconds = time.perf_counter() - start
    engine.dispose()
    if summary.failed:
        raise RuntimeError(f"sync failed: {summary.errors[:3]}")
    return {
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "vmhwm_kb": _vmhwm_kb(),
        "synced": summary.archived + summary.counts["unchanged"],
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
    args = parser.parse_args(argv)
    report = child(args.url, args.api_url, os.environ["BENCH_API_KEY"], args.concurrency)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
