"""``archiver demo`` as a new user runs it: piped, in an empty folder, it ends cleanly and leaves an
archive that reads like a real one (no payload dated after the moment it was fetched)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # the real command in a subprocess, with its simulator


def test_the_demo_runs_piped_and_dates_nothing_in_the_future(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "archiver", "demo", "--seconds", "8", "--jobs", "12"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "no breaks" in done.stdout
    with sqlite3.connect(tmp_path / "archiver.db") as con:
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
