"""A small archive built by ingesting a scripted sequence of payloads, for the reporting tests.

Every expected answer in tests/reporting/test_reports.py is computed by hand from this script, so
keep the timeline below in step with the code.

    job    workflow  created_by  created_at (UTC)     estimated  tasks (block)
    job-1  wf-a      alice       2026-10-01 08:00     1200 s     t1 ortho@1.0, t2 tiler@2.0
    job-2  wf-a      bob         2026-10-01 09:00     7200 s     t1, t2 ortho@1.0, t3 tiler@2.0
    job-3  wf-b      alice       2026-10-02 23:30 (*) 600 s      t1 tiler@2.0, t2 mosaic@0.9
    job-4  wf-b      -           -                    -          none; never a cost

    (*) sent as 2026-10-03T01:30:00+02:00: its UTC day is the 2nd, its local day the 3rd.

    fetched            job    status     cost  what else
    10-01 10:00        job-1  queued     0     val errors E1 (reader), E2 (writer)
    10-01 10:00        job-2  running    200   no val errors (null)
    10-01 10:10        job-1  running    100   t1 running; E2 resolved
    10-01 10:20        job-1  (the 10:10 payload again: nothing but last_seen_at moves)
    10-01 10:30        job-1  completed  300   t1, t2 completed (100 s, 200 s); took 1500 s
    10-01 10:40        job-2  failed     250   t1, t2 completed (50 s, 70 s), t3 failed oom
                                               (30 s); E3 (reader) opened
    10-01 11:00        job-2  an older payload (updated_at 10:05): stale, kept as evidence
    10-01 12:00:01     job-1  a failed fetch (503) in sync run 2
    10-02 08:00, 09:00 job-4  queued     -     the same payload twice
    10-02 09:00        job-1  completed  350   re-priced after completion
    10-02 12:00        job-2  failed     220   re-priced after failure; E3 resolved (null)
    10-02 23:45        job-3  running    40    E4, E5 (writer)
    10-03 00:15:00.25  job-3  running    90    t1 failed oom (40 s), t2 failed, no type (10 s)

Sync runs: 10-01 10:00-10:00:05, 10-01 12:00-12:00:03 (the failure), 10-02 09:00-09:00:02.

Workflows (written by hand, ``workflow_rows``): wf-a "Ortho", estimate 200, from 10-01 08:30
(after job-1 was created, before job-2), renamed "Orthorectify" with estimate 300 from 10-02
00:00; wf-b was never described (no name, no estimate).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import factories
from workflow_rows import Version, add_workflow

from archiver import db
from archiver.archive import runs
from archiver.archive.batches import archive_one

ZERO = "0001-01-01T00:00:00Z"


def at(text: str) -> datetime:
    """``"10-01 10:00"`` (or with seconds) as an aware UTC time in October 2026."""
    return datetime.fromisoformat(f"2026-{text}").replace(tzinfo=UTC)


def block(name: str, version: str) -> dict[str, str]:
    return {"id": f"blk-{name}", "name": name, "version": version}


def task(task_id: str, status: str, blk: dict[str, str], taken: str, **more: Any) -> dict:
    return factories.task(task_id, status=status, block_info=blk, time_taken=taken, **more)


def val_error(component: str, err: str, reason: str) -> dict[str, str]:
    return {"from": "in", "to": "out", "err": err, "reason": reason, "component_name": component}


ORTHO, TILER, MOSAIC = block("ortho", "1.0"), block("tiler", "2.0"), block("mosaic", "0.9")
E1 = val_error("reader", "missing band", "band 4 absent")
E2 = val_error("writer", "bad crs", "EPSG:0")
E3 = val_error("reader", "missing band", "band 2 absent")
E4 = val_error("writer", "bad crs", "EPSG:1")
E5 = val_error("writer", "bad crs", "EPSG:2")


def job(job_id: str, workflow_id: str, **fields: Any) -> dict[str, Any]:
    body = factories.job(job_id, workflow_id, tasks=0, val_errors=0)
    body.update(finished_at=ZERO, exec_updated_at="", **fields)
    return body


def job_1() -> list[tuple[str, dict[str, Any]]]:
    p1 = job(
        "job-1",
        "wf-a",
        created_by="alice",
        created_at="2026-10-01T08:00:00Z",
        estimated_duration=1200,
        status="queued",
        progress="0%",
        cost=0,
        time_taken="0s",
        updated_at="2026-10-01T10:00:00Z",
        tasks=[task("t1", "queued", ORTHO, "0s"), task("t2", "queued", TILER, "0s")],
        val_errors=[E1, E2],
    )
    p2 = factories.evolve(
        p1,
        status="running",
        progress="50%",
        cost=100,
        time_taken="300s",
        updated_at="2026-10-01T10:10:00Z",
        val_errors=[E1],
    )
    p2["tasks"][0] = task("t1", "running", ORTHO, "60s")
    p3 = factories.evolve(
        p2,
        status="completed",
        progress="100%",
        cost=300,
        time_taken="1500s",
        updated_at="2026-10-01T10:30:00Z",
        finished_at="2026-10-01T10:29:00Z",
    )
    p3["tasks"] = [task("t1", "completed", ORTHO, "100s"), task("t2", "completed", TILER, "200s")]
    p4 = factories.evolve(p3, cost=350, updated_at="2026-10-02T08:59:00Z")
    return [
        ("10-01 10:00", p1),
        ("10-01 10:10", p2),
        ("10-01 10:20", p2),
        ("10-01 10:30", p3),
        ("10-02 09:00", p4),
    ]


def job_2() -> list[tuple[str, dict[str, Any]]]:
    p1 = job(
        "job-2",
        "wf-a",
        created_by="bob",
        created_at="2026-10-01T09:00:00Z",
        estimated_duration=7200,
        status="running",
        progress="30%",
        cost=200,
        time_taken="300s",
        updated_at="2026-10-01T10:00:00Z",
        tasks=[
            task("t1", "running", ORTHO, "30s"),
            task("t2", "running", ORTHO, "30s"),
            task("t3", "queued", TILER, "0s"),
        ],
        val_errors=None,
    )
    stale = factories.evolve(p1, progress="31%", updated_at="2026-10-01T10:05:00Z")
    p2 = factories.evolve(
        p1,
        status="failed",
        progress="80%",
        cost=250,
        time_taken="2400s",
        updated_at="2026-10-01T10:40:00Z",
        finished_at="2026-10-01T10:39:00Z",
        tasks=[
            task("t1", "completed", ORTHO, "50s"),
            task("t2", "completed", ORTHO, "70s"),
            task("t3", "failed", TILER, "30s", failure_type="oom", err_msg="out of memory"),
        ],
        val_errors=[E3],
    )
    p3 = factories.evolve(p2, cost=220, updated_at="2026-10-02T11:59:00Z", val_errors=None)
    return [
        ("10-01 10:00", p1),
        ("10-01 10:40", p2),
        ("10-01 11:00", stale),
        ("10-02 12:00", p3),
    ]


def job_3() -> list[tuple[str, dict[str, Any]]]:
    p1 = job(
        "job-3",
        "wf-b",
        created_by="alice",
        created_at="2026-10-03T01:30:00+02:00",
        estimated_duration=600,
        status="running",
        progress="20%",
        cost=40,
        time_taken="100s",
        updated_at="2026-10-02T23:45:00Z",
        tasks=[task("t1", "running", TILER, "20s"), task("t2", "running", MOSAIC, "5s")],
        val_errors=[E4, E5],
    )
    p2 = factories.evolve(
        p1,
        progress="60%",
        cost=90,
        time_taken="500s",
        updated_at="2026-10-03T00:15:00Z",
        tasks=[
            task("t1", "failed", TILER, "40s", failure_type="oom"),
            task("t2", "failed", MOSAIC, "10s"),
        ],
    )
    return [("10-02 23:45", p1), ("10-03 00:15:00.250", p2)]


def job_4() -> list[tuple[str, dict[str, Any]]]:
    p1 = job("job-4", "wf-b", status="queued", progress="0%", time_taken="0s", tasks=[])
    for absent in ("created_by", "created_at", "cost", "estimated_duration"):
        del p1[absent]
    p1["val_errors"] = None
    return [("10-02 08:00", p1), ("10-02 09:00", p1)]


def build(url: str) -> None:
    """Archive the script in fetch order, with its sync runs and the one failed fetch."""
    engine = db.make_engine(url)
    try:
        sessions = db.session_factory(engine)
        payloads = [*job_1(), *job_2(), *job_3(), *job_4()]
        for when, payload in sorted(payloads, key=lambda item: item[0]):
            archive_one(sessions, payload, at(when))
        with sessions.begin() as session:
            for started, finished in (
                ("10-01 10:00", "10-01 10:00:05"),
                ("10-01 12:00", "10-01 12:00:03"),
                ("10-02 09:00", "10-02 09:00:02"),
            ):
                run_id = runs.start_run(session, "sync", at(started))
                failed = int(started == "10-01 12:00")
                if failed:
                    runs.record_error(
                        session,
                        run_id,
                        workflow_id="wf-a",
                        job_id="job-1",
                        when=at("10-01 12:00:01"),
                        reason="server_error",
                        message="503 Service Unavailable",
                        http_status=503,
                        error_code="unavailable",
                    )
                runs.finish_run(session, run_id, {"jobs_total": 2, "failed": failed}, at(finished))
        add_workflow(
            engine,
            "wf-a",
            [
                Version("Ortho", 200, at("10-01 08:30")),
                Version("Orthorectify", 300, at("10-02 00:00")),
            ],
        )
    finally:
        engine.dispose()
