"""An error envelope is never a job, on every path (issue 14, item 4).

The same bodies go through the one rule (``archiver.archive.payload.error_envelope``, which
``identify`` applies to every archived payload), through ``archiver ingest`` in a subprocess, and
through a sync pass against a scripted server (the HTTP client asks the same rule): each envelope
is refused, with nothing written, and a body whose ``error`` is ``null`` is a job on every path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from archive_dump import ARCHIVE_TABLES, dump
from http_helpers import Reply, ScriptedServer
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from archiver.api.client import ApiClient
from archiver.archive.batches import archive_one
from archiver.archive.payload import ErrorEnvelope, error_envelope, identify
from archiver.config import Settings
from archiver.errors import PayloadError
from archiver.models import SyncError
from archiver.polling import tracking
from archiver.polling.sync import SyncPass

T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)
WF, JOB = "wf-env", "job-env"

# every one of these is an error envelope, whatever else it carries
ENVELOPES: dict[str, dict[str, Any]] = {
    "with_ids": {"id": JOB, "workflow_id": WF, "error": {"code": "internal", "message": "boom"}},
    "with_ids_and_state": {
        "id": JOB,
        "workflow_id": WF,
        "status": "completed",
        "cost": 7,
        "error": {"code": "stale", "message": "try again"},
    },
    "without_ids": {"error": {"code": "not_found", "message": "no such job"}},
    "integer_code": {"id": JOB, "workflow_id": WF, "error": {"code": 500}},
    "error_is_a_string": {"id": JOB, "workflow_id": WF, "error": "boom"},
    "error_is_a_list": {"id": JOB, "workflow_id": WF, "error": ["boom"]},
    "error_is_false": {"id": JOB, "workflow_id": WF, "error": False},
    "empty_error_object": {"id": JOB, "workflow_id": WF, "error": {}},
}
# ``"error": null`` carries no error: a job
NOT_AN_ENVELOPE = {"id": JOB, "workflow_id": WF, "status": "completed", "cost": 7, "error": None}
REFUSAL = "it is an API error envelope, not a job"


def victim() -> dict[str, Any]:
    """The job the envelopes name, archived first: an envelope must leave it as it is."""
    return {"id": JOB, "workflow_id": WF, "status": "running", "cost": 5, "progress": "40%"}


# -- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ENVELOPES))
def test_identify_refuses_every_error_envelope(name: str) -> None:
    body = json.dumps(ENVELOPES[name])
    with pytest.raises(PayloadError, match=REFUSAL):
        identify(body)
    with pytest.raises(PayloadError, match=REFUSAL):
        identify(body, workflow_id=WF, job_id=JOB)  # as the sync path asks


def test_identify_takes_a_null_error_as_no_error() -> None:
    assert identify(json.dumps(NOT_AN_ENVELOPE)).job_id == JOB


def test_the_rule_reads_code_and_message_and_nothing_else() -> None:
    assert error_envelope(ENVELOPES["with_ids"]) == ErrorEnvelope("internal", "boom")
    assert error_envelope(ENVELOPES["integer_code"]) == ErrorEnvelope("500", None)
    assert error_envelope(ENVELOPES["error_is_a_string"]) == ErrorEnvelope(None, None)
    assert error_envelope({"error": {"code": True, "message": 3}}) == ErrorEnvelope(None, None)
    assert error_envelope(NOT_AN_ENVELOPE) is None
    assert error_envelope({"id": JOB}) is None
    assert error_envelope(["error"]) is None


def test_the_refusal_is_one_line_whatever_the_error_holds() -> None:
    body = {"id": JOB, "workflow_id": WF, "error": {"message": "a\nnew wf/job v1 x" + "z" * 500}}
    with pytest.raises(PayloadError) as caught:
        identify(json.dumps(body))
    message = str(caught.value)
    assert message.isprintable() and len(message) < 300
    assert "\\n" in message


# -- ingest, as users run it ---------------------------------------------------------------------


def test_ingest_refuses_each_envelope_and_writes_nothing(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    first = tmp_path / "victim.json"
    first.write_text(json.dumps(victim()))
    assert _ingest(db_url, first).returncode == 0
    before = dump(engine)
    files = []
    for name, body in sorted(ENVELOPES.items()):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(body))
        files.append(path)
    proc = _ingest(db_url, *files)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed ")]
    assert len(failed) == len(ENVELOPES), proc.stderr
    assert all(REFUSAL in line for line in failed), failed
    assert f"{len(ENVELOPES)} payloads: archived 0" in proc.stdout
    after = dump(engine)
    assert {k: v for k, v in after.items() if k not in ("sync_runs", "sync_errors")} == {
        k: v for k, v in before.items() if k not in ("sync_runs", "sync_errors")
    }
    assert len(after["sync_errors"].rows) == len(ENVELOPES)


def test_ingest_archives_a_null_error_as_a_job(db_url: str, tmp_path: Path) -> None:
    path = tmp_path / "job.json"
    path.write_text(json.dumps(NOT_AN_ENVELOPE))
    proc = _ingest(db_url, path)
    assert proc.returncode == 0, proc.stderr
    assert f"new       {WF}/{JOB} v1 completed" in proc.stdout


def _ingest(url: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "archiver", "ingest", "--database-url", url, *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


# -- a sync pass ---------------------------------------------------------------------------------


def _settings(url: str) -> Settings:
    return Settings(
        api_key="k",
        api_url=url,
        max_retries=0,
        request_deadline=5.0,
        read_timeout=5.0,
        poll_jitter=0.0,
        rate_limit=0.0,
    )


def test_a_sync_pass_refuses_each_envelope_and_writes_nothing(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    archive_one(sessions, json.dumps(victim()), T0)
    with sessions.begin() as session:
        tracking.track(session, [(WF, JOB)], T0)
    before = dump(engine, tables=ARCHIVE_TABLES)
    with ScriptedServer() as server:
        server.script(*(Reply(200, body) for _, body in sorted(ENVELOPES.items())))
        settings = _settings(server.url)
        for _ in ENVELOPES:
            sync = SyncPass.from_settings(settings, sessions, ApiClient(settings), now=lambda: T0)
            summary = sync.run(everything=True)
            assert (summary.failed, summary.archived) == (1, 0)
    assert dump(engine, tables=ARCHIVE_TABLES) == before
    with sessions() as session:
        errors = list(session.scalars(select(SyncError)))
    assert len(errors) == len(ENVELOPES)
    # the client keeps its own wording and reason for a 200 with an error body
    assert {(e.reason, e.http_status) for e in errors} == {("invalid_response", 200)}
    assert all("a 200 carrying an error" in e.message for e in errors)


def test_a_sync_pass_archives_a_null_error_as_a_job(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        tracking.track(session, [(WF, JOB)], T0)
    with ScriptedServer() as server:
        server.always(Reply(200, NOT_AN_ENVELOPE))
        settings = _settings(server.url)
        sync = SyncPass.from_settings(settings, sessions, ApiClient(settings), now=lambda: T0)
        summary = sync.run()
    assert (summary.failed, summary.counts["new"]) == (0, 1)


def test_the_store_refuses_an_envelope_the_client_did_not_see(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    """Any fetcher's body goes through ``identify``: the rule does not rest on the client."""
    before = dump(engine, tables=ARCHIVE_TABLES)
    with pytest.raises(PayloadError, match=REFUSAL):
        archive_one(sessions, json.dumps(ENVELOPES["with_ids"]), T0, workflow_id=WF, job_id=JOB)
    assert dump(engine, tables=ARCHIVE_TABLES) == before
