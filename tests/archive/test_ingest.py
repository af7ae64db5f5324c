"""Ingesting payload files: items read from arrays, lines and envelopes, each archived or
rejected and recorded alone, on every database."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import factories
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive.ingest import ingest, read_items
from archiver.archive.payload import parse_payload
from archiver.errors import PayloadError
from archiver.models import IngestProblem, Job, JobSnapshot, SyncError

T0 = datetime(2026, 10, 1, 10, tzinfo=UTC)


def test_deep_nesting_and_infinite_numbers_are_rejected_not_fatal(
    sessions: sessionmaker[Session],
) -> None:
    """Review defect: deep nesting and 1e400 are rejected with a reason instead of failing the
    run, and the other item is archived."""
    deep = json.dumps(factories.job("deep", tasks=1))[:-1] + ', "x": ' + "[" * 980 + "]" * 980 + "}"
    huge = json.dumps(factories.job("inf", tasks=1)).replace('"spec": [', '"spec": [1e400, ')
    good = json.dumps(factories.job("good", tasks=1))
    for text, message in ((deep, "nested deeper than 64"), (huge, "out of range")):
        with pytest.raises(PayloadError, match=message):
            parse_payload(text)
    items = [
        *read_items("deep.json", deep.encode(), T0),
        *read_items("good.json", good.encode(), T0),
    ]
    summary = ingest(sessions, items)
    assert (summary.new, summary.failed) == (1, 1)


def test_a_nul_in_a_rejected_id_is_recorded_on_every_database(
    sessions: sessionmaker[Session],
) -> None:
    """Review defect: a NUL in a rejected id must still be recorded in sync_errors on every
    database (PostgreSQL text cannot hold NUL)."""
    body = json.dumps([{"id": "job\u0000bad", "workflow_id": "w"}, factories.job("ok", tasks=1)])
    summary = ingest(sessions, read_items("batch.json", body.encode(), T0))
    assert (summary.new, summary.failed) == (1, 1)
    with sessions() as session:
        assert session.scalars(select(SyncError.message)).one().startswith("batch.json[0]")


def test_arrays_and_envelopes_keep_verbatim_bodies_and_duplicate_keys(
    sessions: sessionmaker[Session],
) -> None:
    """Review defect: items of an array or an envelope keep their verbatim body, duplicate keys
    included, as single payloads do."""
    payload = json.dumps(factories.job("dup", tasks=1))
    with_dup = payload[:-1] + ', "cost": 1, "cost": 7}'
    envelope = '{"fetched_at": "2026-10-01T10:00:00Z", "payload": ' + with_dup + "}"
    array = "[" + with_dup.replace('"dup"', '"dup2"') + "]"
    items = [
        *read_items("env.json", envelope.encode(), None),
        *read_items("a.json", array.encode(), T0),
    ]
    assert [i.raw for i in items] == [with_dup, with_dup.replace('"dup"', '"dup2"')]
    ingest(sessions, items)
    with sessions() as session:
        bodies = set(session.scalars(select(JobSnapshot.body)))
        fields = list(session.scalars(select(IngestProblem.field)))
        costs = set(session.scalars(select(Job.cost)))
    assert with_dup in bodies and fields == ["cost"] * 4 and costs == {7}


def test_rejected_payload_errors_name_the_job(sessions: sessionmaker[Session]) -> None:
    """Review defect: the sync_errors row of a rejected payload names its workflow and job."""
    body = json.dumps(factories.job("big-cost", tasks=0, cost=2**70))
    ingest(sessions, read_items("big.json", body.encode(), T0))
    with sessions() as session:
        row = session.scalars(select(SyncError)).one()
    assert (row.workflow_id, row.job_id) == ("wf-1", "big-cost")
