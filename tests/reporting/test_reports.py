"""The reporting views and reports give hand-computed answers, the same on every database.

The archive is the scripted one of ``report_archive.py`` (its docstring has the timeline every
expectation below is computed from), built once per database and only read here.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from report_archive import at
from sqlalchemy import bindparam, inspect, text
from sqlalchemy.dialects.mysql.reserved_words import RESERVED_WORDS_MARIADB
from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as POSTGRES_RESERVED
from sqlalchemy.dialects.sqlite.base import SQLiteIdentifierPreparer
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError

from archiver import db
from archiver.cli import cli
from archiver.reporting import reports
from archiver.sqltypes import UTCDateTime

VIEWS = {
    "v_job_cost",
    "v_cost_by_day",
    "v_cost_by_month",
    "v_job_block_cost",
    "v_cost_movements",
    "v_cost_recorded_by_day",
    "v_cost_after_terminal",
    "v_job_status_periods",
    "v_task_status_periods",
    "v_task_failures",
    "v_block_task_stats",
    "v_job_overruns",
    "v_val_error_summary",
    "v_open_val_errors",
    "v_job_poll_events",
    "v_job_poll_daily",
    "v_cost_ledger",
    "v_job_estimate",
    "v_workflow_estimate",
}
_SQLITE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")  # as SQLite stores it
D = Decimal


@pytest.fixture(scope="module")
def archive(report_archive_url: str) -> Iterator[Engine]:
    engine = db.make_engine(report_archive_url)
    yield engine
    engine.dispose()


def norm(value: Any) -> Any:
    """One spelling per value whatever the driver: aware UTC times, Decimals, ints for flags."""
    if isinstance(value, str) and _SQLITE_TIME.match(value):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


def query(engine: Engine, sql: str, **params: Any) -> list[tuple]:
    statement = text(sql)
    for name, value in params.items():
        kind = UTCDateTime() if isinstance(value, datetime) else None
        statement = statement.bindparams(bindparam(name, value, type_=kind))
    with engine.connect() as conn:
        return [tuple(norm(v) for v in row) for row in conn.execute(statement)]


# --- the views exist, are safe to name, and come and go with the migration ----------------------


def test_views_exist_with_short_unreserved_names(archive: Engine) -> None:
    inspector = inspect(archive)
    assert set(inspector.get_view_names()) == VIEWS
    reserved = (
        set(POSTGRES_RESERVED)
        | set(RESERVED_WORDS_MARIADB)
        | set(SQLiteIdentifierPreparer.reserved_words)
    )
    names = set(VIEWS)
    for view in VIEWS:
        names |= {c["name"] for c in inspector.get_columns(view)}
    assert {n for n in names if n.lower() in reserved or len(n) > 63} == set()
    assert all(v.startswith("v_") for v in VIEWS)


def test_downgrade_drops_the_views_and_upgrade_brings_them_back(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        db.downgrade(db_url, "0001")
        assert inspect(engine).get_view_names() == []
        assert "jobs" in inspect(engine).get_table_names()
        db.upgrade(db_url)
        assert set(inspect(engine).get_view_names()) == VIEWS
    finally:
        engine.dispose()


# --- question 1: cost by creation day, month, block ---------------------------------------------


def test_cost_by_creation_day_and_month(archive: Engine) -> None:
    # the last column: the workflow's current name (wf-b was never described: none)
    by_day = query(archive, "select * from v_cost_by_day")
    assert sorted(by_day, key=str) == [
        ("2026-10-01", "wf-a", "alice", 1, 0, 350, "Orthorectify"),
        ("2026-10-01", "wf-a", "bob", 1, 0, 220, "Orthorectify"),
        ("2026-10-02", "wf-b", "alice", 1, 0, 90, None),  # created 01:30 on the 3rd at +02:00
        ("unknown", "wf-b", None, 1, 1, 0, None),  # no created_at, no cost
    ]
    by_month = query(archive, "select * from v_cost_by_month")
    assert sorted(by_month, key=str) == [
        ("2026-10", "wf-a", "alice", 1, 0, 350, "Orthorectify"),
        ("2026-10", "wf-a", "bob", 1, 0, 220, "Orthorectify"),
        ("2026-10", "wf-b", "alice", 1, 0, 90, None),
        ("unknown", "wf-b", None, 1, 1, 0, None),
    ]


def test_days_are_utc_whatever_the_session_time_zone(archive: Engine) -> None:
    zone = {
        "postgresql": "SET TIME ZONE 'Pacific/Kiritimati'",  # UTC+14
        "mariadb": "SET time_zone = '+13:00'",
        "mysql": "SET time_zone = '+13:00'",
    }.get(archive.dialect.name)
    with archive.connect() as conn:
        if zone:
            conn.execute(text(zone))
        days = conn.execute(
            text("select job_id, created_day from v_job_cost where created_day <> 'unknown'")
        )
        assert sorted(days) == [
            ("job-1", "2026-10-01"),
            ("job-2", "2026-10-01"),
            ("job-3", "2026-10-02"),
        ]
        observed = conn.execute(
            text("select observed_day from v_cost_movements where job_id = 'job-3'")
        )
        assert sorted(d for (d,) in observed) == ["2026-10-02", "2026-10-03"]


def test_block_cost_counts_a_jobs_whole_cost_under_each_block(archive: Engine) -> None:
    rows = query(
        archive,
        "select job_id, block, block_name, block_version, tasks, job_cost, created_month"
        " from v_job_block_cost",
    )
    assert sorted(rows) == [
        ("job-1", "ortho@1.0", "ortho", "1.0", 1, 350, "2026-10"),
        ("job-1", "tiler@2.0", "tiler", "2.0", 1, 350, "2026-10"),
        ("job-2", "ortho@1.0", "ortho", "1.0", 2, 220, "2026-10"),
        ("job-2", "tiler@2.0", "tiler", "2.0", 1, 220, "2026-10"),
        ("job-3", "mosaic@0.9", "mosaic", "0.9", 1, 90, "2026-10"),
        ("job-3", "tiler@2.0", "tiler", "2.0", 1, 90, "2026-10"),
    ]


def test_cost_reports_group_and_filter_by_creation_time(archive: Engine) -> None:
    with db.session_factory(archive)() as session:
        assert reports.cost_by(session, "workflow") == [
            reports.CostRow("wf-a", 2, 0, 570),
            reports.CostRow("wf-b", 2, 1, 90),
        ]
        assert reports.cost_by(session, "user") == [
            reports.CostRow("alice", 2, 0, 440),
            reports.CostRow("bob", 1, 0, 220),
            reports.CostRow(None, 1, 1, 0),
        ]
        assert reports.cost_by(session, "day") == [
            reports.CostRow("2026-10-01", 2, 0, 570),
            reports.CostRow("2026-10-02", 1, 0, 90),
            reports.CostRow("unknown", 1, 1, 0),
        ]
        # since inclusive, until exclusive; a job without created_at is in no range
        assert reports.cost_by(session, "month", at("10-01 09:00"), at("10-02 23:30")) == [
            reports.CostRow("2026-10", 1, 0, 220)
        ]
        assert reports.cost_by_block(session) == [
            reports.BlockCostRow("mosaic@0.9", "mosaic", "0.9", 1, 1, 0, 90),
            reports.BlockCostRow("ortho@1.0", "ortho", "1.0", 2, 3, 0, 570),
            reports.BlockCostRow("tiler@2.0", "tiler", "2.0", 3, 3, 0, 660),
        ]
        assert reports.cost_by_block(session, since=at("10-02 00:00")) == [
            reports.BlockCostRow("mosaic@0.9", "mosaic", "0.9", 1, 1, 0, 90),
            reports.BlockCostRow("tiler@2.0", "tiler", "2.0", 1, 1, 0, 90),
        ]


# --- questions 2 and 3: cost as recorded ----------------------------------------------------------


def test_cost_movements_add_up_to_the_current_cost(archive: Engine) -> None:
    rows = query(
        archive,
        "select job_id, observed_at, observed_day, old_cost, new_cost, delta, status_before,"
        " after_terminal from v_cost_movements",
    )
    assert sorted(rows, key=lambda r: (r[0], r[1])) == [
        ("job-1", at("10-01 10:00"), "2026-10-01", None, 0, 0, None, 0),
        ("job-1", at("10-01 10:10"), "2026-10-01", 0, 100, 100, "queued", 0),
        ("job-1", at("10-01 10:30"), "2026-10-01", 100, 300, 200, "running", 0),
        ("job-1", at("10-02 09:00"), "2026-10-02", 300, 350, 50, "completed", 1),
        ("job-2", at("10-01 10:00"), "2026-10-01", None, 200, 200, None, 0),
        ("job-2", at("10-01 10:40"), "2026-10-01", 200, 250, 50, "running", 0),
        ("job-2", at("10-02 12:00"), "2026-10-02", 250, 220, -30, "failed", 1),
        ("job-3", at("10-02 23:45"), "2026-10-02", None, 40, 40, None, 0),
        ("job-3", at("10-03 00:15:00.25"), "2026-10-03", 40, 90, 50, "running", 0),
    ]
    mismatches = query(
        archive,
        "select j.job_id from jobs j left join (select workflow_id, job_id, sum(delta) as total"
        " from v_cost_movements group by workflow_id, job_id) m"
        " on m.workflow_id = j.workflow_id and m.job_id = j.job_id"
        " where coalesce(m.total, 0) <> coalesce(j.cost, 0)",
    )
    assert mismatches == []


def test_cost_recorded_per_day(archive: Engine) -> None:
    rows = query(archive, "select * from v_cost_recorded_by_day")
    assert sorted(rows) == [
        ("2026-10-01", "wf-a", 5, 550, 0, 550, 0, "Orthorectify"),
        ("2026-10-02", "wf-a", 2, 50, -30, 20, 20, "Orthorectify"),
        ("2026-10-02", "wf-b", 1, 40, 0, 40, 0, None),
        ("2026-10-03", "wf-b", 1, 50, 0, 50, 0, None),
    ]


def test_cost_changed_after_the_job_ended(archive: Engine) -> None:
    rows = query(archive, "select * from v_cost_after_terminal")
    assert sorted(rows, key=lambda r: r[1]) == [
        (
            "wf-a",
            "job-1",
            "completed",
            at("10-01 10:29"),
            at("10-02 09:00"),
            "2026-10-02",
            300,
            350,
            50,
            "Orthorectify",
        ),
        (
            "wf-a",
            "job-2",
            "failed",
            at("10-01 10:39"),
            at("10-02 12:00"),
            "2026-10-02",
            250,
            220,
            -30,
            "Orthorectify",
        ),
    ]


# --- question 4: point in time ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("10-01 09:59:59.999999", []),
        # exactly at a change: the new state (valid_from <= t < valid_to)
        ("10-01 10:30", [("job-1", 3, "completed", 300, 100), ("job-2", 1, "running", 200, 30)]),
        (
            "10-01 10:29:59.999999",
            [("job-1", 2, "running", 100, 50), ("job-2", 1, "running", 200, 30)],
        ),
        (
            "10-02 12:00",
            [
                ("job-1", 4, "completed", 350, 100),
                ("job-2", 3, "failed", 220, 80),
                ("job-4", 1, "queued", None, 0),
            ],
        ),
    ],
)
def test_as_of(archive: Engine, when: str, expected: list[tuple]) -> None:
    with db.session_factory(archive)() as session:
        rows = reports.as_of(session, at(when))
    assert [(r.job_id, r.version, r.status, r.cost, r.progress_pct) for r in rows] == expected


# --- question 5: time in each status --------------------------------------------------------------


def test_job_status_periods(archive: Engine) -> None:
    rows = query(archive, "select * from v_job_status_periods")
    t = at
    assert sorted(rows, key=lambda r: (r[1], r[2])) == [
        # job, seq, status, class, entered, left, next, duration, prev seen, last seen, windows
        ("wf-a", "job-1", 1, "queued", "queued", t("10-01 10:00"), t("10-01 10:10"), "running",
         D(600), None, t("10-01 10:00"), None, D(600)),
        # the identical poll at 10:20 is not recorded: the exit window is the whole stay
        ("wf-a", "job-1", 2, "running", "running", t("10-01 10:10"), t("10-01 10:30"),
         "completed", D(1200), t("10-01 10:00"), t("10-01 10:10"), D(600), D(1200)),
        # the re-pricing on the 2nd does not end the period; still in it, seen last on the 2nd
        ("wf-a", "job-1", 3, "completed", "succeeded", t("10-01 10:30"), None, None,
         None, t("10-01 10:10"), t("10-02 09:00"), D(1200), None),
        # the stale payload fetched at 11:00 is not a sighting
        ("wf-a", "job-2", 1, "running", "running", t("10-01 10:00"), t("10-01 10:40"), "failed",
         D(2400), None, t("10-01 10:00"), None, D(2400)),
        ("wf-a", "job-2", 2, "failed", "failed", t("10-01 10:40"), None, None,
         None, t("10-01 10:00"), t("10-02 12:00"), D(2400), None),
        ("wf-b", "job-3", 1, "running", "running", t("10-02 23:45"), None, None,
         None, None, t("10-03 00:15:00.25"), None, None),
        ("wf-b", "job-4", 1, "queued", "queued", t("10-02 08:00"), None, None,
         None, None, t("10-02 09:00"), None, None),
    ]  # fmt: skip


def test_task_status_periods_use_every_distinct_payload_as_a_sighting(archive: Engine) -> None:
    rows = query(
        archive,
        "select job_id, task_id, seq, status, entered_at, left_at, next_status, duration_s,"
        " prev_seen_at, last_seen_at, entry_window_s, exit_window_s from v_task_status_periods"
        " where job_id in ('job-1', 'job-3')",
    )
    t = at
    assert sorted(rows, key=lambda r: r[:3]) == [
        ("job-1", "t1", 1, "queued", t("10-01 10:00"), t("10-01 10:10"), "running", D(600),
         None, t("10-01 10:00"), None, D(600)),
        ("job-1", "t1", 2, "running", t("10-01 10:10"), t("10-01 10:30"), "completed", D(1200),
         t("10-01 10:00"), t("10-01 10:10"), D(600), D(1200)),
        ("job-1", "t1", 3, "completed", t("10-01 10:30"), None, None, None,
         t("10-01 10:10"), t("10-02 09:00"), D(1200), None),
        # t2 did not change at 10:10, but that payload still saw it queued
        ("job-1", "t2", 1, "queued", t("10-01 10:00"), t("10-01 10:30"), "completed", D(1800),
         None, t("10-01 10:10"), None, D(1200)),
        ("job-1", "t2", 2, "completed", t("10-01 10:30"), None, None, None,
         t("10-01 10:10"), t("10-02 09:00"), D(1200), None),
        # fractions of a second survive on every database
        ("job-3", "t1", 1, "running", t("10-02 23:45"), t("10-03 00:15:00.25"), "failed",
         D("1800.25"), None, t("10-02 23:45"), None, D("1800.25")),
        ("job-3", "t1", 2, "failed", t("10-03 00:15:00.25"), None, None, None,
         t("10-02 23:45"), t("10-03 00:15:00.25"), D("1800.25"), None),
        ("job-3", "t2", 1, "running", t("10-02 23:45"), t("10-03 00:15:00.25"), "failed",
         D("1800.25"), None, t("10-02 23:45"), None, D("1800.25")),
        ("job-3", "t2", 2, "failed", t("10-03 00:15:00.25"), None, None, None,
         t("10-02 23:45"), t("10-03 00:15:00.25"), D("1800.25"), None),
    ]  # fmt: skip


def test_status_reports(archive: Engine) -> None:
    with db.session_factory(archive)() as session:
        summary = reports.status_summary(session)
        periods = reports.status_periods(session, "wf-a", "job-2", tasks=True)
    assert [
        (r.status, r.now, r.periods, r.avg_duration_s, r.avg_entry_window_s) for r in summary
    ] == [
        ("queued", 1, 2, D(600), None),
        ("running", 1, 3, D(1800), D(600)),
        ("completed", 1, 1, None, D(1200)),
        ("failed", 1, 1, None, D(2400)),
    ]
    assert [(p.task_id, p.seq, p.status, p.duration_s) for p in periods] == [
        ("t1", 1, "running", D(2400)),
        ("t1", 2, "completed", None),
        ("t2", 1, "running", D(2400)),
        ("t2", 2, "completed", None),
        ("t3", 1, "queued", D(2400)),
        ("t3", 2, "failed", None),
    ]


# --- question 6: failures, durations, overruns ----------------------------------------------------


def test_failures_block_stats_and_overruns(archive: Engine) -> None:
    assert sorted(query(archive, "select * from v_task_failures")) == [
        ("mosaic", "0.9", "mosaic@0.9", "(none)", 1, 1),
        ("tiler", "2.0", "tiler@2.0", "oom", 2, 2),
    ]
    assert sorted(query(archive, "select * from v_block_task_stats")) == [
        ("mosaic", "0.9", "mosaic@0.9", 1, 1, 0, 1, 0, 1, D(10), D(10), D(10)),
        ("ortho", "1.0", "ortho@1.0", 3, 3, 3, 0, 0, 3, D("73.333"), D(50), D(100)),
        ("tiler", "2.0", "tiler@2.0", 3, 3, 1, 2, 0, 3, D(90), D(30), D(200)),
    ]
    assert query(archive, "select * from v_job_overruns") == [
        ("wf-a", "job-1", "alice", "completed", "succeeded", 1200, D(1500), D(300))
    ]
    with db.session_factory(archive)() as session:
        assert reports.failures(session) == [
            reports.FailureRow("tiler@2.0", "tiler", "2.0", "oom", 2, 2),
            reports.FailureRow("mosaic@0.9", "mosaic", "0.9", "(none)", 1, 1),
        ]


# --- questions 7 and 8: validation errors, archiver health ---------------------------------


def test_validation_errors(archive: Engine) -> None:
    assert sorted(query(archive, "select * from v_val_error_summary")) == [
        ("reader", "missing band", 2, 1, 1, 2, at("10-01 10:00"), at("10-02 09:00")),
        ("writer", "bad crs", 3, 2, 1, 2, at("10-01 10:00"), at("10-03 00:15:00.25")),
    ]
    open_errors = query(
        archive, "select job_id, component_name, reason, first_seen_at from v_open_val_errors"
    )
    assert sorted(open_errors) == [
        ("job-1", "reader", "band 4 absent", at("10-01 10:00")),
        ("job-3", "writer", "EPSG:1", at("10-02 23:45")),
        ("job-3", "writer", "EPSG:2", at("10-02 23:45")),
    ]


def test_poll_events_per_job_and_day(archive: Engine) -> None:
    events = query(
        archive,
        "select event_at, event_kind, http_status, message from v_job_poll_events"
        " where job_id in ('job-1', 'job-2')",
    )
    assert sorted(events, key=lambda e: e[0]) == [
        (at("10-01 10:00"), "new_payload", None, None),
        (at("10-01 10:00"), "new_payload", None, None),
        (at("10-01 10:10"), "new_payload", None, None),
        (at("10-01 10:30"), "new_payload", None, None),
        (at("10-01 10:40"), "new_payload", None, None),
        (at("10-01 11:00"), "stale_payload", None, None),
        (at("10-01 12:00:01"), "error", 503, "503 Service Unavailable"),
        (at("10-02 09:00"), "new_payload", None, None),
        (at("10-02 12:00"), "new_payload", None, None),
    ]
    daily = query(archive, "select * from v_job_poll_daily")
    t = at
    assert sorted(daily, key=lambda r: r[:3]) == [
        ("wf-a", "job-1", "2026-10-01", 3, 0, 1, t("10-01 10:00"), t("10-01 12:00:01")),
        ("wf-a", "job-1", "2026-10-02", 1, 0, 0, t("10-02 09:00"), t("10-02 09:00")),
        ("wf-a", "job-2", "2026-10-01", 2, 1, 0, t("10-01 10:00"), t("10-01 11:00")),
        ("wf-a", "job-2", "2026-10-02", 1, 0, 0, t("10-02 12:00"), t("10-02 12:00")),
        ("wf-b", "job-3", "2026-10-02", 1, 0, 0, t("10-02 23:45"), t("10-02 23:45")),
        ("wf-b", "job-3", "2026-10-03", 1, 0, 0, t("10-03 00:15:00.25"), t("10-03 00:15:00.25")),
        # the same payload again at 09:00 leaves no event
        ("wf-b", "job-4", "2026-10-02", 1, 0, 0, t("10-02 08:00"), t("10-02 08:00")),
    ]


# --- the CLI -----------------------------------------------------------------------------------


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_report_cost_formats(report_archive_url: str) -> None:
    url = ("--database-url", report_archive_url)
    code, out, err = run("report", "cost", "--by", "month", "--format", "json", *url)
    assert code == 0, err
    assert json.loads(out) == [
        {"month": "2026-10", "jobs": 3, "jobs_without_cost": 0, "cost": 660},
        {"month": "unknown", "jobs": 1, "jobs_without_cost": 1, "cost": 0},
    ]
    code, out, err = run("report", "cost", "--by", "user", "--format", "csv", *url)
    assert code == 0, err
    assert list(csv.reader(io.StringIO(out))) == [
        ["user", "jobs", "jobs_without_cost", "cost"],
        ["alice", "2", "0", "440"],
        ["bob", "1", "0", "220"],
        ["", "1", "1", "0"],
    ]
    code, out, err = run(
        "report", "cost", "--by", "day", "--since", "2026-10-02", "--format", "json", *url
    )
    assert code == 0, err
    assert json.loads(out) == [{"day": "2026-10-02", "jobs": 1, "jobs_without_cost": 0, "cost": 90}]
    code, out, _ = run("report", "cost", "--by", "block", *url)
    assert code == 0 and "tiler@2.0" in out and "660" in out and "not add up" in out
    code, out, _ = run("report", "cost", *url)
    assert ["total", "4", "1", "660"] in [line.split() for line in out.splitlines()]


def test_report_status_failures_and_as_of(report_archive_url: str) -> None:
    url = ("--database-url", report_archive_url)
    code, out, err = run("report", "status", "wf-a", "job-1", "--format", "json", *url)
    assert code == 0, err
    periods = json.loads(out)
    assert [(p["status"], p["duration_s"], p["exit_window_s"]) for p in periods] == [
        ("queued", 600, 600),
        ("running", 1200, 1200),
        ("completed", None, None),
    ]
    assert periods[1]["entered_at"] == "2026-10-01T10:10:00.000000Z"
    code, out, err = run("report", "status", "--tasks", "--format", "csv", *url)
    assert code == 0, err
    assert out.splitlines()[0] == (
        "status,status_class,now,periods,avg_duration_s,max_duration_s,avg_entry_window_s"
    )
    code, out, err = run("report", "failures", "--format", "json", *url)
    assert code == 0, err
    assert [(f["block"], f["failure_type"], f["failed_tasks"]) for f in json.loads(out)] == [
        ("tiler@2.0", "oom", 2),
        ("mosaic@0.9", "(none)", 1),
    ]
    code, out, err = run("report", "as-of", "2026-10-01T12:30:00+02:00", "--format", "csv", *url)
    assert code == 0, err
    assert [r["job_id"] + ":" + r["status"] for r in csv.DictReader(io.StringIO(out))] == [
        "job-1:completed",
        "job-2:running",
    ]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["as-of", "yesterday"], 2, "is not an ISO-8601 date or timestamp"),
        (["cost", "--since", "2026-10-02", "--until", "2026-10-01"], 2, "before --until"),
        (["cost", "--by", "planet"], 2, "Invalid value for '--by'"),
        (["status", "wf-a"], 2, "give WORKFLOW_ID JOB_ID"),
        (["status", "wf-a", "no-such-job"], 1, "archiver: error: no history for job"),
    ],
)
def test_report_errors_are_one_line(
    report_archive_url: str, args: list[str], code: int, message: str
) -> None:
    result = CliRunner().invoke(cli, ["report", *args, "--database-url", report_archive_url])
    assert result.exit_code == code
    assert message in result.stderr


# --- a read-only role for BI tools ---------------------------------------------------------------


def test_grant_reader(db_url: str) -> None:
    backend = make_url(db_url).get_backend_name()
    if backend == "sqlite":
        code, _out, err = run("db", "grant-reader", "bi", "--database-url", db_url)
        assert code == 1 and "PostgreSQL only" in err and "mode=ro" in err
        return
    if backend != "postgresql":
        code, out, err = run("db", "grant-reader", "bi@10.0.0.%", "--database-url", db_url)
        database = db.normalize_url(db_url).database
        assert code == 1 and "PostgreSQL only" in err
        assert out == f"GRANT SELECT ON `{database}`.* TO 'bi'@'10.0.0.%';\n"
        return
    role = f"r_{uuid.uuid4().hex[:10]}"
    code, _out, err = run("db", "grant-reader", role, "--database-url", db_url)
    assert code == 1 and "does not exist" in err
    engine = db.make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role}")
    try:
        code, out, err = run("db", "grant-reader", role, "--database-url", db_url)
        assert code == 0, err
        assert "ALTER DEFAULT PRIVILEGES" in out
        with engine.begin() as conn:  # a later migration's view, created after the grant
            conn.exec_driver_sql("CREATE VIEW v_later AS SELECT 1 AS one")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SET ROLE {role}")
            assert conn.exec_driver_sql("SELECT count(*) FROM v_cost_by_day").scalar() == 0
            assert conn.exec_driver_sql("SELECT one FROM v_later").scalar() == 1
            with pytest.raises(DBAPIError, match="permission denied"):
                conn.exec_driver_sql("INSERT INTO sync_runs (kind, started_at) VALUES ('x', now())")
            conn.rollback()
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")  # its privileges, then the role
            conn.exec_driver_sql(f"DROP ROLE {role}")
        engine.dispose()


def test_a_granted_readers_sessions_cannot_write(db_url: str) -> None:
    """As the docs' manual SQL: the role's own sessions start read-only, so even a write privilege
    granted to it by mistake later does not let a BI tool write."""
    if make_url(db_url).get_backend_name() != "postgresql":
        pytest.skip("roles and grant-reader are PostgreSQL's")
    role = f"r_{uuid.uuid4().hex[:10]}"
    engine = db.make_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {role} LOGIN")
    reader = db.make_engine(make_url(db_url).set(username=role, password=None))
    try:
        code, out, err = run("db", "grant-reader", role, "--database-url", db_url)
        assert code == 0, err
        assert f"ALTER ROLE {role} SET default_transaction_read_only = on;" in out
        with engine.begin() as conn:  # the mistake the setting guards against
            conn.exec_driver_sql(f"GRANT INSERT ON sync_runs TO {role}")
        with reader.connect() as conn:
            assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar() == "on"
            assert conn.exec_driver_sql("SELECT count(*) FROM sync_runs").scalar() == 0
            with pytest.raises(DBAPIError, match="read-only transaction"):
                conn.exec_driver_sql("INSERT INTO sync_runs (kind, started_at) VALUES ('x', now())")
    finally:
        reader.dispose()
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")
        engine.dispose()
