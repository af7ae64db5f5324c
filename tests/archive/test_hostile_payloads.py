"""Hostile payloads (issue 7): every one ends stored, stored with a recorded problem, or rejected
and counted, on every database, and a rejected one leaves the archive exactly as it was.

Why this shape: a catalogue of named bodies (``CATALOGUE``) states the expected end of each one, so
a change in behaviour names the payload it concerns. Each body is built for its own workflow, and a
clean version of the job (the "victim") is archived first, so "unchanged after a rejection" and
"absent tasks do not delete archived tasks" are checked against real archived rows. The same
catalogue goes through ``archiver ingest`` (in-process and as a subprocess, whose stderr must hold
no traceback) and through the HTTP client and a sync pass, where a body cap and a gzip bomb join
it. Hypothesis adds arbitrary JSON on top. The databases are migrated once per module (per
backend): each fixture works in its own workflow, so tests still see only their own rows.
"""

from __future__ import annotations

import copy
import functools
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import factories
import pytest
from archive_dump import (
    ARCHIVE_TABLES,
    Archive,
    dump,
    first_difference,
    open_archive,
)
from conftest import BACKENDS, fresh_database
from figures import record_figures
from http_helpers import Recorded, Reply, ScriptedServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from archiver import db
from archiver.api.client import ApiClient
from archiver.archive.batches import archive_one
from archiver.archive.ingest import ingest, read_items
from archiver.archive.payload import parse_payload
from archiver.archive.values import parse_duration
from archiver.config import Settings
from archiver.models import IngestProblem, Job, JobSnapshot, SyncError, Task, ValError
from archiver.polling import tracking
from archiver.polling.sync import SyncPass
from archiver.reporting import reports
from archiver.statuses import DEFAULT_CLASSIFIER

T0 = datetime(2026, 10, 1, 10, 6, tzinfo=UTC)  # when the clean victim was archived
T1 = T0 + timedelta(minutes=30)  # when the hostile payload arrived (after its updated_at)
STORED, PROBLEM, REJECTED = "stored", "problem", "rejected"
MB = 1_000_000
SENTINEL_VALUES = ("unexpected", "database refused")  # signs of an unforeseen failure

Body = Callable[[str, str], bytes]
Check = Callable[[Session, str, str], None]


# --- building bodies -------------------------------------------------------------------------


def victim(wf: str, jid: str) -> dict[str, Any]:
    """The clean job archived before each hostile payload."""
    return factories.job(jid, wf, tasks=3, val_errors=2)


def newer(wf: str, jid: str, **changes: Any) -> dict[str, Any]:
    """The victim, updated later (so never stale), with top-level changes."""
    return factories.evolve(victim(wf, jid), updated_at="2026-10-01T10:30:00Z", **changes)


