"""``archiver demo`` as a new user runs it: piped, in an empty folder, it ends cleanly and leaves an
archive that reads like a real one (no payload dated after the moment it was fetched); run again in
the same folder it starts over in its own file, and never touches the real archive."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # the real command in a subprocess, with its simulator


def run_demo(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "archiver", "demo", "--seconds", "8", "--jobs", "12", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def cost_table_jobs(stdout: str) -> int:
    """The jobs column of the demo's "cost by workflow" table (workflow, name, jobs, cost),
    summed."""
    table = stdout.split("cost by workflow", 1)[1].split("history of", 1)[0]
    return sum(int(m.group(1)) for m in re.finditer(r"^wf-\S+ .*?(\d+)\s+\d+$", table, re.M))


def test_the_demo_runs_piped_and_dates_nothing_in_the_future(tmp_path: Path) -> None:
    done = run_demo(tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "no breaks" in done.stdout
    with sqlite3.connect(tmp_path / "archiver-demo.db") as con:
        problems = con.execute("select field, message from ingest_problems").fetchall()
        versions = con.execute("select count(*) from job_versions").fetchone()[0]
        # the provider's times against when the archiver saw them (text compares in this format)
        future = con.execute(
            "select count(*) from job_versions where updated_at > valid_from "
            "or finished_at > valid_from"
        ).fetchone()[0]
    assert versions > 12  # the jobs moved through states while the demo ran
    assert problems == []
    assert future == 0


def test_a_second_demo_in_the_same_folder_starts_over_and_leaves_the_archive_alone(
    tmp_path: Path,
) -> None:
    real = tmp_path / "elsewhere" / "real.db"
    real.parent.mkdir()
    env = {**os.environ, "ARCHIVER_DATABASE_URL": f"sqlite:///{real}"}
    first = run_demo(tmp_path, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_demo(tmp_path, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "404" not in second.stderr
    assert "./archiver-demo.db" in second.stdout  # it says where it archives
    assert "sqlite3 archiver-demo.db " in second.stdout  # the closing hint names its file
    with sqlite3.connect(tmp_path / "archiver-demo.db") as con:
        tracked = con.execute("select count(*) from tracked_jobs").fetchone()[0]
        rules = con.execute("select project_id, state from watch_rules").fetchall()
    # its own jobs only: the 12 it starts with and those its passes discovered meanwhile
    assert tracked >= 12
    assert cost_table_jobs(second.stdout) == tracked
    assert rules == [("", "active")]  # it watches every workflow rather than a list of jobs
    assert not (tmp_path / "archiver.db").exists()  # the default archive
    assert not real.exists()  # nor ARCHIVER_DATABASE_URL's


def test_the_demo_refuses_an_explicit_database_that_tracks_jobs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'real.db'}"
    for args in (["db", "upgrade"], ["track", "wf-1", "job-1"]):
        subprocess.run(
            [sys.executable, "-m", "archiver", *args, "--database-url", url],
            check=True,
            capture_output=True,
        )
    done = run_demo(tmp_path, "--database-url", url)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"archiver: error: {url} already tracks 1 job: the demo needs an archive of its own "
        "(leave out --database-url for a fresh ./archiver-demo.db)"
    ]
