"""Estimate against actual: the views and ``archiver report estimate`` give hand-computed answers.

The archive below (``estimates``) is built once per test: jobs archived from payloads, workflows
written by hand (``workflow_rows``). Its timeline, from which every expectation is computed:

    wf-a "Ortho" estimate 100 from 10-01 00:00, renamed "Orthorectify" estimate 150 from 10-05:
        a0  created 09-30 12:00  cost 130   before the first version: earliest (100), over 30
        a1  created 10-02        cost 250   100, over 150, ratio 2.5
        a2  created 10-05 00:00  cost 120   150 (the change's instant is the new one's), -30
        a3  created 10-06        no cost    150, not compared
        a4  created 10-07        cost 401   150, over 251, ratio 2.6733 (2.67333…)
        a5  no created_at        cost 10    no estimate: 'unknown'
        a6  created 10-08        cost 300   150, over 150, ratio 2.0 (ties a1, smaller ratio)
    wf-b "Mosaic", never an estimate (NULL): b1 created 10-02 cost 70
    wf-z "Zero", estimate 0: z1 created 10-03 cost 5, over 5, no ratio
    wf-u never described: u1 created 10-02 cost 999, no name, no estimate

    wf-a: jobs 7, with cost 6, with estimate 6, earliest 1, compared 5 (a0 a1 a2 a4 a6)
          estimate total 800 (mean 133.33), actual total 1211 (mean 201.83)
          compared estimate 650, variance 1201 - 650 = 551, 84.77 %
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import factories
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from workflow_rows import Version, add_workflow

from archiver import db
from archiver.archive.batches import archive_one
from archiver.reporting import reports

D = Decimal
FETCHED = datetime(2026, 10, 20, tzinfo=UTC)


def at(text_: str) -> datetime:
    return datetime.fromisoformat(f"2026-{text_}").replace(tzinfo=UTC)


def archive_job(engine: Engine, job_id: str, wf: str, created: str | None, cost: int | None):
    body = factories.job(job_id, wf, tasks=0, val_errors=0, status="completed")
    if created is None:
        del body["created_at"]
    else:
        body["created_at"] = f"2026-{created.replace(' ', 'T')}Z"
    if cost is None:
        del body["cost"]
    else:
        body["cost"] = cost
    archive_one(db.session_factory(engine), body, FETCHED)


JOBS = [
    ("a0", "wf-a", "09-30 12:00:00", 130),
    ("a1", "wf-a", "10-02 00:00:00", 250),
    ("a2", "wf-a", "10-05 00:00:00", 120),
    ("a3", "wf-a", "10-06 00:00:00", None),
    ("a4", "wf-a", "10-07 00:00:00", 401),
    ("a5", "wf-a", None, 10),
    ("a6", "wf-a", "10-08 00:00:00", 300),
    ("b1", "wf-b", "10-02 00:00:00", 70),
    ("z1", "wf-z", "10-03 00:00:00", 5),
    ("u1", "wf-u", "10-02 00:00:00", 999),
]


def build(engine: Engine) -> None:
    for job in JOBS:
        archive_job(engine, *job)
    add_workflow(
        engine,
        "wf-a",
        [Version("Ortho", 100, at("10-01 00:00")), Version("Orthorectify", 150, at("10-05 00:00"))],
    )
    add_workflow(engine, "wf-b", [Version("Mosaic", None, at("09-01 00:00"))])
    add_workflow(engine, "wf-z", [Version("Zero", 0, at("09-01 00:00"))])


@pytest.fixture
def estimates(engine: Engine, db_url: str) -> str:
    build(engine)
    return db_url


def norm(value: Any) -> Any:
    if isinstance(value, float):
        return D(repr(value))
    if isinstance(value, str) and value.lstrip("-").isdigit():  # SQLite's exact TEXT past 64 bits
        return int(value)
    return value


def rows(engine: Engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(norm(v) for v in row) for row in conn.execute(text(sql))]


# --- the views -----------------------------------------------------------------------------------


def test_each_job_gets_the_estimate_of_its_creation(engine: Engine, estimates: str) -> None:
    got = rows(
        engine,
        "SELECT workflow_id, workflow_name, job_id, estimate_version, estimate_basis,"
        " estimate_at_creation, cost, overrun, cost_ratio FROM v_job_estimate",
    )
    assert sorted(got, key=lambda r: r[2]) == [
        ("wf-a", "Orthorectify", "a0", 1, "earliest_known", 100, 130, 30, D("1.3")),
        ("wf-a", "Orthorectify", "a1", 1, "at_creation", 100, 250, 150, D("2.5")),
        ("wf-a", "Orthorectify", "a2", 2, "at_creation", 150, 120, -30, D("0.8")),
        ("wf-a", "Orthorectify", "a3", 2, "at_creation", 150, None, None, None),
        ("wf-a", "Orthorectify", "a4", 2, "at_creation", 150, 401, 251, D("2.6733")),
        ("wf-a", "Orthorectify", "a5", None, "unknown", None, 10, None, None),
        ("wf-a", "Orthorectify", "a6", 2, "at_creation", 150, 300, 150, D("2")),
        ("wf-b", "Mosaic", "b1", 1, "at_creation", None, 70, None, None),
        ("wf-u", None, "u1", None, "unknown", None, 999, None, None),
        ("wf-z", "Zero", "z1", 1, "at_creation", 0, 5, 5, None),
    ]


WORKFLOWS = [
    # id, name, current, jobs, cost, estimate, earliest, compared,
    # estimate total, mean, actual total, mean, compared estimate, variance, %
    ("wf-a", "Orthorectify", 150, 7, 6, 6, 1, 5, 800, D("133.33"), 1211, D("201.83"), 650, 551,
     D("84.77")),
    ("wf-b", "Mosaic", None, 1, 1, 0, 0, 0, 0, None, 70, D(70), 0, 0, None),
    ("wf-u", None, None, 1, 1, 0, 0, 0, 0, None, 999, D(999), 0, 0, None),
    ("wf-z", "Zero", 0, 1, 1, 1, 0, 1, 0, D(0), 5, D(5), 0, 5, None),
]  # fmt: skip


def test_workflow_view_totals_means_and_variance(engine: Engine, estimates: str) -> None:
    got = rows(engine, "SELECT * FROM v_workflow_estimate")
    assert sorted(got, key=lambda r: r[0]) == WORKFLOWS


def test_report_rows_equal_the_view(engine: Engine, estimates: str) -> None:
    with db.session_factory(engine)() as session:
        got = reports.workflow_estimates(session)
    assert [tuple(vars(r).values()) for r in got] == WORKFLOWS


def test_top_overruns_largest_first_ties_by_ratio(engine: Engine, estimates: str) -> None:
    with db.session_factory(engine)() as session:
        top = reports.top_overruns(session, 10)
        assert reports.top_overruns(session, 2) == top[:2]
        assert reports.top_overruns(session, 0) == []
    assert [(r.job_id, r.overrun, r.cost_ratio, r.estimate_basis) for r in top] == [
        ("a4", 251, D("2.6733"), "at_creation"),
        ("a1", 150, D("2.5000"), "at_creation"),
        ("a6", 150, D("2.0000"), "at_creation"),
        ("a0", 30, D("1.3000"), "earliest_known"),
        ("z1", 5, None, "at_creation"),  # an estimate of 0: no ratio, no division by zero
    ]
    assert top[0].workflow_name == "Orthorectify" and top[0].created_at == at("10-07 00:00")


def test_sums_past_64_bits_are_exact(engine: Engine, db_url: str) -> None:
    biggest = 2**63 - 1
    archive_job(engine, "big-1", "wf-big", "10-02 00:00:00", biggest)
    archive_job(engine, "big-2", "wf-big", "10-02 00:00:00", biggest)
    add_workflow(engine, "wf-big", [Version("Big", -biggest, at("09-01 00:00"))])
    (row,) = rows(
        engine,
        "SELECT actual_total, estimate_total, variance_total FROM v_workflow_estimate",
    )
    assert row == (2 * biggest, -2 * biggest, 4 * biggest)
    overruns = rows(engine, "SELECT overrun FROM v_job_estimate")
    assert overruns == [(2 * biggest,), (2 * biggest,)]
    with db.session_factory(engine)() as session:
        (wf,) = reports.workflow_estimates(session)
        top = reports.top_overruns(session, 1)
    assert (wf.variance_total, wf.variance_pct, wf.mean_actual) == (4 * biggest, D(-200), biggest)
    assert [(r.overrun, r.cost_ratio) for r in top] == [(2 * biggest, D(-1))]


def test_views_go_down_to_0008_and_come_back(engine: Engine, estimates: str) -> None:
    def columns(view: str) -> list[str]:
        return [c["name"] for c in inspect(engine).get_columns(view)]

    db.downgrade(estimates, "0008")
    assert not {"v_job_estimate", "v_workflow_estimate"} & set(inspect(engine).get_view_names())
    assert "workflow_name" not in columns("v_job_cost")
    assert columns("v_cost_by_day")[-1] == "cost"
    assert rows(engine, "SELECT cost FROM v_cost_by_day WHERE workflow_id = 'wf-u'") == [(999,)]
    db.upgrade(estimates)
    assert columns("v_job_cost")[-1] == "workflow_name"
    assert sorted(rows(engine, "SELECT * FROM v_workflow_estimate"), key=lambda r: r[0]) == (
        WORKFLOWS
    )


# --- the command, as a user runs it: output on a pipe --------------------------------------------


def archiver(*args: str, url: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "archiver", *args, "--database-url", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def test_report_estimate_piped_is_one_record_a_line(estimates: str) -> None:
    lines = archiver("report", "estimate", "--top", "3", url=estimates).splitlines()
    title = lines.index("estimate against actual, by workflow")
    header = lines[title + 1].split()
    assert header[:3] == ["workflow_id", "workflow_name", "current_estimate"]
    assert "variance_pct" in header and "estimate_total" in header  # a pipe gets every column
    body = [line.split() for line in lines[title + 2 : title + 6]]
    assert [cells[:2] for cells in body] == [
        ["wf-a", "Orthorectify"],
        ["wf-b", "Mosaic"],
        ["wf-u", "∅"],  # no name known: NULL, never another workflow's
        ["wf-z", "Zero"],
    ]
    assert body[0][header.index("variance_pct")] == "84.77"
    assert body[0][header.index("mean_actual")] == "201.83"
    top = lines.index("top 3 overruns of the estimate at creation")
    header = lines[top + 1].split()
    jobs = [line.split() for line in lines[top + 2 : top + 5]]
    assert [(c[header.index("job_id")], c[header.index("overrun")]) for c in jobs] == [
        ("a4", "251"),
        ("a1", "150"),
        ("a6", "150"),
    ]
    assert jobs[0][header.index("cost_ratio")] == "2.6733"
    assert lines[top + 5].startswith("cost_ratio:")  # the caption, then nothing
    assert len(lines) == top + 6


def test_report_estimate_json_and_csv(estimates: str) -> None:
    data = json.loads(archiver("report", "estimate", "--format", "json", url=estimates))
    assert set(data) == {"workflows", "top_overruns"}
    assert [w["workflow_name"] for w in data["workflows"]] == [
        "Orthorectify",
        "Mosaic",
        None,
        "Zero",
    ]
    assert data["workflows"][0]["variance_total"] == 551
    assert [(j["job_id"], j["cost_ratio"]) for j in data["top_overruns"]] == [
        ("a4", 2.6733),
        ("a1", 2.5),
        ("a6", 2),
        ("a0", 1.3),
        ("z1", None),
    ]
    table = list(csv.DictReader(io.StringIO(archiver("report", "estimate", "--format", "csv",
                                                     url=estimates))))  # fmt: skip
    assert [(r["workflow_id"], r["workflow_name"], r["variance_pct"]) for r in table] == [
        ("wf-a", "Orthorectify", "84.77"),
        ("wf-b", "Mosaic", ""),
        ("wf-u", "", ""),
        ("wf-z", "Zero", ""),
    ]
    jobs = list(
        csv.DictReader(
            io.StringIO(
                archiver(
                    "report", "estimate", "--overruns", "--top", "2", "--format", "csv",
                    url=estimates,
                )
            )
        )
    )  # fmt: skip
    assert [(r["job_id"], r["overrun"], r["estimate_basis"]) for r in jobs] == [
        ("a4", "251", "at_creation"),
        ("a1", "150", "at_creation"),
    ]


def test_report_estimate_on_an_empty_archive_says_so(db_url: str) -> None:
    out = archiver("report", "estimate", url=db_url)
    assert out.splitlines() == [
        "estimate against actual, by workflow: nothing in the archive matches",
        "top 10 overruns of the estimate at creation: nothing in the archive matches",
    ]


def test_report_estimate_rejects_a_negative_top(db_url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "archiver", "report", "estimate", "--top", "-1",
         "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "--top" in done.stderr and "-1" in done.stderr
    assert "Traceback" not in done.stderr
