"""The write statements of archiving, built once, and the fast executemany that runs them.

Planning (``archiver.archive.plan``) gathers parameter sets per kind of statement into ``Writes``;
``Writes.execute`` runs each kind once per batch, in the catalogue's order, with all of its
parameter sets. It hands them to the driver's ``executemany`` directly, through statements
compiled once per dialect and the same bind processors SQLAlchemy would apply (``_Prepared``):
``session.execute(statement(kind, ...), rows)`` writes exactly the same rows, only slower
(``tests/archive/test_statements.py`` holds the two to that). On PostgreSQL with psycopg 3 the
append-only history rows (``APPENDED``) go in by ``COPY`` instead, same values, same order.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, and_, bindparam, delete, insert, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from archiver.archive.jsontext import dumps
from archiver.archive.payload import VAL_ERROR_FIELDS
from archiver.archive.results import JobKey
from archiver.db import upsert_statement
from archiver.models import (
    CHANGES,
    DEPS,
    JOB_VERSIONS,
    JOBS,
    PROBLEMS,
    SNAPSHOTS,
    TASK_VERSIONS,
    TASKS,
    VAL_ERRORS,
)
from archiver.sqltypes import UTCDateTime

# --- the statements, built once: building them per job cost more than running them -------------


def bound_key(table: Any) -> Any:
    """A job's rows of ``table``, by the parameters ``b_wf`` and ``b_job``."""
    return and_(table.c.workflow_id == bindparam("b_wf"), table.c.job_id == bindparam("b_job"))


_STATEMENTS: dict[str, Any] = {
    "snapshot": insert(SNAPSHOTS),
    "job_version_close": update(JOB_VERSIONS)
    .where(bound_key(JOB_VERSIONS), JOB_VERSIONS.c.version == bindparam("b_version"))
    .values(valid_to=bindparam("b_seen")),
    "job_version": insert(JOB_VERSIONS),
    # removed tasks are marked first, so the touch below passes them over
    "task_removed": update(TASKS)
    .where(bound_key(TASKS), TASKS.c.task_id == bindparam("b_task"))
    .values(removed_at=bindparam("b_seen")),
    "task_touch": update(TASKS)
    .where(bound_key(TASKS), TASKS.c.removed_at.is_(None))
    .values(last_seen_at=bindparam("b_seen")),
    "task_version_close": update(TASK_VERSIONS)
    .where(
        bound_key(TASK_VERSIONS),
        TASK_VERSIONS.c.task_id == bindparam("b_task"),
        TASK_VERSIONS.c.version == bindparam("b_version"),
    )
    .values(valid_to=bindparam("b_seen")),
    "task_version": insert(TASK_VERSIONS),
    "task": None,  # dialect upserts: see statement
    "dep_delete": delete(DEPS).where(
        bound_key(DEPS),
        DEPS.c.task_id == bindparam("b_task"),
        DEPS.c.depends_on_task_id == bindparam("b_dep"),
    ),
    "dep": None,
    "val_error_resolved": update(VAL_ERRORS)
    .where(bound_key(VAL_ERRORS), VAL_ERRORS.c.fingerprint == bindparam("b_fp"))
    .values(resolved_at=bindparam("b_seen")),
    "val_error_touch": update(VAL_ERRORS)
    .where(bound_key(VAL_ERRORS), VAL_ERRORS.c.resolved_at.is_(None))
    .values(last_seen_at=bindparam("b_seen")),
    "val_error": None,
    "change": insert(CHANGES),
    "problem": insert(PROBLEMS),
    "job_touch": update(JOBS).where(bound_key(JOBS)).values(last_seen_at=bindparam("b_seen")),
    "job_body": update(JOBS).where(bound_key(JOBS)).values(body_sha256=bindparam("b_digest")),
    "job_head": update(JOBS)
    .where(bound_key(JOBS))
    .values(chain_seq=bindparam("b_seq"), chain_sha256=bindparam("b_head")),
    "job": None,
}
# (table, natural key, columns an upsert leaves alone) of the upserted kinds
_UPSERTS: dict[str, tuple[Any, tuple[str, ...], tuple[str, ...]]] = {
    "task": (TASKS, ("workflow_id", "job_id", "task_id"), ("first_seen_at",)),
    "dep": (DEPS, ("workflow_id", "job_id", "task_id", "depends_on_task_id"), ()),
    "val_error": (
        VAL_ERRORS,
        ("workflow_id", "job_id", "fingerprint"),
        ("first_seen_at", *VAL_ERROR_FIELDS),
    ),
    "job": (JOBS, ("workflow_id", "job_id"), ("first_seen_at",)),
}


