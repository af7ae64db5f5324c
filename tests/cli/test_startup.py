"""``archiver -h`` starts fast: help imports click and the CLI, not the database or HTTP stacks.

Run as the user runs it, in a subprocess, with ``python -X importtime`` naming every module the
process imported: counting modules, not seconds, so a loaded machine cannot make it flaky.
SQLAlchemy and Alembic cost ~7x the time of click and rich together; a command imports them when it
runs. Help still shows every option and each setting's declared default.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "alembic", "requests", "urllib3", "rich")


def imported_by(*args: str) -> tuple[set[str], str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "archiver", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    return modules, done.stdout


@pytest.mark.parametrize(
    "args",
    [["--help"], ["-h"], ["report", "-h"], ["report", "cost", "-h"], ["sync", "-h"], ["db", "-h"]],
    ids=" ".join,
)
def test_help_imports_no_database_or_http_library(args: list[str]) -> None:
    modules, out = imported_by(*args)
    assert "archiver.cli.common" in modules  # the measurement sees our own imports
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY) == []
    assert "Usage: " in out


def test_help_still_shows_every_setting_with_its_declared_default() -> None:
    _, out = imported_by("sync", "-h")
    for text in (
        "--database-url",
        "default: sqlite:///archiver.db",
        "--api-key",
        "env var: PIXXEL_API_KEY",
    ):
        assert text in " ".join(out.split())
