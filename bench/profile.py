"""``python -m bench.profile``: where an ingest phase spends its time, by stage, under cProfile.

    python -m bench.profile                    # first archive of 1,000 jobs, SQLite
    python -m bench.profile --phase mutated    # the 10%-mutated re-archive (after first, unchanged)
    python -m bench.profile --url postgresql://postgres@127.0.0.1:5432/test   # a database of yours

The workload and the batches are the benchmark's (``bench.workload``, ``bench.archive``). Each
stage's share is its functions' cumulative time over the phase's, so the shares say where a
speed-up can come from (cProfile slows pure Python more than C, so they are shares, not seconds).
The target ratios in ``bench/README.md`` that are out of reach are explained with this table.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from archiver import db
from bench.archive import Archiver
from bench.workload import PHASES, phases

# stage -> the functions (file suffix, name) whose cumulative time is the stage's; none of them
# calls another stage's
STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "decode + identify (JSON, ids, canonical hash)": (("archiver/archive/payload.py", "identify"),),
    "parse fields into typed columns": (("archiver/archive/payload.py", "_read_fields"),),
    "hash chain (encode + SHA-256 per history row)": (("archiver/archive/chain.py", "link"),),
    "compare with the archived state (changed fields)": (
        ("archiver/archive/changelog.py", "changed_fields"),
    ),
    "read the archived state (jobs, tasks, body digests)": (
        ("archiver/archive/load.py", "load_jobs"),
        ("archiver/archive/load.py", "load_task_digests"),
        ("archiver/archive/load.py", "load_details"),
        ("archiver/archive/load.py", "touch_same_bodies"),
    ),
    "write: driver parameters (bind processors)": (
        ("archiver/archive/statements.py", "parameters"),
    ),
    "write: driver executemany (the database's work)": (("~", "<method 'executemany' of"),),
    "commit": (("~", "<method 'commit' of"),),
}


def stage_seconds(stats: pstats.Stats) -> dict[str, float]:
    out = dict.fromkeys(STAGES, 0.0)
    for (path, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        cumulative = row[3]
        for stage, functions in STAGES.items():
            for suffix, wanted in functions:
                special = suffix == "~" and name.startswith(wanted)
                if special or (path.endswith(suffix) and name == wanted):
                    out[stage] += cumulative
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--phase", choices=PHASES, default="first")
    parser.add_argument("--url", help="an empty database (default: a fresh SQLite file)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        url = args.url or f"sqlite:///{Path(scratch) / 'profile.db'}"
        db.upgrade(url)
        archiver = Archiver(url)
        try:
            for phase in phases(args.jobs):
                if phase.name != args.phase:
                    archiver.run(phase)
                    continue
                profile = cProfile.Profile()
                started = time.perf_counter()
                profile.enable()
                archiver.run(phase)
                profile.disable()
                total = time.perf_counter() - started
                break
        finally:
            archiver.close()
    seconds = stage_seconds(pstats.Stats(profile))
    print(f"{args.phase} phase, {args.jobs:,} jobs, {url.split(':')[0]}: {total:.2f} s profiled")
    print("| stage | share |\n| --- | ---: |")
    for stage, spent in sorted(seconds.items(), key=lambda item: -item[1]):
        print(f"| {stage} | {spent / total:.0%} |")
    rest = total - sum(seconds.values())
    print(f"| everything else (planning: change rows, row dicts; batching) | {rest / total:.0%} |")


if __name__ == "__main__":
    main()
