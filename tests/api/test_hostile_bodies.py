"""The hostile-payload catalogue (tests/hostile_catalogue.py) served as 200s by a real server on
127.0.0.1 to the HTTP client and a sync pass, where a 50 MB body (announced and chunked) and a
gzip bomb join it: each job ends as the catalogue says, a rejection is counted in sync_errors and
leaves the archive as it was, and the client's 32 MB body cap refuses the oversized bodies.
"""

from __future__ import annotations

import functools
import gzip
from collections.abc import Iterator

import pytest
from archive_dump import (
    ARCHIVE_TABLES,
    Archive,
    dump,
    first_difference,
)
from conftest import BACKENDS
from figures import record_figures
from hostile_catalogue import (
    CATALOGUE,
    MB,
    PROBLEM,
    REJECTED,
    SENTINEL_VALUES,
    STORED,
    T0,
    T1,
    archive_victim,
    hostile_archive,
)
from http_helpers import Recorded, Reply, ScriptedServer
from sqlalchemy import select

from archiver.api.client import ApiClient
from archiver.config import Settings
from archiver.models import IngestProblem, SyncError
from archiver.polling import tracking
from archiver.polling.sync import SyncPass

pytestmark = pytest.mark.integration  # a real HTTP server, and databases opened by hostile_archive


@pytest.fixture(scope="module", params=BACKENDS)
def archive(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Archive]:
    """One migrated database per backend for the whole module (see hostile_archive)."""
    with hostile_archive(request.param, tmp_path_factory) as opened:
        yield opened


@functools.cache
def gzip_bomb() -> bytes:
    """About 100 KB on the wire, 100 MB once inflated (three times the client's body cap)."""
    return gzip.compress(b"\0" * (100 * MB), compresslevel=9)


def outcome_in_archive(archive: Archive, wf: str, jid: str, run_id: int) -> str:
    """What became of the job in sync pass ``run_id``: rejected (an error), problem or stored."""
    with archive.sessions() as session:
        errors = session.scalars(
            select(SyncError.message).where(
                SyncError.sync_run_id == run_id, SyncError.workflow_id == wf
            )
        ).all()
        problems = session.scalars(
            select(IngestProblem.id).where(IngestProblem.workflow_id == wf)
        ).all()
    if errors:
        assert not [e for e in errors if any(s in e for s in SENTINEL_VALUES)], errors
        return REJECTED
    return PROBLEM if problems else STORED


def test_hostile_payloads_through_the_client_and_a_sync_pass(archive: Archive) -> None:
    """Catalogue bodies served as a 200, plus a 50 MB body (announced and chunked) and a gzip bomb
    that the client's 32 MB body cap must refuse, all in one pass."""
    sent = [
        h
        for h in CATALOGUE
        if h.client is not None
        and not (h.defect and archive.backend in h.defect)
        # the client is the same whatever the database: on SQLite every body goes through it;
        # elsewhere those it rejects or judges apart, whose failures must be counted there too
        and (archive.backend == "sqlite" or h.outcome == REJECTED or h.client != "same")
    ]
    bodies = {f"wf-sync-{h.name}": h.body(f"wf-sync-{h.name}", "job-1") for h in sent}
    expected = {f"wf-sync-{h.name}": h.outcome if h.client == "same" else h.client for h in sent}
    fifty = b'{"id": "job-1", "pad": "' + b"x" * (50 * MB) + b'"}'
    bomb = gzip_bomb()
    specials = {
        "wf-sync-body_50mb_announced": Reply(200, fifty),
        "wf-sync-body_50mb_chunked": Reply(200, fifty, chunked=True),
        "wf-sync-gzip_bomb": Reply(200, bomb, headers={"Content-Encoding": "gzip"}),
    }
    expected.update(dict.fromkeys(specials, REJECTED))

    def answer(request: Recorded) -> Reply:
        wf = request.segments()[3]
        if wf in specials:
            return specials[wf]
        return Reply(200, bodies[wf], headers={"Content-Type": "application/json"})

    for wf in expected:
        archive_victim(archive, wf, "job-1")
    before = {
        wf: dump(archive.engine, tables=ARCHIVE_TABLES, workflow_id=wf)
        for wf, outcome in expected.items()
        if outcome == REJECTED
    }
    with archive.sessions.begin() as session:
        tracking.track(session, [(wf, "job-1") for wf in expected], T0)
    with ScriptedServer() as server:
        server.always(answer)
        config = Settings(
            api_key="hostile-suite-key-0123456789",
            api_url=server.url,
            max_retries=0,
            rate_limit=0,
            concurrency=4,
        )
        client = ApiClient(config)
        summary = SyncPass.from_settings(config, archive.sessions, client, now=lambda: T1).run(
            everything=True
        )
        client.close()
    assert summary.run_id is not None
    got = {wf: outcome_in_archive(archive, wf, "job-1", summary.run_id) for wf in expected}
    assert got == expected
    for wf, outcome in got.items():
        if outcome == REJECTED:
            after = dump(archive.engine, tables=ARCHIVE_TABLES, workflow_id=wf)
            assert after == before[wf], first_difference(before[wf], after, ("before", "after"))
    with archive.sessions() as session:
        reasons = {
            wf: reason
            for wf, reason in session.execute(
                select(SyncError.workflow_id, SyncError.message).where(
                    SyncError.sync_run_id == summary.run_id,
                    SyncError.workflow_id.in_(list(specials)),
                )
            )
        }
    assert all("exceeds the 33554432-byte limit" in m for m in reasons.values()), reasons
    assert summary.failed == sum(o == REJECTED for o in expected.values())
    record_figures(
        "hostile-sync",
        inputs=len(expected),
        rejected=summary.failed,
        faults=len(specials),
    )
