"""The commands that only read never create an archive: a mistyped SQLite path is an error.

Run as the user meets it, ``archiver`` in a subprocess: SQLite creates any file it is asked to open
for writing, so before, ``archiver tracked --database-url sqlite:///typo.db`` left an empty
WAL-mode ``typo.db`` behind and then complained about its schema. Now the file is opened read-only:
one line says it does not exist, exit status 1, and the folder is as it was.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

READING = [
    ["tracked"],
    ["history", "wf-1", "job-1"],
    ["report", "cost"],
    ["report", "status"],
    ["report", "failures"],
    ["report", "as-of", "2026-10-01"],
    ["report", "html", "--output", "page.html"],
    ["verify"],
    ["rebuild", "--dry-run"],
    ["db", "check"],
]


def archiver(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archiver", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", READING, ids=" ".join)
def test_a_reading_command_on_a_missing_file_says_so_and_creates_nothing(
    command: list[str], tmp_path: Path
) -> None:
    done = archiver(*command, "--database-url", "sqlite:///typo.db", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "archiver: error: database file typo.db does not exist (sqlite:///typo.db): check the "
        "URL; `archiver db upgrade` creates an archive"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_reading_command_reads_an_archive_it_may_not_write(tmp_path: Path) -> None:
    """Read-only all the way down: a file the user may only read is enough for a report."""
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    assert archiver("db", "upgrade", "--database-url", url, cwd=tmp_path).returncode == 0
    assert archiver("track", "wf-1", "job-1", "--database-url", url, cwd=tmp_path).returncode == 0
    for leftover in tmp_path.glob("archive.db-*"):
        leftover.unlink()  # the -wal and -shm of the writer, checkpointed on close
    (tmp_path / "archive.db").chmod(0o444)
    done = archiver("tracked", "--format", "csv", "--database-url", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].startswith("wf-1,job-1,")
