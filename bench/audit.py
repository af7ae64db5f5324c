"""How long ``archiver verify`` and ``archiver rebuild`` take on N jobs' history (SQLite, WAL).

    python -m bench.audit [--jobs N] [--runs R]

The archive is the harness's workload (``bench.workload``: N jobs of 10-30 tasks archived, the
same N unchanged, then 10% mutated), built once. Each figure is the median of R runs and is
printed with its ratio to a floor measured in the same run: reading every history row and
snapshot body with the bare ``sqlite3`` driver, which any verification has to do at least.
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from archiver import db
from archiver.audit.rebuild import rebuild
from archiver.audit.verify import verify
from bench.archive import Archiver
from bench.workload import phases

HISTORY = ("job_snapshots", "job_versions", "task_versions", "job_changes")


def build(path: Path, jobs: int) -> None:
    url = f"sqlite:///{path}"
    db.upgrade(url)
    archiver = Archiver(url)
    try:
        for phase in phases(jobs):
            archiver.run(phase)
    finally:
        archiver.close()


def floor(path: Path) -> float:
    """Read every row the verification reads, with the bare driver."""
    start = time.perf_counter()
    connection = sqlite3.connect(path)
    try:
        for table in HISTORY:
            for _ in connection.execute(f"SELECT * FROM {table}"):  # our table names
                pass
    finally:
        connection.close()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.audit")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as folder:
        path = Path(folder) / "archive.db"
        started = time.perf_counter()
        build(path, args.jobs)
        print(f"built the archive of {args.jobs} jobs in {time.perf_counter() - started:.0f} s")
        engine = db.make_engine(f"sqlite:///{path}")
        sessions = db.session_factory(engine)
        verify_s, floor_s, rebuild_s = [], [], []
        rows = snapshots = 0
        try:
            for run in range(args.runs):
                floor_s.append(floor(path))
                with sessions() as session:
                    report = verify(session)
                if not report.ok:
                    raise SystemExit(f"the archive does not verify: {report.breaks[0].line()}")
                verify_s.append(report.seconds)
                rows, snapshots = report.rows, report.snapshots
                target = Path(folder) / f"rebuilt-{run}.db"
                rebuilt = rebuild(sessions, f"sqlite:///{target}")
                if not rebuilt.identical:
                    raise SystemExit("the rebuild differs from the archive")
                rebuild_s.append(rebuilt.seconds)
                target.unlink()
        finally:
            engine.dispose()
    v, f, r = (statistics.median(x) for x in (verify_s, floor_s, rebuild_s))
    print(f"history: {rows} rows ({snapshots} snapshots), {args.jobs} jobs; median of {args.runs}")
    print("| step | seconds | rows/s | x floor |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| floor: read the rows (sqlite3) | {f:.2f} | {rows / f:,.0f} | 1.0 |")
    print(f"| archiver verify | {v:.2f} | {rows / v:,.0f} | {v / f:.1f} |")
    print(f"| archiver rebuild (replay + compare) | {r:.2f} | {rows / r:,.0f} | {r / f:.1f} |")


if __name__ == "__main__":
    main()
