"""Workflow names beside their ids: the cost views, ``report cost --by workflow``, the HTML page.

The name is the workflow's current one (``workflows.name``); a workflow the archive never saw
described, or described without a name, has none: NULL, blank, never another workflow's.

    wf-a  renamed "Ortho" -> "Ortho<v2>&co" (markup in it: the page must escape it)
          j1 created 10-01, cost 100 then 120 (a recorded movement), two ortho tasks
    wf-b  never described: j2 created 10-02, cost 50
    wf-c  described without a name: j3 created 10-02, cost 7
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import UTC, datetime
from html.parser import HTMLParser

import factories
import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from workflow_rows import Version, add_workflow

from archiver import db
from archiver.archive.batches import archive_one
from archiver.reporting import html_report

NAME = "Ortho<v2>&co"
COST_VIEWS = (
    "v_job_cost",
    "v_cost_by_day",
    "v_cost_by_month",
    "v_job_block_cost",
    "v_cost_movements",
    "v_cost_recorded_by_day",
    "v_cost_after_terminal",
    "v_cost_ledger",
)
EXPECTED = {"wf-a": NAME, "wf-b": None, "wf-c": None}


def at(text_: str) -> datetime:
    return datetime.fromisoformat(f"2026-{text_}").replace(tzinfo=UTC)


@pytest.fixture
def named(engine: Engine, db_url: str) -> str:
    sessions = db.session_factory(engine)
    j1 = factories.job("j1", "wf-a", tasks=2, val_errors=0, status="completed", cost=100)
    j1["created_at"] = "2026-10-01T08:00:00Z"
    j1["finished_at"] = "2026-10-01T09:00:00Z"
    archive_one(sessions, j1, at("10-01 10:00"))
    repriced = factories.evolve(j1, cost=120, updated_at="2026-10-02T10:00:00Z")
    archive_one(sessions, repriced, at("10-02 10:00"))
    for job_id, wf, cost in (("j2", "wf-b", 50), ("j3", "wf-c", 7)):
        body = factories.job(job_id, wf, tasks=0, val_errors=0, cost=cost)
        body["created_at"] = "2026-10-02T08:00:00Z"
        archive_one(sessions, body, at("10-02 10:00"))
    renamed = [Version("Ortho", 10, at("09-01 00:00")), Version(NAME, 20, at("10-01 12:00"))]
    add_workflow(engine, "wf-a", renamed)
    add_workflow(engine, "wf-c", [Version(None, None, at("09-01 00:00"))])
    return db_url


@pytest.mark.parametrize("view", COST_VIEWS)
def test_cost_views_carry_the_current_name_last(engine: Engine, named: str, view: str) -> None:
    columns = [c["name"] for c in inspect(engine).get_columns(view)]
    assert columns[-1] == "workflow_name" and columns.count("workflow_name") == 1
    with engine.connect() as conn:
        got = conn.execute(text(f"SELECT workflow_id, workflow_name FROM {view}")).all()
    assert got, view  # every view has rows here, so the names are really checked
    assert all(name == EXPECTED[wf] for wf, name in got), got
    if view == "v_cost_after_terminal":
        assert {wf for wf, _ in got} == {"wf-a"}  # only j1's cost moved after it ended


def test_a_name_is_current_after_a_rename_and_gone_with_the_workflow(
    engine: Engine, named: str
) -> None:
    where = "WHERE workflow_id = 'wf-a'"
    with engine.begin() as conn:
        conn.execute(text(f"UPDATE workflows SET name = 'Renamed' {where}"))
        got = conn.execute(text(f"SELECT DISTINCT workflow_name FROM v_job_cost {where}")).all()
        assert got == [("Renamed",)]
        conn.execute(text(f"DELETE FROM workflows {where}"))
        got = conn.execute(text(f"SELECT workflow_name, cost FROM v_cost_by_day {where}")).all()
        assert got == [(None, 120)]  # the job's cost stays; no name rather than a wrong one


# --- report cost --by workflow, as a user runs it ------------------------------------------------


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


def test_report_cost_by_workflow_shows_names_in_every_format(named: str) -> None:
    lines = archiver("report", "cost", "--by", "workflow", url=named).splitlines()
    assert lines[1].split() == ["workflow", "workflow_name", "jobs", "jobs_without_cost", "cost"]
    assert [line.split() for line in lines[2:6]] == [
        ["wf-a", NAME, "1", "0", "120"],
        ["wf-b", "∅", "1", "0", "50"],
        ["wf-c", "∅", "1", "0", "7"],
        ["total", "3", "0", "177"],  # the total line's name is blank
    ]
    data = json.loads(archiver("report", "cost", "--format", "json", url=named))
    assert [(r["workflow"], r["workflow_name"], r["cost"]) for r in data] == [
        ("wf-a", NAME, 120),
        ("wf-b", None, 50),
        ("wf-c", None, 7),
    ]
    table = list(csv.reader(io.StringIO(archiver("report", "cost", "--format", "csv", url=named))))
    assert table == [
        ["workflow", "workflow_name", "jobs", "jobs_without_cost", "cost"],
        ["wf-a", NAME, "1", "0", "120"],
        ["wf-b", "", "1", "0", "50"],
        ["wf-c", "", "1", "0", "7"],
    ]
    by_user = archiver("report", "cost", "--by", "user", "--format", "csv", url=named)
    assert "workflow_name" not in by_user


def test_report_cost_with_a_closed_month_shows_names(named: str) -> None:
    archiver("close-period", "2026-10", "--by", "tester", url=named)
    data = json.loads(archiver("report", "cost", "--format", "json", url=named))
    assert [(r["workflow"], r["workflow_name"], r["total"]) for r in data] == [
        ("wf-a", NAME, 120),
        ("wf-b", None, 50),
        ("wf-c", None, 7),
    ]
    assert all("adjustments" in r for r in data)  # the closed-books form of the report


# --- the HTML page -------------------------------------------------------------------------------


class Texts(HTMLParser):
    """The text of every element, and the data-series of every bar of the cost chart."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.texts: list[str] = []
        self.series: set[str] = set()
        self.chart: str | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "svg":
            self.chart = a.get("data-chart")
        if tag == "rect" and self.chart == "cost" and a.get("data-series"):
            self.series.add(a["data-series"] or "")

    def handle_data(self, data: str) -> None:
        self.texts.append(data)


def test_html_report_names_workflows_beside_their_ids(engine: Engine, named: str) -> None:
    with db.session_factory(engine)() as session:
        page = html_report.build_page(session, now=at("12-06 10:00"))
    parsed = Texts(page)
    assert parsed.series == {"wf-a", "wf-b", "wf-c"}  # bars keep the id as their key
    assert f"{NAME} (wf-a)" in parsed.texts  # the legend: name and id
    assert "wf-b" in parsed.texts and "wf-c" in parsed.texts  # no name: the id alone
    assert NAME in parsed.texts  # the table's name column
    assert "Ortho<v2>" not in page and "Ortho&lt;v2&gt;&amp;co" in page  # escaped
    assert all(NAME in t for t in parsed.texts if "Ortho" in t)  # never the old name
    assert "workflow name" in parsed.texts