def wire(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def with_(**changes: Any) -> Body:
    return lambda wf, jid: wire(newer(wf, jid, **changes))


def without(*keys: str, **changes: Any) -> Body:
    def body(wf: str, jid: str) -> bytes:
        doc = newer(wf, jid, **changes)
        for key in keys:
            del doc[key]
        return wire(doc)

    return body


def edited(edit: Callable[[dict[str, Any]], None]) -> Body:
    def body(wf: str, jid: str) -> bytes:
        doc = newer(wf, jid)
        edit(doc)
        return wire(doc)

    return body


def raw_cost(token: str) -> Body:
    """The cost written as a raw JSON token (a number Python would not write, NaN, ...)."""
    return lambda wf, jid: wire(newer(wf, jid)).replace(
        b'"cost": 1200', f'"cost": {token}'.encode()
    )


def task_edit(index: int, **fields: Any) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        doc["tasks"][index].update(fields)

    return edit


# --- checks on what was archived ---------------------------------------------------------------


def job_row(session: Session, wf: str, jid: str) -> Job:
    return session.scalars(select(Job).where(Job.workflow_id == wf, Job.job_id == jid)).one()


def tasks_of(session: Session, wf: str) -> dict[str, Task]:
    return {t.task_id: t for t in session.scalars(select(Task).where(Task.workflow_id == wf))}


def job_is(*, job_id: str | None = None, **expected: Any) -> Check:
    """The job (the victim's id, or ``job_id``) has these column values."""

    def check(session: Session, wf: str, jid: str) -> None:
        job = job_row(session, wf, job_id or jid)
        assert {k: getattr(job, k) for k in expected} == expected

    return check


def tasks_kept(session: Session, wf: str, jid: str) -> None:
    tasks = tasks_of(session, wf)
    assert sorted(tasks) == ["t00", "t01", "t02"]
    assert all(t.removed_at is None for t in tasks.values()), "absent tasks removed archived ones"


def tasks_all_removed(session: Session, wf: str, jid: str) -> None:
    assert {t.removed_at for t in tasks_of(session, wf).values()} == {T1}


def val_errors_open(n: int) -> Check:
    def check(session: Session, wf: str, jid: str) -> None:
        rows = session.scalars(select(ValError).where(ValError.workflow_id == wf)).all()
        assert sum(r.resolved_at is None for r in rows) == n

    return check


def task_is(task_id: str, **expected: Any) -> Check:
    def check(session: Session, wf: str, jid: str) -> None:
        task = tasks_of(session, wf)[task_id]
        assert {k: getattr(task, k) for k in expected} == expected

    return check


def all_of(*checks: Check) -> Check:
    def check(session: Session, wf: str, jid: str) -> None:
        for one in checks:
            one(session, wf, jid)

    return check


def stale_kept_unapplied(session: Session, wf: str, jid: str) -> None:
    job = job_row(session, wf, jid)
    assert (job.version, job.cost, job.last_seen_at) == (1, 1200, T0)
    applied = session.scalars(select(JobSnapshot.applied).where(JobSnapshot.workflow_id == wf))
    assert sorted(applied) == [False, True]


def nothing_new(session: Session, wf: str, jid: str) -> None:
    job = job_row(session, wf, jid)
    assert (job.version, job.last_seen_at, job.last_changed_at) == (1, T1, T0)
    snapshots = session.scalars(select(JobSnapshot.id).where(JobSnapshot.workflow_id == wf))
    assert len(snapshots.all()) == 1


# --- the catalogue ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    name: str
    body: Body
    outcome: str  # STORED, PROBLEM or REJECTED through `archiver ingest`
    expect: str = ""  # a recorded problem (PROBLEM) or the error (REJECTED) contains this
    check: Check | None = None  # more assertions on the archive afterwards
    client: str | None = "same"  # the outcome through the HTTP client; None: not sent that way
    defect: dict[str, str] | None = None  # backend -> known defect (the test is a strict xfail)


HTML = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><center>"
    b"<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)
HUGE_DIGITS = "7" * 4301  # one digit past Python's int-from-text limit
TIMESTAMP_FORMS = {
    "created_at": ("2026-10-01T09:59:00Z", datetime(2026, 10, 1, 9, 59, tzinfo=UTC)),
    "updated_at": ("2026-10-01T12:30:00+02:00", datetime(2026, 10, 1, 10, 30, tzinfo=UTC)),
    "finished_at": ("2026-10-01 10:20:00", datetime(2026, 10, 1, 10, 20, tzinfo=UTC)),
    "exec_created_at": (
        "2026-10-01T10:00:00.123456789Z",
        datetime(2026, 10, 1, 10, 0, 0, 123456, tzinfo=UTC),
    ),
    "exec_updated_at": (1790000000, datetime.fromtimestamp(1790000000, UTC)),
}
TASK_TIMESTAMP_FORMS = {
    "created_at": ("", None),
    "updated_at": (None, None),
    "finished_at": ("0001-01-01T00:00:00Z", None),
    "recv_time": (1790000000.5, datetime.fromtimestamp(1790000000.5, UTC)),
    "send_time": ("2026-10-01t10:00:02z", datetime(2026, 10, 1, 10, 0, 2, tzinfo=UTC)),
    "block_inf_start_time": (
        "2026-10-01T10:00:02.5-0330",
        datetime(2026, 10, 1, 13, 30, 2, 500000, tzinfo=UTC),
    ),
    "block_inf_end_time": ("2026-10-01T10:00:02 UTC", datetime(2026, 10, 1, 10, 0, 2, tzinfo=UTC)),
}
DURATION_FORMS = {
    "1h2m3.5s": "3723.5",
    "754s": "754",
    "250ms": "0.25",
    "00:12:34": "754",
    "1:02:03.5": "3723.5",
    "12:34": "754",
    "2 days, 1:02:03": "176523",
    "PT1H2M": "3720",
    754: "754",
    "754.5": "754.5",
}


def timestamp_forms(doc: dict[str, Any]) -> None:
    doc.update({name: raw for name, (raw, _) in TIMESTAMP_FORMS.items()})
    doc["tasks"][0].update({name: raw for name, (raw, _) in TASK_TIMESTAMP_FORMS.items()})


def check_timestamp_forms(session: Session, wf: str, jid: str) -> None:
    job = job_row(session, wf, jid)
    assert {n: getattr(job, n) for n in TIMESTAMP_FORMS} == {
        n: v for n, (_, v) in TIMESTAMP_FORMS.items()
    }
    task = tasks_of(session, wf)["t00"]
    assert {n: getattr(task, n) for n in TASK_TIMESTAMP_FORMS} == {
        n: v for n, (_, v) in TASK_TIMESTAMP_FORMS.items()
    }


def duration_forms(doc: dict[str, Any]) -> None:
    doc["time_taken"] = "P1DT2H"
    doc["tasks"] = [factories.task(f"d{i}", time_taken=raw) for i, raw in enumerate(DURATION_FORMS)]


def check_duration_forms(session: Session, wf: str, jid: str) -> None:
    assert job_row(session, wf, jid).time_taken_s == Decimal(93600)
    tasks = tasks_of(session, wf)
    seconds = {tasks[f"d{i}"].time_taken_s for i in range(len(DURATION_FORMS))}
    assert seconds == {Decimal(v) for v in DURATION_FORMS.values()}
    got = [tasks[f"d{i}"].time_taken_s for i in range(len(DURATION_FORMS))]
    assert got == [Decimal(v) for v in DURATION_FORMS.values()]


def duration_garbage(doc: dict[str, Any]) -> None:
    for task, raw in zip(doc["tasks"], ("forever", "-5s", []), strict=True):
        task["time_taken"] = raw


def duplicate_keys(wf: str, jid: str) -> bytes:
    text = json.dumps(newer(wf, jid))
    return (text[:-1] + ', "cost": 1, "cost": 7}').encode()


def deep_nesting(wf: str, jid: str) -> bytes:
    depth = 100_000  # far past the 64 allowed, and past Python's recursion limit
    return wire(newer(wf, jid, spec="X")).replace(b'"X"', b"[" * depth + b"]" * depth)


def duplicate_task(doc: dict[str, Any]) -> None:
    doc["tasks"].append(factories.task("t01", status="failed"))


def cycle(doc: dict[str, Any]) -> None:
    doc["tasks"][0]["depends_on"] = ["t02"]  # t02 depends on t00 (via factories' chain)


CATALOGUE: tuple[Hostile, ...] = (
    # bodies that are not a job at all
    Hostile("html_error_page", lambda w, j: HTML, REJECTED, "looks like an HTML page"),
    Hostile("plain_text", lambda w, j: b"Service Unavailable", REJECTED, "not valid JSON"),
    Hostile("empty_body", lambda w, j: b"", REJECTED, "not valid JSON"),
    Hostile("truncated_json", lambda w, j: wire(newer(w, j))[:700], REJECTED, "not valid JSON"),
    Hostile(
        "truncated_pretty_json",
        lambda w, j: json.dumps(newer(w, j), indent=2).encode()[:-40],
        REJECTED,
        "not valid JSON",
    ),
    Hostile(
        "not_utf8",
        lambda w, j: wire(newer(w, j)).replace(b"user-7", b"user-\xff"),
        REJECTED,
        "not UTF-8",
    ),
    Hostile(
        "utf16_body",
        lambda w, j: json.dumps(newer(w, j)).encode("utf-16"),
        REJECTED,
        "not UTF-8",
    ),
    Hostile(
        "raw_nul_byte",
        lambda w, j: wire(newer(w, j)).replace(b'"user-7"', b'"user\x00-7"'),
        REJECTED,
        "control character",
    ),
    Hostile("bom_prefixed", lambda w, j: b"\xef\xbb\xbf" + wire(newer(w, j)), STORED),
    Hostile(
        "error_body_with_200",
        lambda w, j: wire({"error": {"code": "internal", "message": "boom", "details": None}}),
        REJECTED,
        "no job id",
    ),
    Hostile("array_of_scalars", lambda w, j: b'[1, "x", null]', REJECTED, "expected a JSON object"),
    Hostile("bare_number", lambda w, j: b"42", REJECTED, "expected a JSON object"),
    Hostile("deep_nesting", deep_nesting, REJECTED, "nested deeper than 64"),
    # identity
    Hostile("missing_id", without("id"), REJECTED, "no job id"),
    Hostile("null_id", with_(id=None), REJECTED, "no job id"),
    Hostile("blank_id", with_(id="  "), REJECTED, "no job id"),
    Hostile(
        "integer_id",
        with_(id=987654321),
        STORED,
        check=job_is(job_id="987654321", cost=1200),
        client=REJECTED,
    ),
    Hostile("id_too_long", with_(id="j" * 192), REJECTED, "not a usable identifier"),
    Hostile("id_with_nul", with_(id="job\u0000x"), REJECTED, "not a usable identifier"),
    Hostile("id_with_lone_surrogate", with_(id="job\ud800"), REJECTED, "not a usable identifier"),
    Hostile(
        "missing_workflow_id", without("workflow_id"), REJECTED, "no workflow_id", client=STORED
    ),
    Hostile("another_job", lambda w, j: wire(newer(w, j + "-other")), STORED, client=REJECTED),
    # absent is not empty; null is not absent (for the lists), and is NULL (for scalars)
    Hostile("tasks_absent", without("tasks", cost=1300), STORED, check=tasks_kept),
    Hostile("tasks_null", with_(tasks=None, cost=1300), STORED, check=tasks_kept),
    Hostile("tasks_empty", with_(tasks=[]), STORED, check=tasks_all_removed),
    Hostile(
        "tasks_not_a_list", with_(tasks={"t00": {}}), PROBLEM, "tasks is not a list", tasks_kept
    ),
    Hostile(
        "val_errors_absent", without("val_errors", cost=1300), STORED, check=val_errors_open(2)
    ),
    Hostile("val_errors_null", with_(val_errors=None), STORED, check=val_errors_open(0)),
    Hostile(
        "val_errors_not_a_list",
        with_(val_errors="none"),
        PROBLEM,
        "val_errors is not a list",
        val_errors_open(2),
    ),
    Hostile("cost_null", with_(cost=None), STORED, check=job_is(cost=None)),
    Hostile("cost_absent", without("cost"), STORED, check=job_is(cost=None)),
    # swapped types and numbers at the edges
    Hostile("cost_digit_string", with_(cost="123"), PROBLEM, "given as a string", job_is(cost=123)),
    Hostile("cost_integral_float", with_(cost=12.0), STORED, check=job_is(cost=12)),
    Hostile("cost_fraction", with_(cost=12.5), PROBLEM, "a fraction", job_is(cost=None)),
    Hostile("cost_true", with_(cost=True), PROBLEM, "got bool", job_is(cost=None)),
    Hostile("cost_list", with_(cost=[]), PROBLEM, "got list", job_is(cost=None)),
    Hostile("cost_negative", with_(cost=-5), STORED, check=job_is(cost=-5)),
    Hostile("cost_int64_max", with_(cost=2**63 - 1), STORED, check=job_is(cost=2**63 - 1)),
    Hostile("cost_int64_min", with_(cost=-(2**63)), STORED, check=job_is(cost=-(2**63))),
    Hostile("cost_beyond_64_bits", with_(cost=2**64), REJECTED, "beyond the 64-bit"),
    Hostile("cost_beyond_4300_digits", raw_cost(HUGE_DIGITS), REJECTED, "not a usable JSON"),
    Hostile("cost_exponent", raw_cost("1.2e3"), STORED, check=job_is(cost=1200)),
    Hostile("nan_token", raw_cost("NaN"), REJECTED, "NaN"),
    Hostile("infinity_token", raw_cost("Infinity"), REJECTED, "Infinity"),
    Hostile("minus_infinity_token", raw_cost("-Infinity"), REJECTED, "Infinity"),
    Hostile("float_overflow", raw_cost("1e400"), REJECTED, "out of range"),
    Hostile(
        "estimated_duration_float",
        with_(estimated_duration=1e20),
        PROBLEM,
        "64-bit",
        job_is(estimated_duration=None),
    ),
    Hostile("huge_int_in_array", with_(spec=[2**200, -(2**70)]), STORED),
    Hostile("duplicate_json_keys", duplicate_keys, PROBLEM, "duplicate JSON key", job_is(cost=7)),
    # tasks and their graph
    Hostile(
        "duplicate_task_ids",
        edited(duplicate_task),
        PROBLEM,
        "duplicate task id",
        task_is("t01", status="failed"),
    ),
    Hostile(
        "depends_on_unknown",
        edited(task_edit(1, depends_on=["ghost"])),
        PROBLEM,
        "not in this job",
    ),
    Hostile(
        "depends_on_self", edited(task_edit(1, depends_on=["t01"])), PROBLEM, "depends on itself"
    ),
    Hostile("depends_on_cycle", edited(cycle), PROBLEM, "dependency cycle"),
    Hostile(
        "depends_on_not_ids",
        edited(task_edit(1, depends_on=[{"id": "t00"}, None, 7])),
        PROBLEM,
        "not a task id",
    ),
    Hostile(
        "task_not_an_object",
        edited(lambda d: d["tasks"].extend([1, "x", None])),
        PROBLEM,
        "task is not an object",
    ),
    Hostile(
        "task_without_id",
        edited(lambda d: d["tasks"].append({"name": "anonymous"})),
        PROBLEM,
        "task without an id",
    ),
    Hostile(
        "block_info_not_an_object",
        edited(task_edit(0, block_info="ortho")),
        PROBLEM,
        "block_info is not an object",
    ),
    # progress, timestamps, durations, statuses
    Hostile(
        "progress_over_100_text",
        with_(progress=">100"),
        PROBLEM,
        "unreadable progress",
        job_is(progress=">100", progress_pct=None),
    ),
    Hostile(
        "progress_abc",
        with_(progress="abc"),
        PROBLEM,
        "unreadable progress",
        job_is(progress="abc", progress_pct=None),
    ),
    Hostile("progress_150_percent", with_(progress="150%"), PROBLEM, "outside 0..100"),
    Hostile("progress_negative", with_(progress=-1), PROBLEM, "outside 0..100"),
    Hostile("progress_fraction", with_(progress="3/4"), STORED, check=job_is(progress_pct=75)),
    Hostile(
        "task_progress_text",
        edited(task_edit(0, progress="lots")),
        PROBLEM,
        "expected a number",
        task_is("t00", progress=None),
    ),
    Hostile("timestamp_forms", edited(timestamp_forms), STORED, check=check_timestamp_forms),
    Hostile(
        "timestamp_garbage",
        with_(
            created_at="yesterday",
            finished_at="2026-13-45T99:00:00Z",
            exec_created_at=-1,
            exec_updated_at="9999-12-31T23:59:59-05:00",
        ),
        PROBLEM,
        "unreadable timestamp",
        job_is(created_at=None, finished_at=None, exec_created_at=None, exec_updated_at=None),
    ),
    Hostile("duration_forms", edited(duration_forms), STORED, check=check_duration_forms),
    Hostile(
        "duration_garbage",
        edited(duration_garbage),
        PROBLEM,
        "unreadable duration",
        task_is("t00", time_taken_s=None, time_taken="forever"),
    ),
    Hostile(
        "unknown_status",
        with_(status="EXPLODED"),
        PROBLEM,
        "unknown status",
        job_is(status="EXPLODED", status_class="unknown", is_terminal=False),
    ),
    Hostile(
        "status_in_capitals",
        with_(status="COMPLETED"),
        STORED,
        check=job_is(status="COMPLETED", status_class="succeeded", is_terminal=True),
    ),
    # text no database column can hold as is
    Hostile(
        "nul_in_text",
        with_(created_by="ab\u0000c"),
        PROBLEM,
        "NUL character replaced",
        job_is(created_by="ab\ufffdc"),
    ),
    Hostile(
        "lone_surrogate_in_text",
        edited(task_edit(0, err_msg="x\ud800y")),
        PROBLEM,
        "lone surrogate replaced",
        task_is("t00", err_msg="x\ufffdy"),
    ),
    Hostile("nul_in_unknown_key", with_(**{"a\u0000b": 1}), PROBLEM, "NUL character replaced"),
    Hostile(
        "unknown_fields_kept",
        with_(priority="high", labels={"team": "geo"}),
        STORED,
        check=job_is(extra={"priority": "high", "labels": {"team": "geo"}}),
    ),
    # size
    Hostile(
        "string_1mb_state_msg",
        edited(task_edit(0, state_msg="é" * MB)),
        STORED,
        check=task_is("t00", state_msg="é" * MB),
    ),
    Hostile(
        "string_1mb_in_short_column",
        with_(created_by="x" * MB),
        PROBLEM,
        "longer than 255",
        job_is(created_by=None),
    ),
    Hostile("string_1mb_id", with_(id="j" * MB), REJECTED, "not a usable identifier"),
    Hostile(
        "string_1mb_val_error_reason",
        edited(lambda d: d["val_errors"][0].update(reason="r" * MB)),
        STORED,
    ),
    Hostile("string_1mb_key", with_(**{"k" * MB: 1}), STORED),
    Hostile(
        "task_name_over_64kb",
        edited(task_edit(0, name="n" * 70_000)),
        STORED,
        check=task_is("t00", name="n" * 70_000),
    ),
    # order and repetition
    Hostile(
        "stale_payload",
        lambda w, j: wire(
            factories.evolve(victim(w, j), cost=1, updated_at="2026-10-01T09:00:00Z")
        ),
        STORED,
        check=stale_kept_unapplied,
    ),
    Hostile("same_payload_again", lambda w, j: wire(victim(w, j)), STORED, check=nothing_new),
    Hostile(
        "envelope_with_bad_time",
        lambda w, j: wire({"fetched_at": "yesterday", "payload": newer(w, j)}),
        REJECTED,
        "envelope fetched_at",
        client=REJECTED,
    ),
)
BY_NAME = {h.name: h for h in CATALOGUE}
assert len(BY_NAME) == len(CATALOGUE), "duplicate fixture names"


# --- fixtures and the outcome of one payload ----------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def archive(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Archive]:
    """One migrated database per backend for the whole module (migrations take ~0.3 s each)."""
    with (
        fresh_database(request.param, tmp_path_factory.mktemp("hostile")) as url,
        open_archive(request.param, url) as opened,
    ):
        yield opened


def expect_defect(request: pytest.FixtureRequest, hostile: Hostile, backend: str) -> None:
    if hostile.defect and backend in hostile.defect:
        request.applymarker(pytest.mark.xfail(strict=True, reason=hostile.defect[backend]))


def archive_victim(archive: Archive, wf: str, jid: str) -> None:
    result = archive_one(archive.sessions, victim(wf, jid), T0)
    assert (result.outcome, result.problems) == ("new", 0), "the victim must be clean"


def problems_of(archive: Archive, wf: str) -> list[str]:
    with archive.sessions() as session:
        query = select(IngestProblem.message).where(IngestProblem.workflow_id == wf)
        return list(session.scalars(query))


def error_messages(archive: Archive, since_id: int) -> list[str]:
    with archive.sessions() as session:
        query = select(SyncError.message).where(SyncError.id > since_id).order_by(SyncError.id)
        return list(session.scalars(query))


def last_error_id(archive: Archive) -> int:
    with archive.sessions() as session:
        return int(session.scalar(select(SyncError.id).order_by(SyncError.id.desc())) or 0)


@pytest.mark.parametrize("hostile", CATALOGUE, ids=lambda h: h.name)
def test_hostile_payload_through_ingest(
    request: pytest.FixtureRequest, archive: Archive, hostile: Hostile
) -> None:
    expect_defect(request, hostile, archive.backend)
    wf, jid = f"wf-{hostile.name}", "job-1"
    archive_victim(archive, wf, jid)
    before = dump(archive.engine, tables=ARCHIVE_TABLES, workflow_id=wf)
    errors_before = last_error_id(archive)

    summary = ingest(
        archive.sessions, read_items(hostile.name, hostile.body(wf, jid), T1), now=lambda: T1
    )

    errors = error_messages(archive, errors_before)
    problems = problems_of(archive, wf)
    assert not [e for e in errors if any(s in e for s in SENTINEL_VALUES)], errors
    if hostile.outcome == REJECTED:
        assert (summary.failed, summary.archived) == (len(errors), 0) and errors
        assert all(hostile.expect in e for e in errors), errors
        after = dump(archive.engine, tables=ARCHIVE_TABLES, workflow_id=wf)
        assert after == before, first_difference(before, after, ("before", "after"))
    else:
        assert (summary.failed, summary.total, errors) == (0, 1, [])
        if hostile.outcome == STORED:
            assert problems == []
        else:
            assert problems and any(hostile.expect in p for p in problems), problems
    if hostile.check is not None:
        with archive.sessions() as session:
            hostile.check(session, wf, jid)
    record_figures("hostile-ingest", inputs=1, rejected=int(hostile.outcome == REJECTED))


# --- the same catalogue through the HTTP client and a sync pass ---------------------------------


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
            api_key="hostile-suite-key-0123456789", api_url=server.url, max_retries=0, rate_limit=0
        )
        client = ApiClient(config)
        summary = SyncPass(
            archive.sessions,
            client,
            policy=tracking.PollingPolicy.from_settings(config),
            classifier=DEFAULT_CLASSIFIER,
            concurrency=4,
            now=lambda: T1,
        ).run(everything=True)
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