@functools.lru_cache(maxsize=64)
def statement(kind: str, dialect: str, columns: tuple[str, ...]) -> Any:
    """The statement of ``kind`` for ``dialect`` (a name), whose parameter sets hold ``columns``:
    an upsert updates the columns it is given, but for its key and the ones it leaves alone."""
    if kind not in _UPSERTS:
        return _STATEMENTS[kind]
    table, key, kept = _UPSERTS[kind]
    if kind == "dep":
        return upsert_statement(dialect, table, key, ())
    updated = tuple(c for c in columns if c not in key and c not in kept)
    return upsert_statement(dialect, table, key, updated)


# every kind of statement, in the order they run
KINDS: tuple[str, ...] = tuple(_STATEMENTS)


class Writes:
    """Parameter sets per statement, gathered job by job and run once per batch.

    The statements run in a fixed order (the order of ``KINDS``) whatever the jobs, and
    each job's rows keep their order within a table, so ids follow each job's chain.
    """

    __slots__ = ("params",)

    def __init__(self) -> None:
        self.params: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(self, kind: str, row: dict[str, Any]) -> None:
        self.params[kind].append(row)

    def touch(self, key: JobKey, seen: datetime, *, errors: bool = True) -> None:
        """The same payload again: only the last-seen times move (``errors``: of its open
        validation errors too; False when it is known to have none)."""
        params = {"b_wf": key[0], "b_job": key[1], "b_seen": seen}
        self.add("job_touch", params)
        self.add("task_touch", params)
        if errors:
            self.add("val_error_touch", params)

    def extend(self, other: Writes) -> None:
        for kind, rows in other.params.items():
            self.params[kind].extend(rows)

    def execute(self, session: Session) -> None:
        connection = session.connection()
        dialect = connection.dialect
        copy = dialect.name == "postgresql" and dialect.driver == "psycopg"
        # a task's JSON values sit in its tasks row and its task_versions row: serialized once
        serialized: dict[int, Any] = {}
        for kind in KINDS:
            rows = self.params.get(kind)
            if rows:
                columns = tuple(rows[0])
                # every row of a kind comes from one builder; a stray key would be dropped
                assert all(len(row) == len(columns) for row in rows), kind
                if copy and kind in APPENDED:
                    _copy(connection, _copy_prepared(kind, dialect, columns), rows, serialized)
                    continue
                prepared = _prepared(kind, dialect, columns)
                connection.exec_driver_sql(prepared.sql, prepared.parameters(rows, serialized))


# the kinds whose rows are only ever inserted, never upserted: on PostgreSQL (psycopg 3) they go
# in by COPY, which costs the server a fraction of one INSERT per row. COPY takes the rows in
# order in the transaction's connection, so ids, order and atomicity are those of the INSERTs.
APPENDED: dict[str, Any] = {
    "snapshot": SNAPSHOTS,
    "job_version": JOB_VERSIONS,
    "task_version": TASK_VERSIONS,
    "change": CHANGES,
    "problem": PROBLEMS,
}


def _copy(
    connection: Connection,
    prepared: _Prepared,
    rows: Sequence[Mapping[str, Any]],
    serialized: dict[int, Any],
) -> None:
    """``COPY … FROM STDIN`` of the rows, as text: each value is what the INSERT would have
    bound (the same bind processors), spelled by psycopg's text dumpers; a driver error is
    raised as SQLAlchemy raises it for a statement (``DBAPIError``, the connection invalidated
    when it is gone), so callers tell conflicts, refusals and outages apart as before."""
    values = prepared.parameters(rows, serialized)
    if connection._echo:  # logged where SQLAlchemy logs the INSERTs (``echo``, engine logger)
        connection._log_info(prepared.sql)
        connection._log_info("[%d rows]", len(values))
    cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(prepared.sql) as copy:
            write = copy.write_row
            for row in values:
                write(row)
    except Exception as exc:
        connection._handle_dbapi_exception(exc, prepared.sql, None, cursor, None)
    finally:
        cursor.close()


