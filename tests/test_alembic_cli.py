"""Alembic's own command, run by a developer from the checkout, says what it migrates.

``alembic upgrade`` / ``downgrade`` in a subprocess, from the repository's root (where alembic.ini
is): its INFO lines ("Running upgrade …") reach stderr, as with Alembic's template. ``archiver db
upgrade``, which has no ini file, still prints only its own line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ARCHIVER_DATABASE_URL": url},
    )


def test_alembic_upgrade_and_downgrade_say_what_they_run(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dev.db'}"
    up = run("-m", "alembic", "upgrade", "head", url=url)
    assert up.returncode == 0, up.stderr
    assert "Running upgrade  -> " in up.stderr
    down = run("-m", "alembic", "downgrade", "base", url=url)
    assert down.returncode == 0, down.stderr
    assert "Running downgrade " in down.stderr


def test_archiver_db_upgrade_prints_only_its_own_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    done = run("-m", "archiver", "db", "upgrade", url=url)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    [line] = done.stdout.splitlines()
    assert line.startswith(f"database {url} is at revision ")
    assert not line.endswith("revision head")  # the revision itself, not the word
