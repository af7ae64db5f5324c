"""The hostile-payload catalogue (issue 7), shared by the suites that send it through ingest
(tests/archive/test_hostile_payloads.py), the HTTP client and a sync pass
(tests/api/test_hostile_bodies.py) and `archiver ingest` (tests/cli/test_hostile_cli.py).

Why this shape: a catalogue of named bodies (``CATALOGUE``) states the expected end of each one, so
a change in behaviour names the payload it concerns. Each body is built for its own workflow, and a
clean version of the job (the "victim") is archived first, so "unchanged after a rejection" and
"absent tasks do not delete archived tasks" are checked against real archived rows. The databases
are migrated once per test module (per backend): each fixture works in its own workflow, so tests
still see only their own rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import factories
import pytest
from archive_dump import (
    Archive,
    open_archive,
)
from conftest import fresh_database
from sqlalchemy import select
from sqlalchemy.orm import Session

from archiver.archive.batches import archive_one
from archiver.models import IngestProblem, Job, JobSnapshot, SyncError, Task, ValError

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
        "an API error envelope, not a job",
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


# --- one migrated archive per module, and what a payload left in it ----------------------------


@contextmanager
def hostile_archive(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """One migrated database for a whole test module (migrations take ~0.3 s each)."""
    with (
        fresh_database(backend, tmp_path_factory.mktemp("hostile")) as url,
        open_archive(backend, url) as opened,
    ):
        yield opened


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