# --- size: memory, time, and what a database accepts ---------------------------------------------

PROBE = Path(__file__).parents[1] / "memory_probe.py"
MEMORY_LIMIT_MB = 100.0


def probe(url: str, path: str, shape: str) -> subprocess.Popen[str]:
    """Start a memory probe (see memory_probe.py); several run at once, each in its process."""
    return subprocess.Popen(
        [sys.executable, str(PROBE), url, path, shape],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )


def probe_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0 and "Traceback" not in err, err[-3000:]
    return json.loads(out)


SKIP_REASONS: dict[str, str] = {}
MemoryRuns = tuple[dict[tuple[str, str, str], dict[str, Any]], dict[str, str | None]]
MEMORY_PROBES = (
    *((backend, "sync", "realistic") for backend in BACKENDS),
    ("sqlite", "store", "distinct"),
    ("sqlite", "sync", "distinct"),
    ("sqlite", "ingest", "distinct"),
)


@pytest.fixture(scope="module")
def memory_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MemoryRuns]:
    """Every memory probe of the module, started at once: each measures its own process, so they
    do not disturb one another, and together they take about the time of the slowest."""
    with ExitStack() as stack:
        urls: dict[str, str | None] = {}
        for backend in BACKENDS:
            folder = tmp_path_factory.mktemp("memory")
            try:
                url = stack.enter_context(fresh_database(backend, folder))
            except pytest.skip.Exception as skipped:
                urls[backend] = None  # the tests that need it skip with conftest's reason
                SKIP_REASONS[backend] = str(skipped)
                continue
            db.upgrade(url)
            urls[backend] = url
        running = {
            key: probe(url, key[1], key[2])
            for key in MEMORY_PROBES
            if (url := urls[key[0]]) is not None
        }
        yield {key: probe_result(process) for key, process in running.items()}, urls


