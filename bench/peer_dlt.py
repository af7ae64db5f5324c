"""The peer: dlt loading the same payloads into SQLite with ``merge`` + the ``scd2`` strategy.

dlt is what a team would reach for instead of the archiver, so the archiver must beat it where it
claims to be better (history kept cheaply; unchanged polls nearly free). Configured for a shape
like the archive's, so neither side is made to do silly work: tasks and validation errors become
child tables (``max_table_nesting=1``); byte arrays, ``depends_on`` and ``spec`` stay JSON columns
(dlt's default would explode every byte of a log into a row of its own). scd2 retires records
absent from a load, so every phase loads all N payloads, as the archiver's phases do. The payloads
are decoded inside the resource: both sides start from the same JSON text.

Optional: installed with ``pip install 'job-archiver[bench]'``; without it the rows say so.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.workload import Phase


def missing() -> str | None:
    """None if dlt can run here, else the reason shown in its rows."""
    try:
        import dlt
        import dlt.destinations  # noqa: F401
    except ImportError:
        return "dlt is not installed: pip install 'job-archiver[bench]' to compare with it"
    return None


def run(phases: Sequence[Phase]) -> list[float]:
    """Seconds for each phase, loaded one after the other into a fresh SQLite file."""
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    import dlt

    with tempfile.TemporaryDirectory(prefix="bench-dlt-") as tmp:
        pipeline = dlt.pipeline(
            pipeline_name="bench_jobs",
            pipelines_dir=str(Path(tmp) / "pipelines"),
            destination=dlt.destinations.sqlalchemy(f"sqlite:///{Path(tmp) / 'dlt.db'}"),
            dataset_name="main",
        )
        seconds = []
        for phase in phases:
            start = time.perf_counter()
            info = pipeline.run(_resource(dlt, phase.bodies))
            seconds.append(time.perf_counter() - start)
            info.raise_on_failed_jobs()
        return seconds


def _resource(dlt: Any, bodies: Sequence[str]) -> Any:
    @dlt.resource(
        name="jobs",
        write_disposition={"disposition": "merge", "strategy": "scd2"},
        max_table_nesting=1,
        columns={"spec": {"data_type": "json"}},
    )
    def jobs() -> Iterator[dict[str, Any]]:
        for body in bodies:
            yield json.loads(body)

    return jobs()
