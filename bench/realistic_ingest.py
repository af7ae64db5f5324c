"""Ingest rate of one realistic job shape (20 tasks, 3 validation errors) into SQLite.

    python -m bench.realistic_ingest

The figure issue 2 asked for, kept small and separate from the full harness (``python -m bench``):
200 such jobs archived one transaction each (first archive, full history), then the same payloads
again five minutes later (unchanged re-archive), median of 3 runs on a fresh file each.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta

from archiver import db
from archiver.archive.batches import archive_one
from archiver.sim import jobgen
from archiver.sim.payloads import job_payload


def payloads() -> list[str]:
    bodies = []
    for i in range(200):
        body = job_payload(jobgen.plan_job(11, i, tasks=(20, 20)), 20.0, time_scale=60.0)
        body["val_errors"] = [
            {
                "from": f"c{k}",
                "to": f"c{k + 1}",
                "err": "mismatch",
                "reason": f"r{k}",
                "component_name": f"c{k}",
            }
            for k in range(3)
        ]
        bodies.append(json.dumps(body))
    return bodies


def main() -> None:
    bodies = payloads()
    firsts: list[float] = []
    agains: list[float] = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/a.db"
            db.upgrade(url)
            e = db.make_engine(url)
            sessions = db.session_factory(e)
            t0 = datetime(2026, 10, 1, tzinfo=UTC)
            s = time.perf_counter()
            for b in bodies:
                archive_one(sessions, b, t0)
            firsts.append(len(bodies) / (time.perf_counter() - s))
            s = time.perf_counter()
            for b in bodies:
                archive_one(sessions, b, t0 + timedelta(minutes=5))
            agains.append(len(bodies) / (time.perf_counter() - s))
            e.dispose()
    print("200 jobs x 20 tasks x 3 validation errors, SQLite (WAL), one transaction per job")
    print(f"first archive:        {statistics.median(firsts):5.0f} jobs/s (median of {firsts})")
    print(f"unchanged re-archive: {statistics.median(agains):5.0f} jobs/s (median of {agains})")


if __name__ == "__main__":
    main()
