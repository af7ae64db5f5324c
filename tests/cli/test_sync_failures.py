"""``archiver sync`` when jobs fail (issue 16, item 5), run as users run it: output piped.

Each failed job is printed once, the summary groups the failures by reason; a pass whose first
requests all show the API unreachable (no connection) or the URL wrong (400/404 that are not
the API's JSON error envelope) stops with one message naming the cause and ``PIXXEL_API_URL``,
exit 1, and no job is counted as failed (tracking rows unchanged); the API's own JSON 404 for a
job it does not know is the job's failure and is counted as before.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from http_helpers import Recorded, Reply, ScriptedServer, echo_job, error
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.models import TRACKED, SyncError
from archiver.polling import tracking

KEY = "sync-failures-key-7c2e"
JOBS = [("wf-1", f"job-{i}") for i in range(8)]
ROW = ("workflow_id", "job_id", "state", "next_poll_at", "consecutive_failures", "last_error")


def sync(db_url: str, api_url: str, *args: str, **env: str) -> tuple[int, str, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "archiver", "sync", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={
            **os.environ,
            "PYTHONPATH": str(Path(__file__).parents[2]),
            "ARCHIVER_DATABASE_URL": db_url,
            "PIXXEL_API_URL": api_url,
            "PIXXEL_API_KEY": KEY,
            "ARCHIVER_MAX_RETRIES": "0",
            "ARCHIVER_CONCURRENCY": "8",
            **env,
        },
    )
    return proc.returncode, proc.stdout, proc.stderr


def track(sessions: sessionmaker[Session], pairs: list[tuple[str, str]]) -> None:
    with sessions.begin() as session:
        tracking.track(session, pairs, datetime.now(UTC))


def rows(sessions: sessionmaker[Session]) -> list[tuple[Any, ...]]:
    with sessions() as session:
        query = select(*(TRACKED.c[c] for c in ROW)).order_by(TRACKED.c.id)
        return [tuple(r) for r in session.execute(query)]


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def job_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("failed ")]


def test_no_connection_stops_the_pass_with_one_message_and_no_job_counted(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    track(sessions, JOBS)
    before = rows(sessions)
    status, out, err = sync(db_url, f"http://127.0.0.1:{closed_port()}")
    assert status == 1
    assert out.splitlines()[1:] == ["failed 5: transport 5 (connection refused)"]
    assert "failed 5, skipped 3;" in out.splitlines()[0]
    assert job_lines(err) == []  # the jobs are not at fault: no line each
    [message] = err.splitlines()
    assert message.startswith("archiver: error: the first 5 requests of the pass failed")
    assert "(connection refused)" in message and "PIXXEL_API_URL (or --api-url)" in message
    assert "no job was counted as failed" in message
    assert rows(sessions) == before  # failures 0, next_poll_at unchanged, no error noted


def test_a_wrong_base_url_stops_the_pass_after_five_requests(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    track(sessions, JOBS)
    before = rows(sessions)
    page = Reply(404, "<html><body>Not Found</body></html>", {"Content-Type": "text/html"})
    with ScriptedServer() as server:
        server.always(page)
        status, out, err = sync(db_url, server.url + "/wrong")
        asked = len(server.requests)
    assert status == 1
    assert asked == 5  # no more requests than the verdict needs
    assert out.splitlines()[1:] == ["failed 5: not_found 5 (404 without the API's error envelope)"]
    assert job_lines(err) == []
    [message] = err.splitlines()
    assert f"answered 404 without the API's error envelope: {server.url}/wrong" in message
    assert "does not look like the jobs API. Check PIXXEL_API_URL" in message
    assert rows(sessions) == before
    with sessions() as session:  # the pass still says what happened, in sync_errors
        assert len(session.scalars(select(SyncError)).all()) == 5


def test_the_apis_own_404_for_a_job_is_counted_against_the_job(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    track(sessions, JOBS)
    with ScriptedServer() as server:
        server.always(error(404, "not_found", "job not found"))
        first = sync(db_url, server.url, "--all", ARCHIVER_PAUSE_AFTER="2")
        second = sync(db_url, server.url, "--all", ARCHIVER_PAUSE_AFTER="2")
    for status, out, err in (first, second):
        assert status == 1
        assert "archiver: error:" not in err
        assert out.splitlines()[1:] == ["failed 8: not_found 8"]
        assert sorted(line.split()[1] for line in job_lines(err)) == [f"{w}/{j}:" for w, j in JOBS]
    states = {(r[0], r[1]): (r[2], r[4]) for r in rows(sessions)}
    assert states == {job: ("paused", 2) for job in JOBS}  # backoff, then paused as before


def test_each_failed_job_is_printed_once_and_the_summary_groups_them(
    db_url: str, sessions: sessionmaker[Session]
) -> None:
    jobs = [("wf-1", "ok-1"), ("wf-1", "gone-1"), ("wf-1", "gone-2"), ("wf-1", "down-1")]
    track(sessions, jobs)

    def answer(request: Recorded) -> Reply:
        job_id = request.segments()[-1]
        if job_id.startswith("gone"):
            return error(404, "not_found", "job not found")
        if job_id.startswith("down"):
            return error(500, "internal", "try later")
        return echo_job(request)

    with ScriptedServer() as server:
        server.always(answer)
        status, out, err = sync(db_url, server.url)
    assert status == 1
    assert "archived 1 (new 1, changed 0)" in out
    assert out.splitlines()[1:] == ["failed 3: not_found 2, server_error 1"]
    assert sorted(line.split()[1] for line in job_lines(err)) == [
        "wf-1/down-1:",
        "wf-1/gone-1:",
        "wf-1/gone-2:",
    ]
    for job in ("gone-1", "gone-2", "down-1"):
        # one line: no log line beside the job's own
        assert len([line for line in (out + err).splitlines() if job in line]) == 1, err
    assert len(err.splitlines()) == 3


@pytest.mark.parametrize("status", [401, 403])
def test_a_rejected_key_is_said_once(
    status: int, db_url: str, sessions: sessionmaker[Session]
) -> None:
    track(sessions, JOBS)
    before = rows(sessions)
    with ScriptedServer() as server:
        server.always(error(status, "invalid_api_key", "the key is not valid"))
        code, out, err = sync(db_url, server.url)
    assert code == 1
    assert (out + err).count("the key is not valid") == 1, out + err
    [message] = err.splitlines()
    assert message.startswith("archiver: error: the API rejected the key")
    assert rows(sessions) == before
