"""What the CLI says to a new user who gets something slightly wrong, run as they run it.

``archiver`` in a subprocess, output piped: a file path where a URL goes, a database the archiver
does not support, an unreachable server (the message shows the URL as the user wrote it, not the
driver and options the archiver adds), ``--database-url`` before the command's name, the history of
a job tracked but not yet fetched, and counts of one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import factories
import pytest

from archiver.wording import counted


def archiver(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archiver", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


SUPPORTED = "the archiver supports sqlite, postgresql, mysql/mariadb"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "archiver.db",
            "not a database URL: archiver.db (a SQLite file is written sqlite:///archiver.db); "
            + SUPPORTED,
        ),
        (
            "oracle://scott:tiger@db.example/orcl",
            f"unsupported database 'oracle' in oracle://scott:***@db.example/orcl: {SUPPORTED}",
        ),
    ],
)
def test_a_url_the_archiver_cannot_use_is_named_with_what_it_can(
    url: str, expected: str, tmp_path: Path
) -> None:
    done = archiver("tracked", "--database-url", url, cwd=tmp_path)
    assert error_line(done) == f"archiver: error: {expected}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "url", ["postgresql://u:secret@127.0.0.1:1/x", "mysql://u:secret@127.0.0.1:1/x"]
)
def test_an_unreachable_server_is_named_as_the_user_wrote_it(url: str, tmp_path: Path) -> None:
    line = error_line(archiver("report", "cost", "--database-url", url, cwd=tmp_path))
    shown = url.replace(":secret@", ":***@")
    assert line.startswith(f"archiver: error: cannot connect to {shown}: ")
    for rewritten in ("+psycopg", "+pymysql", "charset", "secret"):
        assert rewritten not in line


@pytest.fixture
def archive(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    assert archiver("db", "upgrade", "--database-url", url, cwd=tmp_path).returncode == 0
    return url


def test_the_database_url_may_come_before_the_command(archive: str, tmp_path: Path) -> None:
    tracked = archiver("--database-url", archive, "track", "wf-1", "job-1", cwd=tmp_path)
    assert tracked.returncode == 0, tracked.stderr
    assert tracked.stdout == "tracking 1 job (1 new or resumed, 0 already tracked); 0 bad lines\n"
    listed = archiver("--database-url", archive, "tracked", "--format", "json", cwd=tmp_path)
    assert [r["job_id"] for r in json.loads(listed.stdout)] == ["job-1"]
    # both given: the command's own flag wins
    both = archiver(
        "--database-url", "sqlite:///missing.db", "tracked", "--database-url", archive,
        cwd=tmp_path,
    )  # fmt: skip
    assert both.returncode == 0, both.stderr
    assert not (tmp_path / "missing.db").exists()


def test_the_history_of_a_job_not_fetched_yet_says_it_is_tracked(
    archive: str, tmp_path: Path
) -> None:
    archiver("track", "wf-1", "job-1", "--database-url", archive, cwd=tmp_path)
    line = error_line(archiver("history", "wf-1", "job-1", "--database-url", archive, cwd=tmp_path))
    assert line == (
        "archiver: error: job wf-1/job-1 is tracked (active) but not fetched yet: "
        "`archiver sync` archives it"
    )
    line = error_line(archiver("history", "wf-1", "job-2", "--database-url", archive, cwd=tmp_path))
    assert line.startswith("archiver: error: no history for job wf-1/job-2 in ")


def test_counts_of_one_are_singular(archive: str, tmp_path: Path) -> None:
    capture = tmp_path / "one.json"
    capture.write_text(json.dumps(factories.job("job-1", "wf-1", tasks=1)))
    ingested = archiver("ingest", str(capture), "--database-url", archive, cwd=tmp_path)
    assert ingested.returncode == 0, ingested.stderr
    assert ingested.stdout.splitlines()[-1].startswith("1 payload: archived 1 ")
    verified = archiver("verify", "--database-url", archive, cwd=tmp_path)
    assert verified.stdout.startswith("verified 1 job: ")


@pytest.mark.parametrize(
    ("count", "one", "many", "expected"),
    [
        (0, "job", None, "0 jobs"),
        (1, "job", None, "1 job"),
        (2, "failed task", None, "2 failed tasks"),
        (1, "failed task", None, "1 failed task"),
        (1, "entry", "entries", "1 entry"),
        (3, "entry", "entries", "3 entries"),
    ],
)
def test_counted(count: int, one: str, many: str | None, expected: str) -> None:
    assert counted(count, one, many) == expected
