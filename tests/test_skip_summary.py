"""A run without the database URLs says why it skips, once per reason, not once per test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration  # a pytest run in a subprocess

ROOT = Path(__file__).resolve().parents[1]


def test_skips_are_summarized_one_line_per_reason() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "ARCHIVER_TEST_POSTGRES_URL",
            "ARCHIVER_TEST_MYSQL_URL",
            "ARCHIVER_REQUIRE_ALL_DATABASES",
            "PYTEST_ADDOPTS",
        }
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/audit"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:]
    lines = done.stdout.splitlines()
    skipped = [line for line in lines if line.startswith("SKIPPED")]
    counts = {line.split(": ", 1)[1]: int(line.split()[1].rstrip(":")) for line in skipped}
    postgres = "postgresql tests need ARCHIVER_TEST_POSTGRES_URL (bash .ci/run sets it)"
    mariadb = "mariadb tests need ARCHIVER_TEST_MYSQL_URL (bash .ci/run sets it)"
    assert sorted(counts) == sorted([postgres, mariadb])  # one line per reason
    assert len(skipped) == 2 and counts[postgres] == counts[mariadb] > 1
    total = int(lines[-1].split(" skipped")[0].split()[-1])  # "N passed, M skipped in …"
    assert sum(counts.values()) == total