@pytest.mark.parametrize("backend", BACKENDS)
def test_million_element_arrays_and_1mb_strings_stay_under_100_mb(
    memory_runs: MemoryRuns, backend: str
) -> None:
    """A 10^6-element byte array (a 1 MB spec as Go encodes []byte), 10^6 log ids and two 1 MB
    strings, fetched and archived by a sync pass (HTTP client + store): archived, with resident
    memory growing by under 100 MB."""
    results, urls = memory_runs
    if urls[backend] is None:
        pytest.skip(SKIP_REASONS[backend])
    result = results[(backend, "sync", "realistic")]
    assert result["outcome"] == "new"
    assert result["growth_mb"] < MEMORY_LIMIT_MB, result
    record_figures(f"hostile-memory-{backend}", inputs=1, growth_mb=round(result["growth_mb"]))


def test_the_sync_path_costs_no_more_memory_than_the_store(memory_runs: MemoryRuns) -> None:
    """Distinct integers (the worst case per element) fetched and archived cost about what
    archiving the body alone costs: the client's decoded copy is not kept alive while the store
    decodes the body again (it was, until sync.py dropped it: 71 MB against 50 MB here)."""
    results, _ = memory_runs
    store, sync = results[("sqlite", "store", "distinct")], results[("sqlite", "sync", "distinct")]
    assert (store["outcome"], sync["outcome"]) == ("new", "new")
    assert sync["growth_mb"] <= 1.1 * store["growth_mb"] + 5, (sync, store)
    record_figures(
        "hostile-memory-relative",
        store_mb=round(store["growth_mb"]),
        sync_mb=round(sync["growth_mb"]),
        ingest_mb=round(results[("sqlite", "ingest", "distinct")]["growth_mb"]),
    )


