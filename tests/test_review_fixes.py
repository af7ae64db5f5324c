"""Regression tests for defects found in review: each failed before its fix."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import factories
import pytest
from click.testing import CliRunner
from http_helpers import Reply, ScriptedServer, echo_job, error
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archiver.api.client import ApiClient, _retry_after
from archiver.archive.batches import archive_one
from archiver.archive.ingest import ingest, read_items
from archiver.archive.payload import parse_payload
from archiver.archive.values import parse_duration, parse_int
from archiver.cli import cli
from archiver.config import Settings
from archiver.errors import ForbiddenError, PayloadError, RateLimitedError
from archiver.models import IngestProblem, Job, JobSnapshot, SyncError, Task
from archiver.polling import tracking
from archiver.polling.sync import SyncPass
from archiver.polling.tracking import PollingPolicy
from archiver.statuses import DEFAULT_CLASSIFIER

T0 = datetime(2026, 10, 1, 10, tzinfo=UTC)


def policy() -> PollingPolicy:
    return PollingPolicy(60.0, 0.0, 3600.0, 600.0, 6 * 3600.0, 3, rng=random.Random(1))


def test_absurd_retry_after_cannot_overflow_the_schedule() -> None:
    assert _retry_after("9" * 400) is None
    values = policy().after_failure(
        {"consecutive_failures": 0}, T0, RateLimitedError("429", retry_after=1e12), "429"
    )
    assert values["next_poll_at"] == T0 + timedelta(hours=6)
    many = policy().after_failure({"consecutive_failures": 5000}, T0, RateLimitedError("x"), "x")
    assert many["next_poll_at"] == T0 + timedelta(hours=6)


def test_sync_survives_an_absurd_retry_after(sessions: sessionmaker[Session]) -> None:
    with ScriptedServer() as server:
        server.always(
            lambda r: (
                Reply(429, {"error": {"code": "slow_down"}}, {"Retry-After": "1" + "0" * 12})
                if r.path.endswith("/a")
                else echo_job(r)
            )
        )
        with sessions.begin() as session:
            tracking.track(session, [("w", "a"), ("w", "b")], T0)
        settings = Settings(api_key="k", api_url=server.url, max_retries=0, rate_limit=0)
        summary = SyncPass(
            sessions,
            ApiClient(settings),
            policy=policy(),
            classifier=DEFAULT_CLASSIFIER,
            now=lambda: T0,
        ).run()
    assert (summary.failed, summary.counts["new"]) == (1, 1)
    with sessions() as session:
        assert tracking.load(session, "w", "a")["next_poll_at"] == T0 + timedelta(hours=6)


def test_deep_nesting_and_infinite_numbers_are_rejected_not_fatal(
    sessions: sessionmaker[Session],
) -> None:
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
    body = json.dumps([{"id": "job\u0000bad", "workflow_id": "w"}, factories.job("ok", tasks=1)])
    summary = ingest(sessions, read_items("batch.json", body.encode(), T0))
    assert (summary.new, summary.failed) == (1, 1)
    with sessions() as session:
        assert session.scalars(select(SyncError.message)).one().startswith("batch.json[0]")


def test_costs_that_lost_digits_or_overflow() -> None:
    assert parse_int(12345678901234567.0).value is None
    assert parse_int(12345678901234567.0).problem
    assert parse_int(12.0).value == 12
    with pytest.raises(PayloadError, match="beyond the 64-bit"):
        parse_payload(factories.job(tasks=0, cost=1e30))
    with pytest.raises(PayloadError, match="beyond the 64-bit"):
        parse_payload(factories.job(tasks=0, cost="9" * 80))


@pytest.mark.parametrize("text", ["0ms", "0m0s", "PT0S", "0.0s", "0h", "0", "00:00:00"])
def test_zero_durations_are_zero(text: str) -> None:
    assert parse_duration(text).value == Decimal(0) and parse_duration(text).problem is None


def test_arrays_and_envelopes_keep_verbatim_bodies_and_duplicate_keys(
    sessions: sessionmaker[Session],
) -> None:
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


def test_a_broken_pretty_printed_file_is_one_failure(tmp_path: Path, db_url: str) -> None:
    path = tmp_path / "pretty.json"
    path.write_text(
        json.dumps(factories.job(tasks=2), indent=2).replace('"cost": 1200', '"cost": NaN')
    )
    result = CliRunner().invoke(cli, ["ingest", str(path), "--database-url", db_url])
    assert result.exit_code == 1
    assert "1 payloads: archived 0" in result.stdout
    assert "NaN" in result.stderr


def test_rejected_payload_errors_name_the_job(sessions: sessionmaker[Session]) -> None:
    body = json.dumps(factories.job("big-cost", tasks=0, cost=2**70))
    ingest(sessions, read_items("big.json", body.encode(), T0))
    with sessions() as session:
        row = session.scalars(select(SyncError)).one()
    assert (row.workflow_id, row.job_id) == ("wf-1", "big-cost")


def test_a_removed_task_keeps_its_last_sighting(sessions: sessionmaker[Session]) -> None:
    first = factories.job(tasks=3)
    archive_one(sessions, first, T0)
    later = factories.evolve(first, updated_at="2026-10-01T10:06:00Z")
    later["tasks"] = later["tasks"][:2]
    archive_one(sessions, later, T0 + timedelta(minutes=5))
    with sessions() as session:
        gone = session.scalars(select(Task).where(Task.task_id == "t02")).one()
    assert (gone.last_seen_at, gone.removed_at) == (T0, T0 + timedelta(minutes=5))


def test_untracked_during_a_fetch_stays_untracked() -> None:
    values = policy().after_success({"state": "untracked"}, T0, "running", False)
    assert "state" not in values and "next_poll_at" not in values


def test_a_key_echoed_across_the_message_cut_is_still_redacted() -> None:
    key = "sk_live_" + "8f3a9c2e7b" * 4
    message = "x" * 280 + f" for key {key}"
    with ScriptedServer() as server:
        server.always(error(403, "forbidden", message))
        client = ApiClient(Settings(api_key=key, api_url=server.url, max_retries=0))
        with pytest.raises(ForbiddenError) as caught:
            client.fetch_job("w", "j")
    assert key[:12] not in str(caught.value)


def test_not_authorized_for_one_job_is_not_a_rejected_key() -> None:
    with ScriptedServer() as server:
        server.always(error(403, "not_authorized", "no access to this workflow"))
        client = ApiClient(Settings(api_key="k" * 20, api_url=server.url, max_retries=0))
        with pytest.raises(ForbiddenError):
            client.fetch_job("w", "j")
