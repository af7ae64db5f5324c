"""``python -m bench``: every benchmark in one run, printed as one table.

    python -m bench            # the full run (~10-15 minutes on 2 cores with today's archiver)
    python -m bench --quick    # the same rows on tiny inputs (~1 minute): checks the harness
    python -m bench --jobs 1000,10000   # add the 10,000-job scale (about an hour today)

Progress goes to stderr; the table (and, with ``--json``, every run's raw figures) to stdout/file.
Targets are reported, never enforced: the exit status says whether the harness worked.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from bench import backends, memory, peer_dlt, workload
from bench import sync as sync_bench
from bench.archive import Archiver
from bench.backends import DEFAULT_POSTGRES_URL
from bench.floor import Floor
from bench.table import Row, median, ratio, render

LABELS = {
    "first": "first archive (full history)",
    "unchanged": "unchanged re-archive",
    "mutated": "10%-mutated re-archive",
}
# the targets of issue 17 (2026-12-06); the first issue's were 1.5x, 5x and 0.8x for all
FLOOR_TARGETS = {"first": 2.0, "mutated": 1.5}  # archiver time / floor time
DLT_TARGETS = {"first": 4.0, "unchanged": 20.0}  # dlt time / archiver time
SYNC_TARGETS = {"first": 0.5, "again": 0.8}  # sync rate / bare fetch rate
MEMORY_TARGET = 1.2  # peak RSS at the larger tracked set / at the smaller


@dataclass(frozen=True)
class Config:
    jobs: tuple[int, ...] = (1000,)
    runs: int = 3
    backends: tuple[str, ...] = ("sqlite", "postgresql")
    dlt: bool = True
    sync_jobs: int = 1000  # 0: no sync rows
    concurrency: int = 8
    tracked: tuple[int, ...] = (10_000, 100_000)  # (): no memory rows
    due: int = 500
    postgres_url: str = DEFAULT_POSTGRES_URL


FULL = Config()
QUICK = Config(jobs=(40,), sync_jobs=40, tracked=(1_000, 10_000), due=40)
Log = Callable[[str], None]


def _log_to_stderr(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --- ingest: archiver vs floor vs dlt -----------------------------------------------------------


def ingest_rows(n: int, config: Config, log: Log, raw: dict[str, Any]) -> list[Row]:
    phases = workload.phases(n)
    keys = workload.job_keys(phases[0])
    skipped: dict[str, str] = {}
    for backend in config.backends:
        if backend == "postgresql":
            reason = backends.postgres_reachable(config.postgres_url)
            if reason:
                skipped[backend] = reason
    live = [b for b in config.backends if b not in skipped]
    dlt_missing = None if config.dlt else "skipped (--no-dlt)"
    if dlt_missing is None:
        dlt_missing = peer_dlt.missing()
    if dlt_missing is None and "sqlite" not in live:
        dlt_missing = "skipped: dlt is compared on SQLite, which is not in --backends"
    times: dict[str, list[float]] = defaultdict(list)  # "backend/phase/side" -> seconds per run
    for run in range(config.runs):
        for backend in live:
            with backends.fresh(backend, ("archive", "floor"), config.postgres_url) as dbs:
                archiver = Archiver(dbs["archive"].url)
                floor = Floor(dbs["archive"], dbs["floor"])
                try:
                    for phase in phases:
                        floor.mark()
                        done = archiver.run(phase)
                        replay = floor.replay(keys)
                        times[f"{backend}/{phase.name}/archive"].append(done.seconds)
                        times[f"{backend}/{phase.name}/floor"].append(replay.seconds)
                        log(
                            f"ingest N={n:,} run {run + 1}/{config.runs} {backend} {phase.name}: "
                            f"archiver {done.seconds:.2f}s {done.outcomes}, floor "
                            f"{replay.seconds:.2f}s ({replay.rows:,} rows, "
                            f"{replay.statements:,} statements)"
                        )
                finally:
                    archiver.close()
                    floor.close()
        if dlt_missing is None:
            for phase, seconds in zip(phases, peer_dlt.run(phases), strict=True):
                times[f"sqlite/{phase.name}/dlt"].append(seconds)
                log(f"ingest N={n:,} run {run + 1}/{config.runs} dlt {phase.name}: {seconds:.2f}s")
    raw[f"ingest/{n}"] = dict(times)
    rows = []
    for phase in phases:
        for backend in config.backends:
            if backend in skipped:
                rows.append(
                    Row(f"archiver: {LABELS[phase.name]}", n, backend, note=skipped[backend])
                )
                continue
            rows += _phase_rows(n, backend, phase.name, times, config.runs)
            if backend == "sqlite":
                rows.append(_dlt_row(n, phase.name, times, config.runs, dlt_missing))
    return rows


def _phase_rows(n: int, backend: str, phase: str, times: dict, runs: int) -> list[Row]:
    floor, archive = times[f"{backend}/{phase}/floor"], times[f"{backend}/{phase}/archive"]
    vs = ratio(archive, floor)
    goal = FLOOR_TARGETS.get(phase)
    return [
        Row(f"floor: {LABELS[phase]}", n, backend, runs, median(floor), rate=_rate(n, floor)),
        Row(
            f"archiver: {LABELS[phase]}",
            n,
            backend,
            runs,
            median(archive),
            rate=_rate(n, archive),
            vs_floor=vs,
            target=f"≤ {goal:g}x floor" if goal else "",
            measured=vs if goal else None,
            met=vs <= goal if goal else None,
        ),
    ]


def _dlt_row(n: int, phase: str, times: dict, runs: int, missing: str | None) -> Row:
    figure = f"dlt scd2: {LABELS[phase]}"
    if missing:
        return Row(figure, n, "sqlite", note=missing)
    peer = times[f"sqlite/{phase}/dlt"]
    faster = ratio(peer, times[f"sqlite/{phase}/archive"])
    goal = DLT_TARGETS.get(phase)
    return Row(
        figure,
        n,
        "sqlite",
        runs,
        median(peer),
        rate=_rate(n, peer),
        vs_floor=ratio(peer, times[f"sqlite/{phase}/floor"]),
        target=f"archiver ≥ {goal:g}x faster" if goal else "archiver faster by (no target)",
        measured=faster,
        met=faster >= goal if goal else None,
    )


def _rate(n: int, seconds: Sequence[float]) -> float:
    return median([n / s for s in seconds])


# --- sync and memory ----------------------------------------------------------------------------


def sync_rows(config: Config, log: Log, raw: dict[str, Any]) -> list[Row]:
    n, c = config.sync_jobs, config.concurrency
    log(f"sync N={n:,}: {config.runs} runs of bare fetch, first sync, unchanged re-sync")
    found = sync_bench.measure(n, config.runs, concurrency=c, postgres_url=config.postgres_url)
    raw[f"sync/{n}"] = [asdict(r) for r in found]
    fetch = [r.fetch for r in found]
    rows = [
        Row(
            f"fetch: bare ApiClient, concurrency {c}",
            n,
            "-",
            config.runs,
            median(fetch),
            rate=_rate(n, fetch),
        )
    ]
    for name, label in (("first", "first sync (full history)"), ("again", "unchanged re-sync")):
        took = [getattr(r, name) for r in found]
        speed = ratio(fetch, took)  # sync rate / fetch rate
        rows.append(
            Row(
                f"sync: {label}, concurrency {c}",
                n,
                "sqlite",
                config.runs,
                median(took),
                rate=_rate(n, took),
                vs_floor=ratio(took, fetch),
                target=f"rate ≥ {SYNC_TARGETS[name]:g}x fetch",
                measured=speed,
                met=speed >= SYNC_TARGETS[name],
            )
        )
    return rows


def memory_rows(config: Config, log: Log, raw: dict[str, Any]) -> list[Row]:
    small, large = config.tracked
    d = config.due
    log(f"memory: {config.runs} runs of {d}-job sync passes, {small:,} and {large:,} tracked")
    found = memory.measure(config.tracked, d, config.runs)
    raw["memory"] = {f"{v}/{size}": [asdict(r) for r in runs] for (v, size), runs in found.items()}
    figures = {
        "due": "memory: sync pass, {:,} tracked, " + f"{d:,} due",
        "all": "memory: sync pass, {:,} tracked, all due, " + f"stopped after {d:,}",
    }
    rows = []
    for variant in memory.VARIANTS:
        peaks = {size: [r.peak_rss_mb for r in found[(variant, size)]] for size in (small, large)}
        growth = ratio(peaks[large], peaks[small])
        figure = figures[variant]
        rows.append(
            Row(figure.format(small), small, "sqlite", config.runs, median(peaks[small]), "MB")
        )
        rows.append(
            Row(
                figure.format(large),
                large,
                "sqlite",
                config.runs,
                median(peaks[large]),
                "MB",
                vs_floor=growth,
                target=f"≤ {MEMORY_TARGET}x the {small:,} case",
                measured=growth,
                met=growth <= MEMORY_TARGET,
            )
        )
    return rows


# --- the whole run ------------------------------------------------------------------------------


def machine(config: Config) -> dict[str, str]:
    """What the figures were measured on."""

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    postgres = "not used"
    if "postgresql" in config.backends:
        postgres = backends.postgres_reachable(config.postgres_url) or backends.server_version(
            "postgresql", config.postgres_url
        )
    return {
        "cores": str(os.cpu_count()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres,
        "sqlalchemy": version("SQLAlchemy"),
        "psycopg": version("psycopg"),
        "dlt": version("dlt"),
        "load average at start": _load(),
    }


def _load() -> str:
    """1/5/15-minute load averages: on a shared machine, how much else was running."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return " ".join(f"{x:.2f}" for x in load)


