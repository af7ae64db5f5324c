"""What a user reads when the output is piped or redirected: one record a line, every value whole.

Run as the user runs it: ``archiver`` in a subprocess with its output on a pipe (not a terminal),
so ``grep``, ``cut`` and ``wc -l`` see the records the archive holds. On a terminal the table folds
long values and says so when it shortens one; nothing is cut silently.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import factories
import pytest
from rich.console import Console

from archiver.reporting.render import Grid, plain_text, show

WF = "wf-" + "w" * 120  # ids as long as a UUID pair and then some: a table at 80 columns cut them
JOB = "job-" + "j" * 140
LONG_MESSAGE = "tile " + "x" * 400 + " done"


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


@pytest.fixture
def archive(db_url: str, tmp_path: Path) -> str:
    first = factories.job(JOB, WF, tasks=2)
    later = factories.evolve(
        first, status="completed", cost=4321, updated_at="2026-10-01T11:00:00Z"
    )
    later["tasks"][0]["state_msg"] = LONG_MESSAGE
    later["tasks"][1]["err_msg"] = "first line\nnew wf-forged/job-forged v1 completed"
    lines = [
        {"fetched_at": "2026-10-01T10:00:00Z", "payload": first},
        {"fetched_at": "2026-10-01T11:00:00Z", "payload": later},
    ]
    capture = tmp_path / "capture.jsonl"
    capture.write_text("".join(json.dumps(line) + "\n" for line in lines))
    archiver("ingest", "--quiet", str(capture), url=db_url)
    archiver("track", WF, JOB, url=db_url)
    return db_url


def test_history_piped_is_one_change_a_line_with_values_whole(archive: str) -> None:
    out = archiver("history", WF, JOB, url=archive)
    lines = out.splitlines()
    changes = json.loads(archiver("history", WF, JOB, "--format", "json", url=archive))
    assert len(lines) == 2 + len(changes)  # the title, the header, then one line per change
    assert all(WF not in line or JOB not in line for line in lines[2:])  # no ids repeated here
    assert WF in lines[0] and JOB in lines[0]
    assert any(LONG_MESSAGE in line for line in lines)
    assert "…" not in out
    # a newline inside a value is shown escaped: it cannot start a line of its own
    assert not any(line.startswith("new wf-forged") for line in lines)
    assert any("first line\\nnew wf-forged/job-forged v1 completed" in line for line in lines)
    status = [line for line in lines if " status " in f" {line} " and "completed" in line]
    assert status and status[0].startswith("2026-10-01T11:00:00.000000Z")  # as JSON prints it


def test_tracked_and_reports_piped_keep_ids_whole(archive: str) -> None:
    tracked = archiver("tracked", url=archive).splitlines()
    assert len(tracked) == 3
    assert tracked[2].split()[:2] == [WF, JOB]
    cost = archiver("report", "cost", url=archive).splitlines()
    assert any(line.split()[0] == WF and "4321" in line.split() for line in cost[2:])
    as_of = archiver("report", "as-of", "2026-10-01T10:30:00Z", url=archive).splitlines()
    rows = [line for line in as_of if JOB in line]
    assert len(rows) == 1 and WF in rows[0]
    assert "…" not in "\n".join(tracked + cost + as_of)


def test_the_plain_form_aligns_columns_and_escapes_control_characters() -> None:
    grid = Grid("t", ("id", "n"), [("a\tb", 5), ("long-id", 12345), ("c\rd\x1b[31m", None)])
    assert plain_text(grid).splitlines() == [
        "t",
        "id                n",
        "a\\tb              5",
        "long-id       12345",
        "c\\rd\\x1b[31m      ∅",
    ]


def test_a_terminal_table_folds_and_says_when_it_shortens() -> None:
    short, long = "k" * 150, "v" * 1000
    buffer = io.StringIO()
    show(
        Grid("t", ("id", "value"), [(short, "small"), ("other", long)]),
        Console(file=buffer, force_terminal=True, width=80, color_system=None),
    )
    text = buffer.getvalue()
    folded = "".join(ch for ch in text if ch == "k")
    assert folded == short  # every character of the id, folded over lines, none dropped
    compact = "".join(ch for ch in text if not ch.isspace() and ch not in "│┃")
    # the head of the long value, folded over lines, then what was left out
    assert "v" * 200 + "…[800morecharacters:--formatjsonshowsall]" in compact
