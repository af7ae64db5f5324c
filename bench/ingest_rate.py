"""Ingest rate of realistic jobs (20 tasks, 3 validation errors) into SQLite, per job transaction.

    python -m bench.ingest_rate [--jobs 500] [--runs 3]

Prints jobs/s for a first archive (full history) and for an unchanged re-archive, each the median
of ``--runs`` runs on a fresh file, next to a floor measured in the same run: the same number of
job, task and change rows written by the stdlib ``sqlite3`` ``executemany`` in one transaction
per job with the same pragmas. The full comparison against dlt is ``bench/`` issue 6's harness.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from archiver import db, jobgen
from archiver.ingest import archive_one


def payloads(n: int) -> list[str]:
    out = []
    for i in range(n):
        plan = jobgen.plan_job(11, i, tasks=(20, 20))
        body = jobgen.job_payload(plan, 20.0, time_scale=60.0)
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
        out.append(json.dumps(body))
    return out


def run_archiver(bodies: list[str], path: Path) -> tuple[float, float]:
    url = f"sqlite:///{path}"
    db.upgrade(url)
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    t0 = datetime(2026, 10, 1, tzinfo=UTC)
    start = time.perf_counter()
    for body in bodies:
        archive_one(sessions, body, t0)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for body in bodies:
        archive_one(sessions, body, t0 + timedelta(minutes=5))
    again = time.perf_counter() - start
    engine.dispose()
    return first, again


def run_floor(bodies: list[str], path: Path) -> float:
    """Rows of the same shape and count, bare driver, one transaction per job."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("CREATE TABLE jobs (wf TEXT, job TEXT, body TEXT, PRIMARY KEY (wf, job))")
    con.execute(
        "CREATE TABLE tasks (wf TEXT, job TEXT, task TEXT, body TEXT, PRIMARY KEY (wf, job, task))"
    )
    con.execute("CREATE TABLE changes (wf TEXT, job TEXT, field TEXT, new TEXT)")
    start = time.perf_counter()
    for body in bodies:
        doc = json.loads(body)
        wf, job = doc["workflow_id"], doc["id"]
        con.execute("BEGIN IMMEDIATE")
        con.execute(
            "INSERT INTO jobs VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET body = excluded.body",
            (wf, job, body),
        )
        con.executemany(
            "INSERT INTO tasks VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET body = excluded.body",
            [(wf, job, t["id"], json.dumps(t)) for t in doc["tasks"]],
        )
        fields = [
            (wf, job, f"{t['id']}.{k}", json.dumps(v)) for t in doc["tasks"] for k, v in t.items()
        ]
        con.executemany("INSERT INTO changes VALUES (?, ?, ?, ?)", fields)
        con.execute("COMMIT")
    elapsed = time.perf_counter() - start
    con.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    bodies = payloads(args.jobs)
    firsts, agains, floors = [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            first, again = run_archiver(bodies, Path(tmp) / "a.db")
            floors.append(run_floor(bodies, Path(tmp) / "floor.db"))
        firsts.append(first)
        agains.append(again)
    n = args.jobs
    f, a, fl = statistics.median(firsts), statistics.median(agains), statistics.median(floors)
    print(
        f"{n} jobs x 20 tasks x 3 validation errors, SQLite file (WAL), median of {args.runs} runs"
    )
    print(f"first archive      {n / f:8.0f} jobs/s   {f / fl:5.2f}x the floor's time")
    print(f"unchanged re-archive {n / a:6.0f} jobs/s   {a / fl:5.2f}x the floor's time")
    print(f"floor (sqlite3)    {n / fl:8.0f} jobs/s")


if __name__ == "__main__":
    main()
