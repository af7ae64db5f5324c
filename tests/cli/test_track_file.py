"""``archiver track --file`` and the file's first line (issue 16, item 4), run as users run it.

A header in the expected order (``workflow_id,job_id``, any case or spelling of the separator)
is skipped; a first line that looks like any other header (the columns swapped, other columns)
refuses the whole file with the reason, exit 1, nothing tracked: read under the wrong header,
every row would be tracked with its ids swapped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.models import TRACKED
from archiver.polling import tracking


def track_file(text: str, db_url: str, tmp_path: Path) -> tuple[int, str, str]:
    """``archiver track --file`` on ``text``, output piped."""
    path = tmp_path / "jobs.csv"
    path.write_text(text)
    proc = subprocess.run(
        [sys.executable, "-m", "archiver", "track", "--file", str(path), "--database-url", db_url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    return proc.returncode, proc.stdout, proc.stderr


def tracked(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    with sessions() as session:
        rows = session.execute(select(TRACKED.c.workflow_id, TRACKED.c.job_id).order_by("id"))
        return [(r.workflow_id, r.job_id) for r in rows]


@pytest.mark.parametrize(
    "header",
    [
        "job_id,workflow_id",  # the columns swapped: the case
        "Job ID,Workflow ID",
        "job,workflow",
        "id,workflow_id",
        "workflow_id",  # one column only
        "name,status",
        "job_name,created_at",
        "workflow_id,job_id,status",  # the expected names, then one more: rows would not fit
    ],
)
def test_a_first_line_that_is_another_header_refuses_the_file(
    header: str, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    status, out, err = track_file(f"# exported\n{header}\nj-1,wf-1\nj-2,wf-1\n", db_url, tmp_path)
    assert status == 1
    assert out == ""
    [line] = err.splitlines()
    assert f"line 2 looks like a header ({header!r}), not workflow_id,job_id" in line
    assert "nothing tracked" in line
    assert tracked(sessions) == []


@pytest.mark.parametrize(
    "header", ["workflow_id,job_id", "Workflow_ID, Job_ID", "workflow id,job-id"]
)
def test_the_expected_header_is_skipped(
    header: str, db_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    status, out, err = track_file(f"{header}\nwf-1,j-1\nwf-1,j-2\n", db_url, tmp_path)
    assert (status, err) == (0, "")
    assert out == "tracking 2 jobs (2 new or resumed, 0 already tracked); 0 bad lines\n"
    assert tracked(sessions) == [("wf-1", "j-1"), ("wf-1", "j-2")]


@pytest.mark.parametrize(
    "first",
    [
        "wf-1,j-1",
        "w,ok",  # short letter-only ids are no column names
        "wf-abc,job-def",  # hyphenated words are ids, not a multi-word column name
        "4f9c2a1e-0b7d-4c1a-9e3f-2d6b8a7c5e10,8a1b3c5d-7e9f-4a2b-8c4d-6e8f0a2b4c6d",
    ],
)
def test_a_first_row_of_ids_is_data(first: str) -> None:
    assert tracking.read_track_file(f"{first}\n").pairs == [tuple(first.split(","))]


def test_ids_that_look_like_column_names_are_tracked_under_the_header() -> None:
    result = tracking.read_track_file("workflow_id,job_id\nmy_flow,status\n")
    assert (result.refused, result.pairs) == (None, [("my_flow", "status")])
