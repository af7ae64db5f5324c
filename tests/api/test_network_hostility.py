"""Network hostility, end to end: a real sync pass in which some jobs' requests meet a hostile
server while the others are answered normally.

A redirect to another local server (which must receive nothing), a server that never answers,
one that drips a byte a second, one that pauses mid-body past the read timeout, and one that
resets the connection mid-body: each job is bounded
by the request deadline (times the attempts), the other jobs are archived meanwhile and not held
up, the pass ends within its bound, and every hostile job is in ``sync_errors`` with a reason an
operator can act on. ``tests/api/test_client.py`` covers the same behaviours one request at a time;
this is the pass, the database and the CLI around them.

CI runs one hostile job of each kind among 20 normal ones; ``ARCHIVER_LONG_SUITES=1`` five of
each among 200.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from daemon_harness import LONG, archiver_env
from figures import record_figures
from http_helpers import Recorded, Reply, ScriptedServer, echo_job, job
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver import db
from archiver.api.client import ApiClient
from archiver.config import Settings
from archiver.models import Job, SyncError, TrackedJob
from archiver.polling import tracking
from archiver.polling.sync import JobOutcome, SyncPass

pytestmark = pytest.mark.integration  # real hostile servers, and `archiver sync` in a subprocess

KEY = "network-hostility-key"
DEADLINE = 2.0
READ_TIMEOUT = 1.25  # longer than the drip's pause: only the overall deadline stops a drip
RETRIES = 1 if LONG else 0  # the CLI test always retries: the bound holds across attempts
CLI_RETRIES = 1
BACKOFF = 0.1
NORMAL = 200 if LONG else 20
EACH = 5 if LONG else 1
# kind -> (reason in sync_errors, text the message must hold, attempts)
EXPECTED = {
    "redirect": ("invalid_response", "302 Found — redirect to another location refused", 1),
    "silent": ("transport", f"read timed out after {READ_TIMEOUT}s", RETRIES + 1),
    "drip": ("transport", f"request exceeded its {DEADLINE}s deadline", RETRIES + 1),
    "reset": ("transport", "connection dropped before the body was complete", RETRIES + 1),
    # a pause longer than the read timeout in the middle of the body
    "trickle": ("transport", f"read timed out after {READ_TIMEOUT}s", RETRIES + 1),
}
# the slowest job: every attempt at its deadline, the back-off between them, and some slack
PASS_BOUND = (RETRIES + 1) * DEADLINE + RETRIES * BACKOFF + 1.5
CONCURRENCY = len(EXPECTED) * EACH + 8  # every hostile job holds a worker; 8 stay free
# the normal jobs finish before any hostile one could (200 of them take longer than 20)
NORMAL_BOUND = DEADLINE if LONG else READ_TIMEOUT


def hostile_ids() -> list[tuple[str, str]]:
    return [("w", f"{kind}-{i}") for kind in EXPECTED for i in range(EACH)]


def normal_ids() -> list[tuple[str, str]]:
    return [("w", f"normal-{i}") for i in range(NORMAL)]


@pytest.fixture
def servers() -> Iterator[tuple[ScriptedServer, ScriptedServer]]:
    """(the API, another local server that a redirect points to)."""
    with ScriptedServer() as elsewhere, ScriptedServer() as api:
        elsewhere.always(lambda r: Reply(200, job(r.path.rsplit("/", 1)[-1], "w")))
        body = job("x", "w", cost=1200)

        def respond(request: Recorded) -> Reply:
            job_id = request.path.rsplit("/", 1)[-1]
            kind = job_id.split("-", 1)[0]
            if kind == "redirect":
                return Reply(302, headers={"Location": elsewhere.url + request.path})
            if kind == "silent":
                return Reply(hang=True)
            if kind == "drip":
                return Reply(200, {**body, "id": job_id}, drip=1.0)
            if kind == "trickle":
                return Reply(200, {**body, "id": job_id}, drip=READ_TIMEOUT + 1.0)
            if kind == "reset":
                return Reply(200, {**body, "id": job_id}, drop_after=5, reset=True)
            return echo_job(request)

        api.always(respond)
        yield api, elsewhere


def settings_for(api_url: str, database_url: str) -> Settings:
    return Settings(
        api_key=KEY,
        api_url=api_url,
        database_url=database_url,
        request_deadline=DEADLINE,
        read_timeout=READ_TIMEOUT,
        connect_timeout=READ_TIMEOUT,
        max_retries=RETRIES,
        backoff_base=BACKOFF,
        backoff_max=BACKOFF,
        concurrency=CONCURRENCY,
        rate_limit=0.0,
    )


def check_errors(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        rows = session.execute(
            select(SyncError.job_id, SyncError.reason, SyncError.message, SyncError.http_status)
        ).all()
        archived = set(session.scalars(select(Job.job_id)))
        failing = dict(
            session.execute(
                select(TrackedJob.job_id, TrackedJob.consecutive_failures).where(
                    TrackedJob.consecutive_failures > 0
                )
            ).all()
        )
    assert archived == {j for _, j in normal_ids()}
    assert sorted(r.job_id for r in rows) == sorted(j for _, j in hostile_ids())
    for row in rows:
        reason, text, _ = EXPECTED[row.job_id.split("-", 1)[0]]
        assert row.reason == reason, row
        assert text in row.message, row
        assert f"job {row.job_id}" in row.message, row  # it names the job
    assert failing == dict.fromkeys((j for _, j in hostile_ids()), 1)


def test_hostile_servers_are_bounded_while_other_jobs_proceed(
    db_url: str, sessions: sessionmaker[Session], servers: tuple[ScriptedServer, ScriptedServer]
) -> None:
    api, elsewhere = servers
    with sessions.begin() as session:  # the hostile ones first: they take workers at once
        tracking.track(session, hostile_ids() + normal_ids(), datetime.now(UTC))
    settings = settings_for(api.url, db_url)
    done: dict[str, float] = {}
    with ApiClient(settings) as client:
        sync = SyncPass.from_settings(settings, sessions, client)
        started = time.monotonic()

        def on_job(outcome: JobOutcome) -> None:
            done[outcome.job_id] = time.monotonic() - started

        summary = sync.run(everything=True, on_job=on_job)
        took = time.monotonic() - started
    assert summary.counts["new"] == NORMAL and summary.failed == len(EXPECTED) * EACH
    assert took <= PASS_BOUND, f"the pass took {took:.1f}s"
    # the normal jobs did not wait for the hostile ones: all done before the first deadline
    slowest_normal = max(t for j, t in done.items() if j.startswith("normal-"))
    assert slowest_normal < NORMAL_BOUND, f"normal jobs took until {slowest_normal:.2f}s"
    for job_id, seconds in done.items():  # and no hostile job outlived its attempts
        kind = job_id.split("-", 1)[0]
        if kind in EXPECTED:
            attempts = EXPECTED[kind][2]
            assert seconds <= attempts * DEADLINE + RETRIES * BACKOFF + 0.5, (job_id, seconds)
    assert elsewhere.requests == []  # the redirect was never followed
    asked: dict[str, int] = {}
    for request in api.requests:
        kind = request.path.rsplit("/", 1)[-1].split("-", 1)[0]
        asked[kind] = asked.get(kind, 0) + 1
    for kind, (_, _, attempts) in EXPECTED.items():
        assert asked[kind] == attempts * EACH, (kind, asked)
    check_errors(sessions)
    record_figures(
        "network",
        runs=1,
        faults=len(EXPECTED) * EACH,
        requests=len(api.requests),
        pass_seconds=round(took, 2),
        rows_lost=0,
    )


def test_the_cli_sync_pass_reports_each_hostile_job_and_exits_1(
    tmp_path: Path, servers: tuple[ScriptedServer, ScriptedServer]
) -> None:
    api, elsewhere = servers
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    db.upgrade(url)
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    with sessions.begin() as session:
        tracking.track(session, hostile_ids() + normal_ids(), datetime.now(UTC))
    args = [sys.executable, "-m", "archiver", "sync", "--all"]
    args += ["--request-deadline", str(DEADLINE), "--read-timeout", str(READ_TIMEOUT)]
    args += ["--max-retries", str(CLI_RETRIES), "--concurrency", str(CONCURRENCY)]
    args += ["--rate-limit", "0"]
    started = time.monotonic()
    done = subprocess.run(
        args, env=archiver_env(url, api.url, KEY), capture_output=True, text=True, timeout=60
    )
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    # every attempt at its deadline, the default first back-off (up to 0.5 s), the start of the
    # interpreter and the final summary
    bound = (CLI_RETRIES + 1) * DEADLINE + 0.5 + 4.0
    assert took <= bound, f"archiver sync took {took:.1f}s"
    assert f"archived {NORMAL} (new {NORMAL}" in done.stdout
    assert f"failed {len(EXPECTED) * EACH}," in done.stdout
    failed_lines = [x for x in done.stderr.splitlines() if x.startswith("failed ")]
    assert len(failed_lines) == min(20, len(hostile_ids()))  # the CLI shows 20, then a count
    if len(hostile_ids()) > 20:
        assert f"and {len(hostile_ids()) - 20} more (see sync_errors)" in done.stderr
    for line in failed_lines:
        job_id = line.split("w/", 1)[1].split(":", 1)[0]
        assert EXPECTED[job_id.split("-", 1)[0]][1] in line, line
    assert elsewhere.requests == []
    check_errors(sessions)
    engine.dispose()
