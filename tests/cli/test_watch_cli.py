"""``archiver track --workflow``, ``--all-workflows``, ``untrack --workflow`` and ``tracked
--workflows`` (issue 15, item 1), run as users run them, output piped; and ``archiver sync``
discovering a watched workflow's jobs from a served API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_helpers import Reply, ScriptedServer, error
from listing_api import FakeApi, kinds
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.models import JOBS, TRACKED, WATCH_RULES, WORKFLOWS

pytestmark = pytest.mark.integration  # subprocesses and a real HTTP server

REPO = Path(__file__).parents[2]


def archiver(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archiver", *args, "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
    )


def workflow_states(sessions: sessionmaker[Session]) -> dict[str, str]:
    with sessions() as session:
        return dict(session.execute(select(WORKFLOWS.c.workflow_id, WORKFLOWS.c.state)).all())


def test_watch_list_and_unwatch_workflows(db_url: str, sessions: sessionmaker[Session]) -> None:
    done = archiver(db_url, "track", "--workflow", "wf-1", "--workflow", "wf-2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "watching wf-1: each pass lists its jobs; the next `archiver sync` finds them",
        "watching wf-2: each pass lists its jobs; the next `archiver sync` finds them",
    ]
    assert workflow_states(sessions) == {"wf-1": "watched", "wf-2": "watched"}

    again = archiver(db_url, "track", "--workflow", "wf-1")
    assert again.stdout.startswith("already watched wf-1")

    rule = archiver(db_url, "track", "--all-workflows", "--project-id", "p-1")
    assert rule.returncode == 0 and "every workflow of project p-1" in rule.stdout
    with sessions() as session:
        assert session.execute(select(WATCH_RULES.c.project_id, WATCH_RULES.c.state)).all() == [
            ("p-1", "active")
        ]

    table = archiver(db_url, "tracked", "--workflows")
    lines = table.stdout.splitlines()
    assert lines[0] == "1 watch-all rule" and lines[2].split()[0] == "p-1"
    assert lines[3] == "2 workflows"
    assert [line.split()[0] for line in lines[5:]] == ["wf-1", "wf-2"]
    assert all("watched" in line for line in lines[5:])

    as_json = json.loads(archiver(db_url, "tracked", "--workflows", "--format", "json").stdout)
    assert [(r["workflow_id"], r["state"], r["jobs_known"]) for r in as_json] == [
        ("wf-1", "watched", 0),
        ("wf-2", "watched", 0),
    ]
    as_csv = archiver(db_url, "tracked", "--workflows", "--format", "csv").stdout.splitlines()
    assert as_csv[0] == (
        "workflow_id,name,state,watch_source,jobs_known,jobs_listed,last_listed_at,last_error"
    )
    assert len(as_csv) == 3

    stop = archiver(db_url, "untrack", "--workflow", "wf-1")
    assert stop.returncode == 0
    assert stop.stdout.startswith("stopped watching wf-1: its jobs are no longer listed")
    assert "a watch-all rule will not watch it again" in stop.stdout
    assert workflow_states(sessions) == {"wf-1": "unwatched", "wf-2": "watched"}

    gone = archiver(db_url, "untrack", "--all-workflows", "--project-id", "p-1")
    assert gone.returncode == 0 and "removed the watch-all rule for project p-1" in gone.stdout
    none = archiver(db_url, "untrack", "--all-workflows")
    assert none.returncode == 1
    assert none.stderr.strip() == "archiver: error: no watch-all rule for every workflow is active"


def test_untrack_with_jobs(db_url: str, sessions: sessionmaker[Session]) -> None:
    archiver(db_url, "track", "--workflow", "wf-1")
    archiver(db_url, "track", "wf-1", "job-1")
    done = archiver(db_url, "untrack", "--workflow", "wf-1", "--with-jobs")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "stopped watching wf-1 and untracked its 1 job; their archive is kept"
    )
    with sessions() as session:
        assert session.execute(select(TRACKED.c.state)).scalar_one() == "untracked"


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("track", "--workflow", "wf\n1"), 1, "workflow_id 'wf\\n1' contains a control character"),
        (("track", "--workflow", "x" * 200), 1, "is longer than 191 characters"),
        (("track", "--workflow", ".."), 1, "workflow_id '..' cannot be sent to the API"),
        (
            ("track", "--all-workflows", "--project-id", "p\tq"),
            1,
            "project_id 'p\\tq' contains a control character",
        ),
        (("track", "--project-id", "p"), 2, "--project-id goes with --all-workflows"),
        (("track", "--workflow", "w", "--all-workflows"), 2, "give one of"),
        (("track", "wf", "job", "--workflow", "w"), 2, "give one of"),
        (("untrack", "--with-jobs"), 2, "--with-jobs goes with --workflow"),
        (("untrack", "--workflow", "never"), 1, "not watched: never"),
        (("tracked", "--workflows", "--state", "active"), 2, "does not go with --workflows"),
    ],
)
def test_bad_requests_say_what_is_wrong_and_change_nothing(
    args: tuple[str, ...],
    status: int,
    message: str,
    db_url: str,
    sessions: sessionmaker[Session],
) -> None:
    done = archiver(db_url, *args)
    assert done.returncode == status
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert workflow_states(sessions) == {}


@pytest.fixture
def api() -> Iterator[tuple[FakeApi, ScriptedServer]]:
    fake = FakeApi()
    with ScriptedServer() as server:
        server.always(fake)
        yield fake, server


def test_sync_discovers_a_watched_workflows_jobs(
    db_url: str, sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    fake.add_workflow("wf-1", name="Ortho")
    fake.add_job("wf-1", "j1")
    fake.add_job("wf-1", "j2")
    archiver(db_url, "track", "--workflow", "wf-1")
    env = {
        "PIXXEL_API_URL": server.url,
        "PIXXEL_API_KEY": "cli-key-77",
        "ARCHIVER_MAX_RETRIES": "0",
    }

    first = archiver(db_url, "sync", **env)

    assert first.returncode == 0, first.stderr
    (line,) = first.stdout.splitlines()
    assert line.startswith("sync: 2 due jobs in ")
    assert line.endswith("; listed 1 workflow: 2 new jobs, 0 changed")
    with sessions() as session:
        assert sorted(session.scalars(select(JOBS.c.job_id))) == ["j1", "j2"]
    assert kinds(server.requests)["job"] == 2

    shown = archiver(db_url, "tracked", "--workflows").stdout.splitlines()
    assert shown[2].split()[:5] == ["wf-1", "Ortho", "watched", "workflow", "2"]

    fake.override["/v0/workflows/wf-1/jobs"] = Reply(200, {"jobs": "nope"})
    failed = archiver(db_url, "sync", **env)
    assert failed.returncode == 1  # a listing that failed fails the command, as a job does
    assert failed.stderr.startswith("failed    listing jobs of wf-1: 200 OK")
    assert failed.stderr.count("listing jobs of wf-1") == 1, failed.stderr  # said once
    assert failed.stdout.strip().endswith(
        "; listed 0 workflows: 0 new jobs, 0 changed; 1 listing failed"
    )


def test_sync_says_a_failed_estimate_once(db_url: str, api: tuple[FakeApi, ScriptedServer]) -> None:
    """The pass's failure list is the command's; the logger that says it in the daemon's log
    stays quiet here, so a failure is not printed twice."""
    fake, server = api
    fake.add_workflow("wf-1", name="Ortho")
    fake.add_job("wf-1", "j1")
    fake.override["/v0/workflows/wf-1/estimate"] = error(403, "forbidden_access", "no estimate")
    archiver(db_url, "track", "--workflow", "wf-1")
    env = {"PIXXEL_API_URL": server.url, "PIXXEL_API_KEY": "cli-key-77"}

    done = archiver(db_url, "sync", **env)

    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert [line for line in lines if "estimating workflow wf-1" in line] == [
        "failed    estimating workflow wf-1: 403 Forbidden — forbidden_access: no estimate"
        " (estimate of workflow wf-1)"
    ], done.stderr
