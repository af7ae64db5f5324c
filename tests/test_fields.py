"""Every consumer of the state fields agrees with their one declaration (``archiver.fields``).

The models type their columns out (mypy needs them), the parser, the hash chain and the change
log derive theirs: each is pinned here, so a field declared but not given its column, or a column
added beside the declaration, fails one named test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import factories
import pytest
from sqlalchemy import JSON, BigInteger, Boolean, Numeric, String, Table, Text, select
from sqlalchemy.orm import Session, sessionmaker

from archiver import fields as declared
from archiver import ids
from archiver.archive import chain, payload, plan, statements
from archiver.archive.batches import archive_one
from archiver.audit import current as current_rows
from archiver.fields import Field, Kind
from archiver.models import (
    CHANGES,
    JOB_VERSIONS,
    JOBS,
    TASK_VERSIONS,
    TASKS,
    VAL_ERRORS,
    JobState,
    TaskState,
)
from archiver.sqltypes import LongText, UTCDateTime

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)
STATE_TABLES = [
    (JOBS, declared.JOB),
    (JOB_VERSIONS, declared.JOB),
    (TASKS, declared.TASK),
    (TASK_VERSIONS, declared.TASK),
    (VAL_ERRORS, declared.VAL_ERROR),
]
# the columns of val_errors that are bookkeeping, not the error's reported fields
VAL_ERROR_BOOKKEEPING = {
    "id",
    "workflow_id",
    "job_id",
    "fingerprint",
    "occurrences",
    "first_seen_at",
    "last_seen_at",
    "resolved_at",
}


def _declared_type(f: Field) -> tuple[Any, ...]:
    if f.kind is Kind.TEXT:
        return ("text", f.length)
    if f.kind is Kind.DECIMAL:
        return ("decimal", f.digits)
    return (str(f.kind),)


def _column_type(column: Any) -> tuple[Any, ...]:
    """The column's type in the declaration's terms; anything else is returned as is."""
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return ("timestamp",)
    if isinstance(kind, JSON):
        return ("json",)
    if isinstance(kind, Boolean):
        return ("boolean",)
    if type(kind) is BigInteger:
        return ("integer",)
    if isinstance(kind, Numeric) and not isinstance(kind, BigInteger):
        return ("decimal", (kind.precision, kind.scale))
    if repr(kind) == repr(LongText):
        return ("text", None)
    if isinstance(kind, String) and not isinstance(kind, Text):
        return ("text", kind.length)
    return ("unexpected", repr(kind))


def test_the_model_mixins_hold_exactly_the_declared_fields_in_order() -> None:
    assert tuple(JobState.__annotations__) == declared.names(declared.JOB)
    assert tuple(TaskState.__annotations__) == declared.names(declared.TASK)
    val_error_state = [c.name for c in VAL_ERRORS.columns if c.name not in VAL_ERROR_BOOKKEEPING]
    assert tuple(val_error_state) == declared.names(declared.VAL_ERROR)


@pytest.mark.parametrize(("table", "entity"), STATE_TABLES, ids=lambda t: getattr(t, "name", ""))
def test_each_state_column_has_the_declared_type_length_and_nullability(
    table: Table, entity: tuple[Field, ...]
) -> None:
    for f in entity:
        column = table.c[f.name]
        assert (f.name, _column_type(column)) == (f.name, _declared_type(f))
        assert column.nullable, f"{table.name}.{f.name}: a state field may be absent"


def test_the_text_and_id_limits_are_the_models() -> None:
    assert ids.ID_MAX == declared.ID_MAX == JOBS.c.job_id.type.length
    assert JOBS.c.status.type.length == declared.STATUS_MAX


def test_the_parser_reads_every_declared_field_in_order() -> None:
    job = factories.job(tasks=2, val_errors=1, surprise=1)
    job["tasks"][0]["surprise"] = 2
    parsed = payload.parse_payload(job)
    assert tuple(parsed.job) == declared.names(declared.JOB) == payload.JOB_FIELDS
    assert parsed.job["extra"] == {"surprise": 1}  # every other key is a declared one
    assert parsed.tasks is not None and parsed.val_errors is not None
    for task in parsed.tasks:
        assert tuple(task.state) == declared.names(declared.TASK) == payload.TASK_FIELDS
    assert parsed.tasks[0].state["extra"] == {"surprise": 2}
    assert parsed.tasks[1].state["extra"] is None
    fields = parsed.val_errors[0].fields
    assert tuple(fields) == declared.names(declared.VAL_ERROR) == payload.VAL_ERROR_FIELDS
    assert fields["source_component"] == "comp-0" and fields["target_component"] == "comp-1"


def test_the_parser_exports_are_the_declaration() -> None:
    def of(entity: tuple[Field, ...], kind: Kind) -> tuple[str, ...]:
        return tuple(f.name for f in entity if f.kind is kind and f.derive is None)

    assert of(declared.JOB, Kind.TIMESTAMP) == payload.JOB_TIMESTAMPS
    assert of(declared.TASK, Kind.TIMESTAMP) == payload.TASK_TIMESTAMPS
    assert payload.TASK_ARRAYS == ("info_logs", "inputs", "result", "disclaimer")
    # what the planner, the statements and verify's current-row check use is what the parser exports
    assert plan.JOB_FIELDS is payload.JOB_FIELDS and current_rows.JOB_FIELDS is payload.JOB_FIELDS
    assert (
        plan.TASK_FIELDS is payload.TASK_FIELDS and current_rows.TASK_FIELDS is payload.TASK_FIELDS
    )
    assert plan.VAL_ERROR_FIELDS is statements.VAL_ERROR_FIELDS is payload.VAL_ERROR_FIELDS


def test_the_chain_covers_every_declared_field() -> None:
    current = chain.ENCODINGS[chain.CURRENT]
    state = {"job_versions": declared.JOB, "task_versions": declared.TASK}
    for table, entity in state.items():
        assert set(declared.names(entity)) <= set(current[table])
        # v1 is frozen, and is the fields that joined at 1, in declaration order
        first = tuple(f.name for f in entity if f.since == 1)
        assert chain.V1[table][-len(first) :] == first
        assert all(1 <= f.since <= chain.CURRENT for f in entity)


def test_the_change_log_names_every_declared_field(sessions: sessionmaker[Session]) -> None:
    """A version that changes every field logs one job_changes row per field, named as declared."""
    first = factories.job("job-a", tasks=2, val_errors=0)
    second = factories.evolve(
        first,
        status="completed",
        progress="100%",
        cost=1300,
        time_taken="2h",
        estimated_duration=7300,
        created_by="user-8",
        created_at="2026-10-01T09:58:00Z",
        updated_at="2026-10-01T12:00:00Z",
        finished_at="2026-10-01T12:00:00Z",
        exec_created_at="2026-10-01T10:01:00Z",
        exec_updated_at="2026-10-01T12:00:00Z",
        spec={"v": 2},
        surprise=1,
    )
    second["tasks"][0] = factories.task(
        "t00",
        name="step zero",
        status="completed",
        progress=100,
        estimated_time_duration=700,
        time_taken="6m0s",
        state_msg="done",
        err_msg="none",
        failure_type="n/a",
        created_at="2026-10-01T10:00:10Z",
        updated_at="2026-10-01T12:00:00Z",
        finished_at="2026-10-01T12:00:00Z",
        recv_time="2026-10-01T10:00:11Z",
        send_time="2026-10-01T10:00:12Z",
        block_inf_start_time="2026-10-01T10:00:13Z",
        block_inf_end_time="2026-10-01T12:00:00Z",
        block_info={"id": "blk-2", "name": "mosaic", "version": "2.0.0"},
        depends_on=["t01"],
        inputs=[1],
        result=[2],
        info_logs=[9],
        disclaimer=["ga block"],
        surprise=2,
    )
    for i, body in enumerate((first, second)):
        archive_one(sessions, body, T0 + timedelta(hours=i))
    with sessions() as session:
        logged = session.execute(
            select(CHANGES.c.entity, CHANGES.c.field, CHANGES.c.task_id).where(
                CHANGES.c.observed_at == T0 + timedelta(hours=1)
            )
        ).all()
    assert {f for e, f, _ in logged if e == "job"} == set(declared.names(declared.JOB))
    task_fields = {f for e, f, t in logged if e == "task" and t == "t00"}
    assert task_fields == set(declared.names(declared.TASK))