def test_ingest_costs_no_more_memory_than_the_store(memory_runs: MemoryRuns) -> None:
    results, _ = memory_runs
    store = results[("sqlite", "store", "distinct")]
    ingested = results[("sqlite", "ingest", "distinct")]
    assert ingested["outcome"] == "new"
    assert ingested["growth_mb"] <= 1.1 * store["growth_mb"] + 5, (ingested, store)


def seconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def test_a_long_digit_run_in_a_duration_is_read_in_linear_time() -> None:
    text = "1" * 4000 + "x"
    assert seconds(lambda: parse_duration(text)) < 0.05


def test_a_long_depends_on_list_is_read_in_linear_time() -> None:
    doc = factories.job(tasks=1)
    doc["tasks"][0]["depends_on"] = [f"d{i}" for i in range(10_000)]
    body = json.dumps(doc)
    assert seconds(lambda: parse_payload(body)) < 0.15


def test_problems_recorded_per_payload_are_bounded() -> None:
    doc = factories.job(tasks=0)
    doc["tasks"] = [0] * 20_000
    assert len(parse_payload(json.dumps(doc)).problems) <= 1000


def test_a_payload_larger_than_the_database_accepts_fails_alone(
    request: pytest.FixtureRequest, archive: Archive
) -> None:
    """A 17 MB payload (under the client's 32 MB cap) is stored, or rejected and counted; either
    way the next payload is archived and nothing raises out of the ingest or the sync pass."""
    big = factories.job("big", "wf-packet", tasks=1)
    big["tasks"][0]["state_msg"] = "x" * (17 * MB)
    items = [
        *read_items("big.json", wire(big), T0),
        *read_items("next.json", wire(factories.job("next", "wf-packet", tasks=1)), T0),
    ]
    summary = ingest(archive.sessions, items, now=lambda: T0)
    assert (summary.archived + summary.failed, summary.total) == (2, 2)
    with archive.sessions() as session:
        assert job_row(session, "wf-packet", "next").version == 1
    record_figures("hostile-packet", inputs=1)


