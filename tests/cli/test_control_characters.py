"""Ids with control characters cannot forge output (issue 14, item 6).

One id rule (``archiver.ids``) on every path that takes an id, as users run them, in subprocesses
with the output piped: ``archiver track`` (one pair and ``--file``), ``archiver ingest`` and
``archiver sync`` refuse a workflow or job id holding a control character (or a line separator,
or an invisible format character) with one line naming the problem and the id escaped, exit 1,
nothing written; a task or dependency id holding one is skipped with a recorded problem. Whatever
was stored before the rule (a tracked id, a status) is printed escaped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import factories
import pytest
from archive_dump import ARCHIVE_TABLES, dump
from http_helpers import ScriptedServer, echo_job
from sqlalchemy import insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from archiver.ids import escape, id_problem
from archiver.models import TRACKED, IngestProblem, SyncError, Task

FORGED = "new wf-forged/job-forged v1 completed (15 changes)"
# one of each kind the rule refuses
BAD = {
    "newline": "\n",
    "carriage_return": "\r",
    "escape": "\x1b",
    "delete": "\x7f",
    "c1_next_line": "\x85",
    "line_separator": "\u2028",
    "paragraph_separator": "\u2029",
    "right_to_left_override": "\u202e",
    "zero_width_space": "\u200b",
}
REFUSED = set(BAD.values())
KEY = "control-test-key-5b1d"


def run(*args: str, stdin: bytes | None = None, **env: str) -> tuple[int, str, str]:
    """``archiver ARGS`` with the output piped; bytes decoded as they are (no newline
    translation, so a carriage return shows as one)."""
    proc = subprocess.run(
        [sys.executable, "-m", "archiver", *args],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), **env},
    )
    return proc.returncode, proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")


def assert_clean(*outputs: str) -> None:
    """No refused character anywhere, and no line the input invented."""
    for output in outputs:
        assert "Traceback" not in output, output
        lines = output.split("\n")  # what a terminal or a pipe reader takes as lines
        assert not [line for line in lines if REFUSED & set(line)], ascii(output)
        assert not [line for line in output.splitlines() if line.startswith("new wf-forged")]


# -- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BAD))
def test_the_rule_refuses_each_kind_and_escapes_it(name: str) -> None:
    value = f"job{BAD[name]}x"
    problem = id_problem(value)
    assert problem is not None and f"U+{ord(BAD[name]):04X}" in problem
    assert escape(value).isprintable()
    assert escape(value) == repr(value)[1:-1]


def test_the_rule_lets_ordinary_ids_through() -> None:
    for value in ("job-1", "a b", "ünïcødé", "../x", "名前", "x" * 191, "123"):
        assert id_problem(value) is None, value
    assert id_problem("x" * 192) == "is longer than 191 characters"
    assert id_problem("  ") == "is empty"


# -- ingest --------------------------------------------------------------------------------------


def test_ingest_refuses_forging_ids_with_one_escaped_line_each(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    files = []
    for name, ch in sorted(BAD.items()):
        for field in ("id", "workflow_id"):
            body = factories.job("job-1", "wf-1")
            body[field] = f"{body[field]}{ch}{FORGED}"
            path = tmp_path / f"{field}-{name}.json"
            path.write_text(json.dumps(body))
            files.append(path)
    before = dump(engine, tables=ARCHIVE_TABLES)
    status, out, err = run("ingest", "--database-url", db_url, *map(str, files))
    assert status == 1, err
    assert_clean(out, err)
    failed = err.splitlines()
    assert len(failed) == len(files), err
    for line in failed:
        assert line.startswith("failed    ") and "is not a usable identifier: it contains" in line
    newline = next(line for line in failed if "id-newline" in line)
    assert "'job-1\\nnew wf-forged/job-forged v1 completed (15 changes)'" in newline
    assert "contains a control character (U+000A)" in newline
    assert out.splitlines() == [
        f"{len(files)} payloads: archived 0 (new 0, changed 0), "
        f"unchanged 0, stale 0, failed {len(files)}; 0 changes, "
        "0 problems recorded"
    ]
    assert dump(engine, tables=ARCHIVE_TABLES) == before


def test_ingest_skips_a_task_or_dependency_with_such_an_id_and_escapes_a_status(
    db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    body = factories.job("job-1", "wf-1", tasks=2)
    good = body["tasks"][0]["id"]
    body["tasks"][0]["depends_on"] = [f"t\n{FORGED}"]
    body["tasks"][1]["id"] = f"t\n{FORGED}"
    body["status"] = f"completed\n{FORGED}"
    path = tmp_path / "job.json"
    path.write_text(json.dumps(body))
    status, out, err = run("ingest", "--database-url", db_url, str(path))
    assert status == 0, err
    assert_clean(out, err)
    assert out.splitlines()[0].startswith(f"new       wf-1/job-1 v1 completed\\n{FORGED} (")
    with sessions() as session:
        assert list(session.scalars(select(Task.task_id))) == [good]
        problems = [(p.field, p.message) for p in session.scalars(select(IngestProblem))]
    assert ("tasks[1].id", _task_refusal()) in problems
    assert ("depends_on", "dependency is not a task id; dropped") in problems


def _task_refusal() -> str:
    shown = repr(f"t\n{FORGED}")
    return (
        f"task id {shown} is not a usable identifier: it contains a control character (U+000A); "
        "task skipped"
    )


# -- track ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["newline", "line_separator", "c1_next_line", "right_to_left_override"]
)
def test_track_refuses_such_an_id_in_one_escaped_line(
    db_url: str, sessions: sessionmaker[Session], name: str
) -> None:
    ch = BAD[name]
    status, out, err = run("track", "wf-1", f"job-1{ch}{FORGED}", "--database-url", db_url)
    assert status == 1
    assert_clean(out, err)
    assert out == ""
    assert err.splitlines() == [
        f"archiver: error: job_id {escape(repr(f'job-1{ch}{FORGED}'))} {id_problem(ch + 'x')}"
    ]
    with sessions() as session:
        assert session.execute(select(TRACKED)).all() == []


def test_track_file_names_each_bad_line_escaped_and_tracks_the_rest(
    db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "ids.csv"
    path.write_text(
        f'wf-1,job-1\nwf-1,"job-2\n{FORGED}"\nwf\u2028x,job-3\nwf-1,job-\u202e4\n',
        newline="",
    )
    status, out, err = run("track", "--file", str(path), "--database-url", db_url)
    assert status == 1
    assert_clean(out, err)
    assert err.splitlines() == [
        f"{path}: line 2: job_id 'job-2\\n{FORGED}' contains a control character (U+000A)",
        f"{path}: line 4: workflow_id 'wf\\u2028x' contains a line or paragraph separator (U+2028)",
        f"{path}: line 5: job_id 'job-\\u202e4' contains an invisible format character (U+202E)",
    ]
    with sessions() as session:
        tracked = session.execute(select(TRACKED.c.workflow_id, TRACKED.c.job_id)).all()
    assert [tuple(r) for r in tracked] == [("wf-1", "job-1")]


# -- sync ----------------------------------------------------------------------------------------


def test_sync_refuses_a_tracked_id_stored_before_the_rule_and_says_so_escaped(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    """A tracked id can only come from ``track``; one stored before the rule is not sent."""
    now = datetime.now(UTC)
    forged = f"job-1\u2028{FORGED}"
    with sessions.begin() as session:
        session.execute(
            insert(TRACKED),
            [
                _tracked_row("wf-1", forged, now),
                _tracked_row("wf-1", "job-ok", now),
            ],
        )
    with ScriptedServer() as server:
        server.always(echo_job)
        status, out, err = run(
            "sync", "--database-url", db_url, PIXXEL_API_URL=server.url, PIXXEL_API_KEY=KEY
        )
        requested = [r.path for r in server.requests]
    assert status == 1, err
    assert_clean(out, err)
    assert requested == ["/v0/workflows/wf-1/jobs/job-ok"]
    failed = [line for line in err.splitlines() if line.startswith("failed ")]
    assert failed == [
        f"failed    wf-1/job-1\\u2028{FORGED}: job_id 'job-1\\u2028{FORGED}' contains a line "
        "or paragraph separator (U+2028); not sent"
    ]
    with sessions() as session:
        [error] = session.scalars(select(SyncError))
    assert (error.job_id, error.reason) == (forged, "bad_request")


def test_sync_refuses_a_payload_whose_id_holds_a_control_character(
    db_url: str, engine: Engine
) -> None:
    def answer(request: Any) -> Any:
        reply = echo_job(request)
        body = json.loads(reply.payload())
        body["id"] = f"{body['id']}\n{FORGED}"
        return type(reply)(200, body)

    status, _, err = run("track", "wf-1", "job-1", "--database-url", db_url)
    assert status == 0, err
    before = dump(engine, tables=ARCHIVE_TABLES)
    with ScriptedServer() as server:
        server.always(answer)
        status, out, err = run(
            "sync", "--database-url", db_url, PIXXEL_API_URL=server.url, PIXXEL_API_KEY=KEY
        )
    assert status == 1, err
    assert_clean(out, err)
    failed = [line for line in err.splitlines() if line.startswith("failed ")]
    assert len(failed) == 1 and f"'job-1\\n{FORGED}'" in failed[0], err
    assert dump(engine, tables=ARCHIVE_TABLES) == before


def _tracked_row(workflow_id: str, job_id: str, now: datetime) -> dict[str, Any]:
    return {
        "workflow_id": workflow_id,
        "job_id": job_id,
        "added_at": now,
        "state": "active",
        "next_poll_at": now,
        "consecutive_failures": 0,
        "claim_token": 0,
    }
