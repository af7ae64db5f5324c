"""A time copied from the tool's own output answers the as-of question right, on every database.

Issue 16, item 3: SQLite stored ``2026-10-01 10:00:00.000000`` while the tool prints
``2026-10-01T10:00:00.000000Z``; the as-of SQL of docs/reporting.md with a printed time compared
a ``T`` with a space and silently gave the current state. The job below is running at cost 392
from 10:00 and completed at cost 524 from 11:00, archived with ``archiver ingest`` envelopes as a
user does; every spelling the tool prints must give ``running, 392`` at 10:00 and 10:30.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import factories
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from archiver import db
from archiver.cli import cli

pytestmark = pytest.mark.integration  # the CLI on real databases

DOC = (Path(__file__).parents[2] / "docs" / "reporting.md").read_text()
WF, JOB = "wf-issue16", "job-asof"
BEFORE, AFTER = ("running", 392), ("completed", 524)


def as_of_sql() -> str:
    """Question 4's portable as-of query on job_versions, as the docs print it."""
    (sql,) = [
        body
        for info, body in re.findall(r"^```sql([^\n]*)\n(.*?)^```", DOC, re.M | re.S)
        if not info.strip() and "from job_versions" in body and ":t" in body
    ]
    return sql.strip().rstrip(";")


def cli_run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


@pytest.fixture
def archive(db_url: str, tmp_path: Path) -> str:
    first = factories.job(JOB, WF, tasks=1, val_errors=0, status="running", cost=392)
    later = factories.evolve(first, status="completed", cost=524, updated_at="2026-10-01T11:00:00Z")
    capture = tmp_path / "capture.jsonl"
    capture.write_text(
        json.dumps({"fetched_at": "2026-10-01T10:00:00Z", "payload": first})
        + "\n"
        + json.dumps({"fetched_at": "2026-10-01T11:00:00Z", "payload": later})
        + "\n"
    )
    cli_run("ingest", "--quiet", str(capture), "--database-url", db_url)
    return db_url


def printed_times(url: str) -> tuple[str, str]:
    """The first observation time as ``history --format json`` prints it, and as the piped
    table prints it (the first column of the first change line)."""
    changes = json.loads(cli_run("history", WF, JOB, "--format", "json", "--database-url", url))
    json_form = changes[0]["observed_at"]
    table_lines = cli_run("history", WF, JOB, "--database-url", url).splitlines()
    table_form = table_lines[2].split()[0]
    return json_form, table_form


def states(url: str, literal: str) -> list[tuple[str, int]]:
    """The docs' as-of query with ``:t`` replaced by a quoted literal, as a user pastes it."""
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(as_of_sql().replace(":t", f"'{literal}'"))).mappings()
            return [(r["status"], int(r["cost"])) for r in rows if r["job_id"] == JOB]
    finally:
        engine.dispose()


def states_bound(url: str, value: str) -> list[tuple[str, int]]:
    """The same query with the string bound through the DB-API as-is, as pandas does."""
    engine = db.make_engine(url)
    try:
        mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
        sql = as_of_sql().replace(":t", mark)
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(sql, (value, value)).mappings()
            return [(r["status"], int(r["cost"])) for r in rows if r["job_id"] == JOB]
    finally:
        engine.dispose()


def test_the_tool_prints_the_times_the_test_pastes(archive: str) -> None:
    assert printed_times(archive) == ("2026-10-01T10:00:00.000000Z",) * 2


def test_a_time_copied_from_the_output_gives_the_state_at_that_time(archive: str) -> None:
    json_form, table_form = printed_times(archive)
    for literal in (json_form, table_form):
        assert states(archive, literal) == [BEFORE], literal  # the instant of the change itself
        half_past = literal.replace("T10:00:00", "T10:30:00")
        assert states(archive, half_past) == [BEFORE], half_past
        eleven = literal.replace("T10:00:00", "T11:00:00")
        assert states(archive, eleven) == [AFTER], eleven
        assert states(archive, literal.replace("2026-10-01", "2026-09-30")) == []


def test_a_printed_time_bound_as_a_string_gives_the_state_at_that_time(archive: str) -> None:
    json_form, table_form = printed_times(archive)
    for value in (json_form, table_form):
        assert states_bound(archive, value.replace("T10:00", "T10:30")) == [BEFORE], value
        assert states_bound(archive, value.replace("T10:00", "T11:00")) == [AFTER], value