@dataclass(frozen=True, eq=False)
class _Prepared:
    """A statement compiled once for a dialect, with the bind processors of its parameters.

    Why not ``session.execute(statement, rows)``: SQLAlchemy then builds and processes every
    parameter set through its generic machinery, which cost more than the database's own work
    (a third of a first archive). Here each row becomes the driver's tuple or dict in one pass,
    through the same bind processors SQLAlchemy would apply, and the driver's ``executemany``
    gets them all.
    """

    sql: str
    names: tuple[str, ...]  # the parameters in the order the SQL wants them
    keys: tuple[str, ...]  # the driver's names for them (named paramstyles)
    processors: tuple[Callable[[Any], Any] | None, ...]
    json: tuple[bool, ...]  # which parameters are JSON documents
    positional: bool

    def parameters(self, rows: Sequence[Mapping[str, Any]], serialized: dict[int, Any]) -> Any:
        """Driver parameters; ``serialized`` remembers JSON documents by identity, which holds
        because every row (so every document) stays alive and unchanged while it is used."""
        get = serialized.get

        def once(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
            null = process(None)  # the JSON type's NULL: SQL NULL or the text null

            def serialize(value: Any) -> Any:
                if value is None:
                    return null
                key = id(value)
                done = get(key)
                if done is None:
                    done = serialized[key] = process(value)
                return done

            return serialize

        return self.convert(rows, once)

    @functools.cached_property
    def convert(self) -> Callable[..., list[Any]]:
        """``convert(rows, once)``: one function per statement, written out column by column.

        Generated (as ``dataclasses`` generates ``__init__``) because a loop over the columns
        calling a processor or not, per value, cost as much again as the processors themselves.
        """
        namespace: dict[str, Any] = {}
        setup, values = [], []
        for i, (name, process, is_json) in enumerate(
            zip(self.names, self.processors, self.json, strict=True)
        ):
            value = f"row[{name!r}]"
            if process is not None:
                namespace[f"p{i}"] = process
                if is_json:
                    setup.append(f"    j{i} = once(p{i})\n")
                value = f"{'j' if is_json else 'p'}{i}({value})"
            values.append(value)
        if self.positional:
            built = "(" + "".join(f"{v}, " for v in values) + ")"
        else:
            built = (
                "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(self.keys, values, strict=True)) + "}"
            )
        source = (
            "def convert(rows, once):\n"
            + "".join(setup)
            + f"    return [{built} for row in rows]\n"
        )
        exec(source, namespace)  # noqa: S102 - names and keys are SQLAlchemy's bind names
        return namespace["convert"]


@functools.lru_cache(maxsize=8)
def _time_processor(dialect: Any) -> Callable[[Any], Any] | None:
    """One cache for every time column: a batch repeats a few times on many rows (a job's
    observation time on each of its history rows, a task's times on its two rows)."""
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    return None if process is None else functools.lru_cache(maxsize=16384)(process)


def _json_processor(json_type: JSON, dialect: Any) -> Callable[[Any], Any] | None:
    """The JSON type's bind processor, or where it is SQLAlchemy's own (``json.dumps`` of the
    value, no string processing) the same text without ``json.dumps``' setup per call."""
    impl: Any = json_type.dialect_impl(dialect)
    process = impl.bind_processor(dialect)
    if (
        process is None
        or getattr(dialect, "_json_serializer", None) is not None
        or type(impl).bind_processor is not JSON.bind_processor
        or impl._str_impl.bind_processor(dialect) is not None
    ):
        return process

    def serialize(value: Any) -> Any:
        kind = value.__class__
        if kind is list or kind is dict or kind is str or kind is int:
            return dumps(value)
        return process(value)  # None, JSON.NULL, sql.null(), floats, ...: as SQLAlchemy does

    return serialize


@functools.lru_cache(maxsize=128)
def _prepared(kind: str, dialect: Any, columns: tuple[str, ...]) -> _Prepared:
    compiled: Any = statement(kind, dialect.name, columns).compile(
        dialect=dialect, column_keys=list(columns)
    )
    names = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.binds)
    escaped = compiled.escaped_bind_names or {}
    types = [compiled.binds[n].type for n in names]
    return _Prepared(
        sql=compiled.string,
        names=names,
        keys=tuple(escaped.get(n, n) for n in names),
        processors=tuple(_processor(t, dialect) for t in types),
        json=tuple(isinstance(t, JSON) for t in types),
        positional=bool(compiled.positional),
    )


@functools.lru_cache(maxsize=32)
def _copy_prepared(kind: str, dialect: Any, columns: tuple[str, ...]) -> _Prepared:
    """The COPY of an appended kind: its columns in the rows' order, values as tuples."""
    table = APPENDED[kind]
    quote = dialect.identifier_preparer
    listed = ", ".join(quote.quote(c) for c in columns)
    types = [table.c[c].type for c in columns]
    return _Prepared(
        sql=f"COPY {quote.format_table(table)} ({listed}) FROM STDIN",
        names=columns,
        keys=columns,
        processors=tuple(_processor(t, dialect) for t in types),
        json=tuple(isinstance(t, JSON) for t in types),
        positional=True,
    )


def _processor(kind_of: Any, dialect: Any) -> Callable[[Any], Any] | None:
    if isinstance(kind_of, UTCDateTime):
        return _time_processor(dialect)
    if isinstance(kind_of, JSON):
        return _json_processor(kind_of, dialect)
    return kind_of.dialect_impl(dialect).bind_processor(dialect)
