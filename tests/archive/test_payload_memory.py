"""What archiving a huge payload costs in memory: 10^6-element arrays and 1 MB strings stay
under 100 MB of growth, and the sync and ingest paths cost no more than the store alone. Each
measurement runs in its own process (tests/memory_probe.py), all of them at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from conftest import BACKENDS, fresh_database
from figures import record_figures

from archiver import db

PROBE = Path(__file__).parents[1] / "memory_probe.py"
MEMORY_LIMIT_MB = 100.0


def probe(url: str, path: str, shape: str) -> subprocess.Popen[str]:
    """Start a memory probe (see memory_probe.py); several run at once, each in its process."""
    return subprocess.Popen(
        [sys.executable, str(PROBE), url, path, shape],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def probe_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0 and "Traceback" not in err, err[-3000:]
    return json.loads(out)


SKIP_REASONS: dict[str, str] = {}
MemoryRuns = tuple[dict[tuple[str, str, str], dict[str, Any]], dict[str, str | None]]
MEMORY_PROBES = (
    *((backend, "sync", "realistic") for backend in BACKENDS),
    ("sqlite", "store", "distinct"),
    ("sqlite", "sync", "distinct"),
    ("sqlite", "ingest", "distinct"),
)


@pytest.fixture(scope="module")
def memory_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryRuns]:
    """Every memory probe of the module, started at once: each measures its own process, so they
    do not disturb one another, and together they take about the time of the slowest."""
    with ExitStack() as stack:
        urls: dict[str, str | None] = {}
        for backend in BACKENDS:
            folder = tmp_path_factory.mktemp("memory")
            try:
                url = stack.enter_context(fresh_database(backend, folder))
            except pytest.skip.Exception as skipped:
                urls[backend] = None  # the tests that need it skip with conftest's reason
                SKIP_REASONS[backend] = str(skipped)
                continue
            db.upgrade(url)
            urls[backend] = url
        running = {
            key: probe(url, key[1], key[2])
            for key in MEMORY_PROBES
            if (url := urls[key[0]]) is not None
        }
        yield {key: probe_result(process) for key, process in running.items()}, urls


@pytest.mark.parametrize("backend", BACKENDS)
def test_million_element_arrays_and_1mb_strings_stay_under_100_mb(
    memory_runs: MemoryRuns, backend: str
) -> None:
    """A 10^6-element byte array (a 1 MB spec as Go encodes []byte), 10^6 log ids and two 1 MB
    strings, fetched and archived by a sync pass (HTTP client + store): archived, with resident
    memory growing by under 100 MB."""
    results, urls = memory_runs
    if urls[backend] is None:
        pytest.skip(SKIP_REASONS[backend])
    result = results[(backend, "sync", "realistic")]
    assert result["outcome"] == "new"
    assert result["growth_mb"] < MEMORY_LIMIT_MB, result
    record_figures(f"hostile-memory-{backend}", inputs=1, growth_mb=round(result["growth_mb"]))


def test_the_sync_path_costs_no_more_memory_than_the_store(memory_runs: MemoryRuns) -> None:
    """Distinct integers (the worst case per element) fetched and archived cost about what
    archiving the body alone costs: the client's decoded copy is not kept alive while the store
    decodes the body again (it was, until sync.py dropped it: 71 MB against 50 MB here)."""
    results, _ = memory_runs
    store, sync = results[("sqlite", "store", "distinct")], results[("sqlite", "sync", "distinct")]
    assert (store["outcome"], sync["outcome"]) == ("new", "new")
    assert sync["growth_mb"] <= 1.1 * store["growth_mb"] + 5, (sync, store)
    record_figures(
        "hostile-memory-relative",
        store_mb=round(store["growth_mb"]),
        sync_mb=round(sync["growth_mb"]),
        ingest_mb=round(results[("sqlite", "ingest", "distinct")]["growth_mb"]),
    )


def test_ingest_costs_no_more_memory_than_the_store(memory_runs: MemoryRuns) -> None:
    results, _ = memory_runs
    store = results[("sqlite", "store", "distinct")]
    ingested = results[("sqlite", "ingest", "distinct")]
    assert ingested["outcome"] == "new"
    assert ingested["growth_mb"] <= 1.1 * store["growth_mb"] + 5, (ingested, store)
