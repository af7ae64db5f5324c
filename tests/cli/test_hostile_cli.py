"""The hostile-payload catalogue (tests/hostile_catalogue.py) through `archiver ingest` as users
run it, in a subprocess per database: one `failed` line per rejected payload, exit 1, no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from archive_dump import Archive
from conftest import BACKENDS
from figures import record_figures
from hostile_catalogue import CATALOGUE, REJECTED, T1, hostile_archive, victim

pytestmark = (
    pytest.mark.integration
)  # `archiver ingest` in a subprocess, on databases opened by hostile_archive


@pytest.fixture(scope="module", params=BACKENDS)
def archive(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Archive]:
    """One migrated database per backend for the whole module (see hostile_archive)."""
    with hostile_archive(request.param, tmp_path_factory) as opened:
        yield opened


# every catalogue body but the megabyte ones (in-process in tests/archive/test_hostile_payloads.py)
# and known defects
CLI_SAMPLE = tuple(h for h in CATALOGUE if "1mb" not in h.name and h.defect is None)


def test_catalogue_through_the_cli_without_a_traceback(archive: Archive, tmp_path: Path) -> None:
    """The catalogue as files, in one `archiver ingest` subprocess after the victims: one
    `failed` line per rejected payload, none for the others, exit 1, no traceback."""
    victims = tmp_path / "victims.jsonl"
    victims.write_text(
        "\n".join(
            json.dumps(
                {"fetched_at": "2026-10-01T10:06:00Z", "payload": victim(f"cli-{h.name}", "job-1")}
            )
            for h in CLI_SAMPLE
        )
    )
    files = [str(victims)]
    for hostile in CLI_SAMPLE:
        path = tmp_path / f"{hostile.name}.json"
        path.write_bytes(hostile.body(f"cli-{hostile.name}", "job-1"))
        files.append(str(path))
    command = [sys.executable, "-m", "archiver", "ingest", "--quiet"]
    command += ["--fetched-at", T1.isoformat(), "--database-url", archive.url, *files]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1, proc.stderr[-3000:]
    failed = {
        Path(line.split()[1].rstrip(":").split("[")[0]).stem
        for line in proc.stderr.splitlines()
        if line.startswith("failed ")
    }
    rejected = {h.name for h in CLI_SAMPLE if h.outcome == REJECTED}
    assert failed == rejected
    assert not [line for line in proc.stderr.splitlines() if "unexpected" in line]
    record_figures("hostile-cli", inputs=len(files) - 1, rejected=len(rejected))