# --- the same catalogue through `archiver ingest` as users run it -------------------------------


# every catalogue body but the megabyte ones (those run in-process above) and known defects
CLI_SAMPLE = tuple(h for h in CATALOGUE if "1mb" not in h.name and h.defect is None)


def test_catalogue_through_the_cli_without_a_traceback(archive: Archive, tmp_path: Path) -> None:
    """The catalogue as files, in one `archiver ingest` subprocess after the victims: one
    `failed` line per rejected payload, none for the others, exit 1, no traceback."""
    victims = tmp_path / "victims.jsonl"
    victims.write_text(
        "\n".join(
            json.dumps(
                {"fetched_at": "2026-10-01T10:06:00Z", "payload": victim(f"cli-{h.name}", "job-1")}
            )
            for h in CLI_SAMPLE
        )
    )
    files = [str(victims)]
    for hostile in CLI_SAMPLE:
        path = tmp_path / f"{hostile.name}.json"
        path.write_bytes(hostile.body(f"cli-{hostile.name}", "job-1"))
        files.append(str(path))
    command = [sys.executable, "-m", "archiver", "ingest", "--quiet"]
    command += ["--fetched-at", T1.isoformat(), "--database-url", archive.url, *files]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 1, proc.stderr[-3000:]
    failed = {
        Path(line.split()[1].rstrip(":").split("[")[0]).stem
        for line in proc.stderr.splitlines()
        if line.startswith("failed ")
    }
    rejected = {h.name for h in CLI_SAMPLE if h.outcome == REJECTED}
    assert failed == rejected
    assert not [line for line in proc.stderr.splitlines() if "unexpected" in line]
    record_figures("hostile-cli", inputs=len(files) - 1, rejected=len(rejected))


