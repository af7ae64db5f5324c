"""`archiver db upgrade` and `archiver ingest` as a user runs them: output, exit status, rows."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import factories
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from archiver import db
from archiver.cli import cli
from archiver.models import Job, JobVersion, SyncError, SyncRun

pytestmark = pytest.mark.integration  # the CLI on real database files, and in a subprocess


def run(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def count(url: str, model: type) -> int:
    engine = db.make_engine(url)
    try:
        with db.session_factory(engine)() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)
    finally:
        engine.dispose()


def test_ingest_files_lines_envelopes_and_stdin(db_url: str, tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(factories.job("a", tasks=2)))
    lines = tmp_path / "seq.jsonl"
    first = factories.job("b", tasks=2)
    later = factories.evolve(first, cost=99, updated_at="2026-10-01T11:00:00Z")
    lines.write_text(
        json.dumps({"fetched_at": "2026-10-01T10:00:00Z", "payload": first})
        + "\n\n"
        + json.dumps({"fetched_at": "2026-10-01T11:00:00Z", "payload": later})
        + "\n"
    )
    array = tmp_path / "array.json"
    array.write_text(json.dumps([factories.job("c", tasks=1), factories.job("d", tasks=1)]))
    code, out, err = run(
        "ingest",
        str(one),
        str(lines),
        str(array),
        "-",
        "--database-url",
        db_url,
        input=json.dumps(factories.job("e", tasks=1)),
    )
    assert code == 0, err
    assert out.splitlines()[-1] == (
        "6 payloads: archived 6 (new 5, changed 1), unchanged 0, stale 0, failed 0; "
        f"{out.splitlines()[-1].split('; ')[1].split(' changes')[0]} changes, 0 problems recorded"
    )
    assert "new       wf-1/a v1 running" in out
    assert count(db_url, Job) == 5
    engine = db.make_engine(db_url)
    with db.session_factory(engine)() as session:
        froms = session.scalars(
            select(JobVersion.valid_from)
            .where(JobVersion.job_id == "b")
            .order_by(JobVersion.version)
        ).all()
        run_row = session.scalars(select(SyncRun)).one()
    engine.dispose()
    assert froms == [datetime(2026, 10, 1, 10, tzinfo=UTC), datetime(2026, 10, 1, 11, tzinfo=UTC)]
    assert (run_row.kind, run_row.jobs_total, run_row.archived, run_row.failed) == (
        "ingest",
        6,
        6,
        0,
    )


def test_bad_payloads_fail_after_archiving_the_others(db_url: str, tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(factories.job("ok", tasks=1)))
    bad_lines = tmp_path / "mixed.jsonl"
    bad_lines.write_text(
        json.dumps(factories.job("ok2", tasks=1))
        + "\n{not json\n"
        + json.dumps({"no": "id"})
        + "\n"
    )
    html = tmp_path / "error.html"
    html.write_text("<html><h1>502 Bad Gateway</h1></html>")
    code, out, err = run(
        "ingest",
        str(good),
        str(bad_lines),
        str(html),
        str(tmp_path / "missing.json"),
        "--database-url",
        db_url,
    )
    assert code == 1
    assert "archived 2 (new 2, changed 0), unchanged 0, stale 0, failed 4" in out
    assert f"{bad_lines}:2: payload rejected: not valid JSON: Expecting property name" in err
    assert f"{bad_lines}:3: payload rejected: no job id" in err
    assert "looks like an HTML page" in err
    assert "missing.json: cannot read: No such file or directory" in err
    assert "Traceback" not in out + err
    assert count(db_url, Job) == 2
    assert count(db_url, SyncError) == 4


def test_fetched_at_option_dates_the_history(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(factories.job(tasks=1)))
    code, _, err = run(
        "ingest", str(path), "--fetched-at", "2026-09-01T12:00:00+02:00", "--database-url", db_url
    )
    assert code == 0, err
    engine = db.make_engine(db_url)
    with db.session_factory(engine)() as session:
        assert session.scalar(select(Job.first_seen_at)) == datetime(2026, 9, 1, 10, tzinfo=UTC)
    engine.dispose()
    code, _, err = run("ingest", str(path), "--fetched-at", "someday", "--database-url", db_url)
    assert code == 2 and "'someday' is not an ISO-8601 timestamp" in err


def test_unmigrated_database_names_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(factories.job(tasks=1)))
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    code, _, err = run("ingest", str(path), "--database-url", url)
    assert code == 1
    assert "has no archive schema yet: run `archiver db upgrade`" in err


def test_db_upgrade_then_check(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, out, _ = run("db", "upgrade", "--database-url", url)
    assert code == 0 and f"is at revision {db.head_revision()}\n" in out
    code, out, _ = run("db", "check", "--database-url", url)
    assert code == 0 and "is up to date" in out


def test_console_script_reports_unreachable_database_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(factories.job(tasks=1)))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "archiver",
            "ingest",
            str(path),
            "--database-url",
            "postgresql://archiver:s3cret-pw@127.0.0.1:9/archive",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("archiver: error: cannot connect to postgresql")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "s3cret-pw" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_the_readme_example_file_ingests(db_url: str) -> None:
    example = Path(__file__).parents[2] / "examples" / "sample-jobs.jsonl"
    code, out, err = run("ingest", "--quiet", str(example), "--database-url", db_url)
    assert code == 0, err
    assert "6 payloads: archived 6 (new 2, changed 4), unchanged 0, stale 0, failed 0" in out
    code, out, _ = run(
        "history", "wf-ortho-eu", "job-7f3c", "--format", "json", "--database-url", db_url
    )
    costs = [(c["old_value"], c["new_value"]) for c in json.loads(out) if c["field"] == "cost"]
    assert code == 0 and costs == [(None, "0"), ("0", "420"), ("420", "1130"), ("1130", "1090")]


def test_a_broken_pretty_printed_file_is_one_failure(tmp_path: Path, db_url: str) -> None:
    """Review defect: a pretty-printed file with one bad value (NaN) is one payload and one
    failure, exit 1, naming the reason."""
    path = tmp_path / "pretty.json"
    path.write_text(
        json.dumps(factories.job(tasks=2), indent=2).replace('"cost": 1200', '"cost": NaN')
    )
    result = CliRunner().invoke(cli, ["ingest", str(path), "--database-url", db_url])
    assert result.exit_code == 1
    assert "1 payload: archived 0" in result.stdout
    assert "NaN" in result.stderr