def run(config: Config, log: Log = _log_to_stderr) -> dict[str, Any]:
    """Everything the config asks for; returns the rows, the raw per-run figures and the machine."""
    started = time.perf_counter()
    raw: dict[str, Any] = {}
    info = machine(config)
    rows: list[Row] = []
    for n in config.jobs:
        rows += ingest_rows(n, config, log, raw)
    if config.sync_jobs:
        rows += sync_rows(config, log, raw)
    if config.tracked:
        rows += memory_rows(config, log, raw)
    info["load average at end"] = _load()
    return {
        "machine": info,
        "config": asdict(config),
        "rows": [row.as_dict() for row in rows],
        "table": render(rows),
        "raw": raw,
        "seconds": time.perf_counter() - started,
    }


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())


def parse(argv: Sequence[str] | None) -> tuple[Config, str | None]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny inputs: checks the harness")
    parser.add_argument("--jobs", type=_ints, help="N for the ingest rows, e.g. 1000,10000")
    parser.add_argument("--runs", type=int, help="runs per figure (the median is reported)")
    parser.add_argument("--backends", help="sqlite,postgresql (default both)")
    parser.add_argument("--no-dlt", action="store_true", help="leave the dlt rows out")
    parser.add_argument("--sync-jobs", type=int, help="jobs in the sync rows (0: none)")
    parser.add_argument("--tracked", type=_ints, help="two tracked-set sizes for memory ('': none)")
    parser.add_argument("--due", type=int, help="jobs due in each memory sync")
    parser.add_argument("--concurrency", type=int, help="sync and fetch threads (default 8)")
    backends.add_output_options(parser, "rows")
    args = parser.parse_args(argv)
    config = QUICK if args.quick else FULL
    given = {
        "jobs": args.jobs,
        "runs": args.runs,
        "backends": tuple(args.backends.split(",")) if args.backends else None,
        "sync_jobs": args.sync_jobs,
        "tracked": args.tracked,
        "due": args.due,
        "concurrency": args.concurrency,
    }
    config = replace(config, **{k: v for k, v in given.items() if v is not None})
    config = replace(config, dlt=not args.no_dlt, postgres_url=args.postgres_url)
    if config.tracked and len(config.tracked) != 2:
        parser.error("--tracked takes two sizes, e.g. 10000,100000")
    if set(config.backends) - {"sqlite", "postgresql"}:
        parser.error("--backends: sqlite and/or postgresql")
    return config, args.json


def main(argv: Sequence[str] | None = None) -> int:
    config, json_path = parse(argv)
    if config.runs < 3:
        _log_to_stderr(f"note: {config.runs} run(s) per figure: not a median worth quoting")
    result = run(config)
    info = result["machine"]
    print(f"job-archiver benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    print(
        f"median of {config.runs} runs per figure; x floor = this figure's time / the floor's "
        f"time in the same run (median of per-run ratios)"
    )
    print()
    print(result["table"])
    met = [r["met"] for r in result["rows"] if r["met"] is not None]
    print()
    print(f"targets met: {sum(met)} of {len(met)}; took {result['seconds'] / 60:.1f} minutes")
    if json_path:
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2, default=str)
    return 0