# --- arbitrary JSON ------------------------------------------------------------------------------

_TEXT = st.text(max_size=12) | st.sampled_from(
    ["", "\x00", "\ud800", "75%", ">100", "1h2m", "2026-10-01T10:00:00Z", "0001-01-01T00:00:00Z"]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _TEXT
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=10,
)
_JOB_KEYS = st.sampled_from(sorted(factories.job(tasks=0))) | _TEXT
_TASK_KEYS = st.sampled_from(sorted(factories.task("t"))) | _TEXT


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    job=st.dictionaries(_JOB_KEYS, _JSON, max_size=4),
    task=st.dictionaries(_TASK_KEYS, _JSON, max_size=4),
    drop=st.lists(_JOB_KEYS, max_size=2),
    ascii_only=st.booleans(),
)
def test_arbitrary_json_ends_stored_or_rejected_never_unforeseen(
    archive: Archive,
    job: dict[str, Any],
    task: dict[str, Any],
    drop: list[str],
    ascii_only: bool,
) -> None:
    """Values of any JSON type (NaN and lone surrogates included) in any job or task field: the
    payload is archived or rejected with a reason; never an unforeseen error, never a database
    refusing what the parser let through, and a rejection changes nothing."""
    wf = f"wf-hyp-{next(_EXAMPLES)}"
    archive_victim(archive, wf, "job-1")
    doc = newer(wf, "job-1")
    doc.update(copy.deepcopy(job))
    for key in drop:
        doc.pop(key, None)
    tasks = doc.get("tasks")
    if isinstance(tasks, list) and tasks and isinstance(tasks[0], dict):
        tasks[0].update(copy.deepcopy(task))
    body = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    before = dump(archive.engine, tables=ARCHIVE_TABLES, workflow_id=wf)
    errors_before = last_error_id(archive)
    summary = ingest(archive.sessions, read_items("arbitrary.json", body, T1), now=lambda: T1)
    errors = error_messages(archive, errors_before)
    assert not [e for e in errors if any(s in e for s in SENTINEL_VALUES)], errors
    assert summary.total == 1 and summary.failed == len(errors)
    if summary.failed and doc.get("workflow_id") == wf:
        after = dump(archive.engine, tables=ARCHIVE_TABLES, workflow_id=wf)
        assert after == before, first_difference(before, after, ("before", "after"))
    record_figures("hostile-hypothesis", inputs=1, rejected=summary.failed)


