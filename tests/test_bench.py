"""The benchmark harness runs end to end and prints every row with sane figures.

Why: nobody runs a benchmark until they need its numbers, and then it has rotted. This runs
``python -m bench`` the way a user does (a subprocess from the repository root) in a tiny mode:
20 jobs, one run, SQLite only, no dlt. It checks the harness, not the archiver's speed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # the benchmarks run in subprocesses on real databases

ROOT = Path(__file__).resolve().parent.parent
TINY = [
    "--jobs", "20",
    "--runs", "1",
    "--backends", "sqlite",
    "--no-dlt",
    "--sync-jobs", "20",
    "--tracked", "200,2000",
    "--due", "10",
]  # fmt: skip
PHASES = ("first archive (full history)", "unchanged re-archive", "10%-mutated re-archive")
EXPECTED = [
    figure
    for phase in PHASES
    for figure in (f"floor: {phase}", f"archiver: {phase}", f"dlt scd2: {phase}")
] + [
    "fetch: bare ApiClient, concurrency 8",
    "sync: first sync (full history), concurrency 8",
    "sync: unchanged re-sync, concurrency 8",
    "memory: sync pass, 200 tracked, 10 due",
    "memory: sync pass, 2,000 tracked, 10 due",
    "memory: sync pass, 200 tracked, all due, stopped after 10",
    "memory: sync pass, 2,000 tracked, all due, stopped after 10",
]


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m MODULE ARGS`` from the repository root, as a user runs the benchmarks."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_tiny_run_prints_every_row_with_positive_figures(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = run_module("bench", *TINY, "--json", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [r["figure"] for r in rows] == EXPECTED
    for row in rows:
        assert row["figure"] in done.stdout
        if row["figure"].startswith("dlt"):
            assert row["note"] == "skipped (--no-dlt)"
            continue
        assert row["median"] > 0, row
        assert row["runs"] == 1
        if row["unit"] == "s":
            assert row["rate"] > 0, row
        if row["target"]:
            assert row["measured"] > 0, row
            assert isinstance(row["met"], bool)
    archived = [r for r in rows if r["figure"].startswith("archiver")]
    assert all(r["vs_floor"] > 0 for r in archived)
    assert result["machine"]["cores"]
    assert "targets met:" in done.stdout


def test_audit_bench_verifies_and_rebuilds_a_small_archive() -> None:
    done = run_module("bench.audit", "--jobs", "15", "--runs", "1")
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith("| archiver ")]
    assert [r.split("|")[1].strip() for r in rows] == [
        "archiver verify",
        "archiver rebuild (replay + compare)",
    ]
    assert all(float(r.split("|")[2]) > 0 for r in rows)


def test_the_profile_names_every_stage_and_accounts_for_the_whole_phase() -> None:
    """``python -m bench.profile`` is how bench/README explains the targets out of reach."""
    done = run_module("bench.profile", "--jobs", "10", "--phase", "mutated")
    assert done.returncode == 0, done.stderr[-3000:]
    shares = {}
    for line in done.stdout.splitlines():
        if line.startswith("| ") and line.rstrip().endswith("% |"):
            stage, share = (cell.strip() for cell in line.strip("|").rsplit("|", 1))
            shares[stage] = int(share.rstrip("%"))
    assert set(shares) >= {"parse fields into typed columns", "commit"}, done.stdout
    assert len(shares) == 9, done.stdout
    assert 95 <= sum(shares.values()) <= 105, shares  # the stages and the rest make the whole
    assert done.stdout.startswith("mutated phase, 10 jobs, sqlite:"), done.stdout


def test_the_watched_workflows_benchmark_runs_and_fetches_only_the_changed_jobs() -> None:
    """``python -m bench.discovery`` tiny: 200 jobs in 4 workflows, 5% changed, no rate limit.
    The harness itself fails unless the listing pass fetched exactly the changed jobs."""
    tiny = ["--jobs", "200", "--workflows", "4", "--changed", "0.05", "--runs", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.discovery", *tiny, "--rate-limit", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {
        line.split("|")[1].strip(): line.split("|")[2:]
        for line in done.stdout.splitlines()
        if line.startswith("| ") and not line.startswith("| pass")
    }
    listing = rows["listing (list each workflow, fetch what changed)"]
    assert [c.strip() for c in listing[:2]] == ["14", "10"]  # 4 listings + 10 fetches; 10 jobs
    assert listing[4].strip() == "yes"  # requests <= 4 + 1.1 * 10
    assert [c.strip() for c in rows["per-job polling (every tracked job)"][:2]] == ["200", "200"]


def test_the_size_bench_adds_up_and_counts_the_raw_bytes_of_the_bodies_held(
    tmp_path: Path,
) -> None:
    """``python -m bench.size`` tiny (2 jobs): every byte of the total is in one relation, and the
    raw figure is the bytes of the bodies that changed from one poll to the next (one snapshot
    each), worked out here from the same lifecycle without the archive."""
    from bench.size import lifecycle

    backends = "sqlite"
    postgres = os.environ.get("ARCHIVER_TEST_POSTGRES_URL")
    extra = ["--postgres-url", postgres] if postgres else []
    if postgres:
        backends += ",postgresql"
    out = tmp_path / "size.json"
    done = run_module(
        "bench.size", "--jobs", "2", "--backends", backends, "--json", str(out), *extra
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # per job, in poll order: a body unlike the one before it is a new snapshot
    by_job: dict[str, list[str]] = {}
    for _, entries in lifecycle(2):
        for entry in entries:
            assert isinstance(entry.raw, str)
            by_job.setdefault(json.loads(entry.raw)["id"], []).append(entry.raw)
    polls = sum(len(bodies) for bodies in by_job.values())
    held = snapshots = 0
    for bodies in by_job.values():
        previous = None
        for body in bodies:
            if body != previous:
                held += len(body.encode("utf-8"))
                snapshots += 1
            previous = body
    results = json.loads(out.read_text())
    assert [r["backend"] for r in results] == backends.split(",")
    for r in results:
        assert r["polls"] == polls
        assert (r["snapshots"], r["raw_bytes"]) == (snapshots, held)
        for size, other in (("bytes", "other_bytes"), ("compacted", "other_compacted")):
            parts = sum(rel[size] for rel in r["relations"]) + r[other]
            assert parts == r["total" if size == "bytes" else "total_compacted"]
        assert sum(r["per_table"].values()) + r["other_bytes"] == r["total"]
        history = {rel["name"] for rel in r["relations"] if rel["kind"] == "table"}
        assert {"job_snapshots", "job_changes", "task_versions", "job_versions"} <= history
        assert r["ratio"] == r["total"] / r["raw_bytes"]
        assert f"{r['total']:,}" in done.stdout
