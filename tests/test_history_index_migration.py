"""Migration 0011 drops ``job_changes``' per-job index by time; nothing an auditor reads changes.

The archive of a polled lifecycle of the simulator's jobs is taken down to revision 0010 (the
schema main had before 0011; ``tests/test_chain_hash_migration.py`` proves the hashes come back
to the old form byte for byte); ``archiver verify`` must be clean on it, after the upgrade and
after the downgrade, and ``archiver history`` must give the same rows in the same order.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import Engine, inspect

from archiver import db
from archiver.archive.batches import Entry, archive_batch
from archiver.audit.verify import verify
from archiver.reporting.queries import ChangeRow, job_history
from archiver.sim import jobgen
from archiver.sim.payloads import job_payload

pytestmark = pytest.mark.integration  # every test here opens a database

INDEX = "ix_job_changes_workflow_id_job_id_observed_at"


def archive_lifecycle(engine: Engine) -> list[tuple[str, str]]:
    """Three jobs polled every simulated minute for 40 minutes: queued, running, ended."""
    plans = [jobgen.plan_job(6, i, tasks=(3, 6)) for i in range(3)]
    sessions = db.session_factory(engine)
    for minute in range(40):
        fetched = plans[0].start + timedelta(minutes=minute)
        entries = [
            Entry(json.dumps(job_payload(p, minute, time_scale=60.0)), fetched) for p in plans
        ]
        results = archive_batch(sessions, entries)
        assert not [r for r in results if isinstance(r, Exception)]
    return [(p.workflow_id, p.job_id) for p in plans]


def _indexes(engine: Engine) -> set[str]:
    return {str(ix["name"]) for ix in inspect(engine).get_indexes("job_changes")}


def _audit(engine: Engine, keys: list[tuple[str, str]]) -> list[list[ChangeRow]]:
    """verify must be clean; each job's history as ``archiver history`` prints it."""
    with db.session_factory(engine)() as session:
        report = verify(session)
        assert report.ok, [b.line() for b in report.breaks]
        assert report.rows > 0
        return [job_history(session, wf, job) for wf, job in keys]


def test_0011_drops_the_index_and_keeps_verify_clean_and_history_the_same(
    empty_db_url: str,
) -> None:
    db.upgrade(empty_db_url)
    engine = db.make_engine(empty_db_url)
    try:
        keys = archive_lifecycle(engine)
        db.downgrade(empty_db_url, "0010")
        engine.dispose()
        assert INDEX in _indexes(engine)
        before = _audit(engine, keys)
        assert all(len(h) > 20 for h in before)

        db.upgrade(empty_db_url)
        engine.dispose()
        assert INDEX not in _indexes(engine)
        assert {"ix_job_changes_observed_at", "ix_job_changes_entity_field"} <= _indexes(engine)
        assert _audit(engine, keys) == before

        db.downgrade(empty_db_url, "0010")
        engine.dispose()
        assert INDEX in _indexes(engine)
        assert _audit(engine, keys) == before
    finally:
        engine.dispose()