_EXAMPLES = iter(range(10**9))


# --- what the archive holds must stay reportable -----------------------------------------------


def test_cost_reports_survive_costs_at_the_64_bit_limits(archive: Archive) -> None:
    """Costs the parser accepts (any int64) sum and subtract exactly past 2**63 everywhere.

    On SQLite a view value beyond 64 bits is exact decimal text (0003's docstring), which SQL
    orders after every number: the deltas are ordered here, in Python.
    """
    wf, big = "wf-report-limits", "wf-report-limits-big"
    top, bottom = 2**63 - 1, -(2**63)
    swing = factories.job("swing", wf, tasks=1, cost=top)
    archive_one(archive.sessions, factories.job("one", wf, tasks=1, cost=1), T0)
    archive_one(archive.sessions, swing, T0)
    later = factories.evolve(swing, cost=bottom, updated_at="2026-10-01T11:00:00Z")
    archive_one(archive.sessions, later, T1)
    archive_one(archive.sessions, factories.job("max", wf, tasks=1, cost=top), T1)
    for i in range(3):  # the same day, workflow and user: sums past 2**63, up and down
        for name, wf_, cost, day in (
            ("top", big, top, "05"),
            ("bottom", f"{big}-neg", bottom, "06"),
        ):
            body = factories.job(f"{name}-{i}", wf_, tasks=1, cost=cost)
            body.update(created_at=f"2031-05-{day}T12:00:00Z")
            body["tasks"][0]["block_info"] = {"id": "b", "name": f"limit-{name}", "version": "1"}
            archive_one(archive.sessions, body, T0)
    since, until = datetime(2031, 5, 5, tzinfo=UTC), datetime(2031, 5, 7, tzinfo=UTC)

    def scalars(sql: str, **params: Any) -> list[int]:
        return [int(v) for v in session.execute(text(sql), params).scalars()]

    with archive.sessions() as session:
        costs = {row.group: row.cost for row in reports.cost_by(session, "workflow")}
        by_day = {row.group: row.cost for row in reports.cost_by(session, "day", since, until)}
        blocks = {row.block: row.jobs_cost for row in reports.cost_by_block(session, since, until)}
        movements = scalars("SELECT delta FROM v_cost_movements WHERE workflow_id = :wf", wf=wf)
        recorded = session.execute(
            text(
                "SELECT increases, decreases, net, after_terminal_net FROM v_cost_recorded_by_day"
                " WHERE workflow_id = :wf"
            ),
            {"wf": wf},
        ).one()
        big_movements = scalars(
            "SELECT increases FROM v_cost_recorded_by_day WHERE workflow_id = :wf", wf=big
        )
        view_costs = {
            w: scalars("SELECT cost FROM v_cost_by_day WHERE workflow_id = :wf", wf=w)
            for w in (wf, big, f"{big}-neg")
        }
        month = scalars("SELECT cost FROM v_cost_by_month WHERE workflow_id = :wf", wf=f"{big}-neg")
    assert costs[wf] == 1 + bottom + top == 0
    assert costs[big] == 3 * top
    assert costs[f"{big}-neg"] == 3 * bottom
    assert by_day == {"2031-05-05": 3 * top, "2031-05-06": 3 * bottom}
    assert blocks == {"limit-top@1": 3 * top, "limit-bottom@1": 3 * bottom}
    assert sorted(movements) == [-(2**64) + 1, 1, top, top]
    assert [int(v) for v in recorded] == [2**64 - 1, -(2**64) + 1, 0, 0]
    assert big_movements == [3 * top]
    assert view_costs == {wf: [0], big: [3 * top], f"{big}-neg": [3 * bottom]}
    assert month == [3 * bottom]
