"""Apply parsed payloads to the archive: current tables, versions, change log, snapshot.

Archiving is planned, then written. Planning reads the archived state of a whole batch of jobs in
a few queries and works out in Python, job by job, every row to insert, update or delete;
writing then runs each prepared statement once for the batch with all of its parameter sets.
A job's plan touches nothing, so a payload found bad while planning is left out of the batch and
its neighbours go on. Nothing here commits: the caller owns the transaction (see
``archiver.archive.ingest``), so after a crash the database holds a job's previous or new state,
never a mix. History is written explicitly here, beside the current-state upserts, not by ORM
events.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import weakref
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import JSON, and_, bindparam, delete, insert, select, text, tuple_, update
from sqlalchemy.orm import Session

from archiver.archive.chain import Chain
from archiver.archive.changelog import as_text, changed_fields
from archiver.archive.payload import (
    JOB_FIELDS,
    TASK_FIELDS,
    VAL_ERROR_FIELDS,
    Identified,
    ParsedPayload,
)
from archiver.db import upsert_statement
from archiver.errors import ArchiverError, PayloadError
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

Outcome = Literal["new", "changed", "unchanged", "stale"]
JobKey = tuple[str, str]


@dataclass
class ArchiveResult:
    workflow_id: str
    job_id: str
    outcome: Outcome
    changes: int = 0
    problems: int = 0
    version: int | None = None
    status: str | None = None
    is_terminal: bool | None = None


def body_digest(body: str | bytes) -> str:
    """SHA-256 of a payload exactly as received: equal digests mean an identical body."""
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()


# --- the statements, built once: building them per job cost more than running them -------------


def _bound_key(table: Any) -> Any:
    return and_(table.c.workflow_id == bindparam("b_wf"), table.c.job_id == bindparam("b_job"))


_STATEMENTS: dict[str, Any] = {
    "snapshot": insert(SNAPSHOTS),
    "job_version_close": update(JOB_VERSIONS)
    .where(_bound_key(JOB_VERSIONS), JOB_VERSIONS.c.version == bindparam("b_version"))
    .values(valid_to=bindparam("b_seen")),
    "job_version": insert(JOB_VERSIONS),
    # removed tasks are marked first, so the touch below passes them over
    "task_removed": update(TASKS)
    .where(_bound_key(TASKS), TASKS.c.task_id == bindparam("b_task"))
    .values(removed_at=bindparam("b_seen")),
    "task_touch": update(TASKS)
    .where(_bound_key(TASKS), TASKS.c.removed_at.is_(None))
    .values(last_seen_at=bindparam("b_seen")),
    "task_version_close": update(TASK_VERSIONS)
    .where(
        _bound_key(TASK_VERSIONS),
        TASK_VERSIONS.c.task_id == bindparam("b_task"),
        TASK_VERSIONS.c.version == bindparam("b_version"),
    )
    .values(valid_to=bindparam("b_seen")),
    "task_version": insert(TASK_VERSIONS),
    "task": None,  # dialect upserts: see _statement
    "dep_delete": delete(DEPS).where(
        _bound_key(DEPS),
        DEPS.c.task_id == bindparam("b_task"),
        DEPS.c.depends_on_task_id == bindparam("b_dep"),
    ),
    "dep": None,
    "val_error_resolved": update(VAL_ERRORS)
    .where(_bound_key(VAL_ERRORS), VAL_ERRORS.c.fingerprint == bindparam("b_fp"))
    .values(resolved_at=bindparam("b_seen")),
    "val_error_touch": update(VAL_ERRORS)
    .where(_bound_key(VAL_ERRORS), VAL_ERRORS.c.resolved_at.is_(None))
    .values(last_seen_at=bindparam("b_seen")),
    "val_error": None,
    "change": insert(CHANGES),
    "problem": insert(PROBLEMS),
    "job_touch": update(JOBS).where(_bound_key(JOBS)).values(last_seen_at=bindparam("b_seen")),
    "job_body": update(JOBS).where(_bound_key(JOBS)).values(body_sha256=bindparam("b_digest")),
    "job_head": update(JOBS)
    .where(_bound_key(JOBS))
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
def _statement(kind: str, dialect: str, columns: tuple[str, ...]) -> Any:
    if kind not in _UPSERTS:
        return _STATEMENTS[kind]
    table, key, kept = _UPSERTS[kind]
    if kind == "dep":
        return upsert_statement(dialect, table, key, ())
    updated = tuple(c for c in columns if c not in key and c not in kept)
    return upsert_statement(dialect, table, key, updated)


class Writes:
    """Parameter sets per statement, gathered job by job and run once per batch.

    The statements run in a fixed order (the order of ``_STATEMENTS``) whatever the jobs, and
    each job's rows keep their order within a table, so ids follow each job's chain.
    """

    __slots__ = ("params",)

    def __init__(self) -> None:
        self.params: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def add(self, kind: str, row: dict[str, Any]) -> None:
        self.params[kind].append(row)

    def extend(self, other: Writes) -> None:
        for kind, rows in other.params.items():
            self.params[kind].extend(rows)

    def execute(self, session: Session) -> None:
        connection = session.connection()
        dialect = connection.dialect
        # a task's JSON values sit in its tasks row and its task_versions row: serialized once
        serialized: dict[int, Any] = {}
        for kind in _STATEMENTS:
            rows = self.params.get(kind)
            if rows:
                columns = tuple(rows[0])
                # every row of a kind comes from one builder; a stray key would be dropped
                assert all(len(row) == len(columns) for row in rows), kind
                prepared = _prepared(kind, dialect, columns)
                connection.exec_driver_sql(prepared.sql, prepared.parameters(rows, serialized))


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

        def once(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def serialize(value: Any) -> Any:
                if value is None:
                    return process(value)
                key = id(value)
                done = serialized.get(key)
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


@functools.lru_cache(maxsize=128)
def _prepared(kind: str, dialect: Any, columns: tuple[str, ...]) -> _Prepared:
    compiled: Any = _statement(kind, dialect.name, columns).compile(
        dialect=dialect, column_keys=list(columns)
    )
    names = tuple(compiled.positiontup) if compiled.positional else tuple(compiled.binds)
    escaped = compiled.escaped_bind_names or {}
    types = [compiled.binds[n].type for n in names]
    processors = []
    for kind_of in types:
        if isinstance(kind_of, UTCDateTime):
            processors.append(_time_processor(dialect))
        else:
            processors.append(kind_of.dialect_impl(dialect).bind_processor(dialect))
    return _Prepared(
        sql=compiled.string,
        names=names,
        keys=tuple(escaped.get(n, n) for n in names),
        processors=tuple(processors),
        json=tuple(isinstance(t, JSON) for t in types),
        positional=bool(compiled.positional),
    )


# --- reading the archived state of a batch -------------------------------------------------------


@dataclass
class _Details:
    """A job's archived tasks, edges and validation errors: what a new payload is diffed with."""

    tasks: dict[str, Any] = field(default_factory=dict)
    deps: set[tuple[str, str]] = field(default_factory=set)
    val_errors: dict[str, Any] = field(default_factory=dict)


def _keys_in(table: Any) -> Any:
    return tuple_(table.c.workflow_id, table.c.job_id).in_(bindparam("b_keys", expanding=True))


_JOBS_BY_KEY = select(JOBS).where(_keys_in(JOBS)).order_by(JOBS.c.workflow_id, JOBS.c.job_id)
_JOBS_BY_BODY = (
    select(
        JOBS.c.workflow_id,
        JOBS.c.job_id,
        JOBS.c.body_sha256,
        JOBS.c.last_seen_at,
        JOBS.c.version,
        JOBS.c.status,
        JOBS.c.is_terminal,
    )
    .where(JOBS.c.body_sha256.in_(bindparam("b_digests", expanding=True)))
    .order_by(JOBS.c.workflow_id, JOBS.c.job_id)
)
_TASKS_OF = (
    select(TASKS).where(_keys_in(TASKS)).order_by(*TASKS.c["workflow_id", "job_id", "task_id"])
)
_DEPS_OF = select(
    DEPS.c.workflow_id, DEPS.c.job_id, DEPS.c.task_id, DEPS.c.depends_on_task_id
).where(_keys_in(DEPS))
_VAL_ERRORS_OF = (
    select(VAL_ERRORS)
    .where(_keys_in(VAL_ERRORS))
    .order_by(*VAL_ERRORS.c["workflow_id", "job_id", "fingerprint"])
)


def _locking(session: Session, query: Any) -> Any:
    """Each query locks its rows in key order. A batch locks in two rounds (bodies recognized by
    digest, then the jobs it plans), so two writers whose batches share jobs can still deadlock;
    the database then rolls one back and ``archive_batch`` runs it again. Workers that share a
    database by leases never hold the same job."""
    return query if session.get_bind().dialect.name == "sqlite" else query.with_for_update()


def _load_jobs(session: Session, keys: Sequence[JobKey]) -> dict[JobKey, Any]:
    if not keys:
        return {}
    rows = session.execute(_locking(session, _JOBS_BY_KEY), {"b_keys": list(keys)}).mappings()
    return {(row["workflow_id"], row["job_id"]): row for row in rows}


def _load_details(session: Session, keys: Sequence[JobKey]) -> dict[JobKey, _Details]:
    details: dict[JobKey, _Details] = {key: _Details() for key in keys}
    if not keys:
        return details
    params = {"b_keys": list(keys)}
    for row in session.execute(_TASKS_OF, params).mappings():
        details[row["workflow_id"], row["job_id"]].tasks[row["task_id"]] = row
    for wf, job_id, task_id, dep in session.execute(_DEPS_OF, params):
        details[wf, job_id].deps.add((task_id, dep))
    for row in session.execute(_VAL_ERRORS_OF, params).mappings():
        details[row["workflow_id"], row["job_id"]].val_errors[row["fingerprint"]] = row
    return details


# --- the byte-identical fast path ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """A body as received, before decoding; its ids when the caller knows them (a poll does)."""

    digest: str
    fetched_at: datetime
    text: str | bytes
    workflow_id: str | None = None
    job_id: str | None = None


def touch_same_bodies(
    session: Session, bodies: Sequence[Received], writes: Writes
) -> list[ArchiveResult | None]:
    """Recognize bodies byte-identical to the archived ones without decoding them.

    A body must match exactly one job's digest, among the jobs of the ids the caller gives (a
    body carries its ids, so that is the job it came from). Matches get their last-seen times
    moved (into ``writes``); the others are None, to be decoded and archived.

    Without a given workflow the body must name one: ``identify`` refuses a body without its
    workflow id, and a poll (which gives it) may have archived such a body. The check is on the
    text, ``"workflow_id": "<the job's workflow>"`` anywhere in it, so a body that lacks the
    top-level field but carries that same pair deeper (in ``spec``, say) is recognized as its
    job's where decoding would refuse it; either way nothing is written but last-seen times.
    """
    out: list[ArchiveResult | None] = [None] * len(bodies)
    if not bodies:
        return out
    digests = sorted({b.digest for b in bodies})
    by_digest: dict[str, list[Any]] = defaultdict(list)
    query = _locking(session, _JOBS_BY_BODY)
    for row in session.execute(query, {"b_digests": digests}).mappings():
        by_digest[row["body_sha256"]].append(row)
    claimed: set[JobKey] = set()
    for i, body in enumerate(bodies):
        rows = by_digest.get(body.digest, [])
        if body.workflow_id is not None:  # what the caller knows must hold, as identify checks
            rows = [r for r in rows if r["workflow_id"] == body.workflow_id]
        if body.job_id is not None:
            rows = [r for r in rows if r["job_id"] == body.job_id]
        if len(rows) != 1:
            continue
        if body.workflow_id is None and not _names_workflow(body.text, rows[0]["workflow_id"]):
            continue  # archived from a poll that gave the workflow: alone, the body is refused
        current = rows[0]
        key = (current["workflow_id"], current["job_id"])
        if key in claimed:  # the same job twice in one batch: the second goes the long way
            continue
        claimed.add(key)
        if body.fetched_at > current["last_seen_at"]:
            _touch(writes, key, body.fetched_at)
        out[i] = _as_archived(key, "unchanged", current)
    return out


def _names_workflow(body: str | bytes, workflow_id: str) -> bool:
    """Whether the body carries its workflow id (``identify`` refuses one that does not)."""
    value = json.dumps(workflow_id)
    pattern = rb'"workflow_id"\s*:\s*' if isinstance(body, bytes) else r'"workflow_id"\s*:\s*'
    needle: Any = value.encode() if isinstance(body, bytes) else value
    return re.search(pattern + re.escape(needle), body) is not None


def _touch(writes: Writes, key: JobKey, seen: datetime) -> None:
    """The same payload again: only the last-seen times move."""
    params = {"b_wf": key[0], "b_job": key[1], "b_seen": seen}
    writes.add("job_touch", params)
    writes.add("task_touch", params)
    writes.add("val_error_touch", params)


def _as_archived(key: JobKey, outcome: Outcome, current: Any) -> ArchiveResult:
    """A payload that changed nothing: the result describes the archived state."""
    return ArchiveResult(
        key[0],
        key[1],
        outcome,
        version=current["version"],
        status=current["status"],
        is_terminal=current["is_terminal"],
    )


# --- archiving decoded payloads ------------------------------------------------------------------


def archive(
    session: Session, payload: Identified | ParsedPayload, fetched_at: datetime
) -> ArchiveResult:
    """Archive one payload fetched at ``fetched_at`` (aware). Does not commit."""
    writes = Writes()
    result = plan(session, [(payload, fetched_at)], writes)[0]
    if isinstance(result, Exception):
        raise result
    writes.execute(session)
    return result


def plan(
    session: Session,
    payloads: Sequence[tuple[Identified | ParsedPayload, datetime]],
    writes: Writes,
) -> list[ArchiveResult | ArchiverError]:
    """Work out what each payload (of distinct jobs) writes, into ``writes``; reads only.

    A payload refused while being read is returned as its error, and adds nothing to ``writes``.
    The payloads' fields are only read when their hash differs from the archived one.
    """
    keys = [(p.workflow_id, p.job_id) for p, _ in payloads]
    if len(set(keys)) != len(keys):
        raise ValueError("a batch holds one payload per job")
    current = _load_jobs(session, keys)
    out: list[ArchiveResult | ArchiverError | None] = [None] * len(payloads)
    changed: list[int] = []
    for i, (payload, fetched_at) in enumerate(payloads):
        key = keys[i]
        try:
            _check_packet_size(session, payload)
        except PayloadError as exc:
            out[i] = exc
            continue
        row = current.get(key)
        if row is not None and row["payload_sha256"] == payload.sha256:
            if fetched_at > row["last_seen_at"]:
                _touch(writes, key, fetched_at)
            digest = body_digest(payload.body)
            if row["body_sha256"] != digest:  # the same data spelled differently: remember it
                writes.add("job_body", {"b_wf": key[0], "b_job": key[1], "b_digest": digest})
            out[i] = _as_archived(key, "unchanged", row)
        elif row is not None and _is_stale(row, payload.updated_at, fetched_at):
            chain = Chain(row["chain_seq"], row["chain_sha256"])
            if _keep_stale_snapshot(session, payload, fetched_at, chain, writes):
                head = {"b_wf": key[0], "b_job": key[1], "b_seq": chain.seq, "b_head": chain.head}
                writes.add("job_head", head)
            out[i] = _as_archived(key, "stale", row)
        else:
            changed.append(i)
    details = _load_details(session, [keys[i] for i in changed if keys[i] in current])
    for i in changed:
        payload, fetched_at = payloads[i]
        job_writes = Writes()
        try:
            out[i] = _plan_changed(
                job_writes, payload, fetched_at, current.get(keys[i]), details.get(keys[i])
            )
        except PayloadError as exc:
            out[i] = exc
            continue
        writes.extend(job_writes)
    assert all(r is not None for r in out)
    return out  # type: ignore[return-value]


def _is_stale(current: Any, updated_at: datetime | None, fetched_at: datetime) -> bool:
    """Older than the archived state by the API's ``updated_at``, else by fetch time."""
    archived_updated = current["updated_at"]
    if updated_at is not None and archived_updated is not None and updated_at != archived_updated:
        return updated_at < archived_updated
    return fetched_at < current["last_seen_at"]


@dataclass
class _JobWrite:
    """One job's plan under way: where it writes, when it was observed, its chain and changes."""

    writes: Writes
    workflow_id: str
    job_id: str
    observed_at: datetime
    chain: Chain
    changes: list[dict[str, Any]] = field(default_factory=list)

    def change(
        self,
        entity: str,
        name: str,
        old: Any,
        new: Any,
        *,
        task_id: str | None = None,
        key: str | None = None,
    ) -> None:
        self.changes.append(
            {
                "workflow_id": self.workflow_id,
                "job_id": self.job_id,
                "task_id": task_id,
                "entity": entity,
                "entity_key": key if key is not None else task_id,
                "field": name,
                "old_value": as_text(old),
                "new_value": as_text(new),
                "observed_at": self.observed_at,
            }
        )

    def bound(self, **params: Any) -> dict[str, Any]:
        return {
            "b_wf": self.workflow_id,
            "b_job": self.job_id,
            "b_seen": self.observed_at,
            **params,
        }


def _plan_changed(
    writes: Writes,
    payload: Identified | ParsedPayload,
    fetched_at: datetime,
    current: Any,
    details: _Details | None,
) -> ArchiveResult:
    wf, job_id = payload.workflow_id, payload.job_id
    parsed = payload.parsed
    details = details or _Details()
    chain = Chain() if current is None else Chain(current["chain_seq"], current["chain_sha256"])
    # Fetch order and updated_at order can disagree (files ingested without fetch times); the
    # history must still read forwards, so a newer state is never dated before the last one.
    observed = fetched_at if current is None else max(fetched_at, current["last_seen_at"])
    job = _JobWrite(writes, wf, job_id, observed, chain)
    writes.add("snapshot", chain.link("job_snapshots", _snapshot_row(parsed, fetched_at, True)))
    version = _plan_job_version(job, current, parsed)
    if parsed.tasks is not None:
        _plan_tasks(job, parsed, details)
    if parsed.val_errors is not None:
        _plan_val_errors(job, parsed, details.val_errors)
    for change in job.changes:
        writes.add("change", chain.link("job_changes", change))
    for p in parsed.problems:
        writes.add(
            "problem",
            {
                "workflow_id": wf,
                "job_id": job_id,
                "task_id": p.task_id,
                "field": p.field[:255],
                "raw_value": p.raw_value,
                "message": p.message,
                "payload_sha256": parsed.sha256,
                "observed_at": observed,
            },
        )
    writes.add(
        "job",
        {
            "workflow_id": wf,
            "job_id": job_id,
            **parsed.job,
            "version": version,
            "payload_sha256": parsed.sha256,
            "body_sha256": body_digest(parsed.body),
            "first_seen_at": observed,
            "last_seen_at": observed,
            "last_changed_at": observed
            if job.changes or current is None
            else current["last_changed_at"],
            **chain.head_columns(),
        },
    )
    outcome: Outcome = "new" if current is None else ("changed" if job.changes else "unchanged")
    return ArchiveResult(
        wf,
        job_id,
        outcome,
        changes=len(job.changes),
        problems=len(parsed.problems),
        version=version,
        status=parsed.job["status"],
        is_terminal=parsed.job["is_terminal"],
    )


_PACKET_LIMITS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _check_packet_size(session: Session, payload: Identified | ParsedPayload) -> None:
    """MySQL/MariaDB refuse a statement over ``max_allowed_packet`` (16 MB by default) by closing
    the connection, which looks like an outage; refuse such a payload up front instead."""
    bind = session.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return
    engine = getattr(bind, "engine", bind)
    limit = _PACKET_LIMITS.get(engine)
    if limit is None:
        limit = int(session.execute(text("SELECT @@max_allowed_packet")).scalar_one())
        _PACKET_LIMITS[engine] = limit
    budget = limit - 64 * 1024  # the statement around the value
    size = len(payload.body)
    if size * 4 > budget:
        size = len(payload.body.encode("utf-8", "surrogatepass"))
    if size > budget:
        raise PayloadError(
            f"payload of {size / 2**20:.1f} MiB for job {payload.workflow_id}/{payload.job_id} "
            f"exceeds the database's max_allowed_packet ({limit / 2**20:.0f} MiB); raise it on "
            "the server to archive such payloads",
            workflow_id=payload.workflow_id,
            job_id=payload.job_id,
        )


def _snapshot_row(
    payload: Identified | ParsedPayload, fetched_at: datetime, applied: bool
) -> dict[str, Any]:
    return {
        "workflow_id": payload.workflow_id,
        "job_id": payload.job_id,
        "sha256": payload.sha256,
        "fetched_at": fetched_at,
        "applied": applied,
        "body": payload.body,
    }


_SNAPSHOT_EXISTS = (
    select(SNAPSHOTS.c.id)
    .where(_bound_key(SNAPSHOTS), SNAPSHOTS.c.sha256 == bindparam("b_sha"))
    .limit(1)
)


def _keep_stale_snapshot(
    session: Session,
    payload: Identified | ParsedPayload,
    fetched_at: datetime,
    chain: Chain,
    writes: Writes,
) -> bool:
    """An older payload is evidence, so it is kept (once), but it changes no state."""
    params = {"b_wf": payload.workflow_id, "b_job": payload.job_id, "b_sha": payload.sha256}
    if session.execute(_SNAPSHOT_EXISTS, params).first() is not None:
        return False
    writes.add("snapshot", chain.link("job_snapshots", _snapshot_row(payload, fetched_at, False)))
    return True


def _plan_job_version(job: _JobWrite, current: Any, parsed: ParsedPayload) -> int:
    fields = changed_fields(current, parsed.job, JOB_FIELDS)
    if current is not None and not fields:
        return int(current["version"])
    for name in fields:
        job.change("job", name, current[name] if current else None, parsed.job[name])
    version = 1
    if current is not None:
        version = current["version"] + 1
        job.writes.add("job_version_close", job.bound(b_version=current["version"]))
    row = {
        "workflow_id": job.workflow_id,
        "job_id": job.job_id,
        "version": version,
        "valid_from": job.observed_at,
        "valid_to": None,
        "payload_sha256": parsed.sha256,
        **parsed.job,
    }
    job.writes.add("job_version", job.chain.link("job_versions", row))
    return version


def _plan_tasks(job: _JobWrite, parsed: ParsedPayload, details: _Details) -> None:
    wf, job_id, seen, writes = job.workflow_id, job.job_id, job.observed_at, job.writes
    existing = details.tasks
    assert parsed.tasks is not None
    incoming = {t.task_id for t in parsed.tasks}
    removed = [
        tid for tid, row in existing.items() if tid not in incoming and row["removed_at"] is None
    ]
    for tid in removed:
        writes.add("task_removed", job.bound(b_task=tid))
    if existing:
        # seen now: every task still present (a task that just disappeared was last seen before)
        writes.add("task_touch", job.bound())
    closing: list[tuple[str, int]] = []
    versions: list[dict[str, Any]] = []
    for task in parsed.tasks:
        old = existing.get(task.task_id)
        if old is not None and old["removed_at"] is None:
            fields = changed_fields(old, task.state, TASK_FIELDS)
            if not fields:
                continue
            closing.append((task.task_id, old["version"]))
        else:
            # a new task is one presence row; its first state is its task_versions row 1
            fields = changed_fields(old, task.state, TASK_FIELDS) if old is not None else []
            previous = "removed" if old is not None else None
            job.change("task", "presence", previous, "present", task_id=task.task_id)
        for name in fields:
            job.change(
                "task", name, old[name] if old else None, task.state[name], task_id=task.task_id
            )
        version = old["version"] + 1 if old is not None else 1
        base = {"workflow_id": wf, "job_id": job_id, "task_id": task.task_id, "version": version}
        versions.append({**base, **task.state, "valid_from": seen, "valid_to": None})
        writes.add(
            "task",
            {**base, **task.state, "first_seen_at": seen, "last_seen_at": seen, "removed_at": None},
        )
    for tid in removed:
        job.change("task", "presence", "present", "removed", task_id=tid)
        closing.append((tid, existing[tid]["version"]))
    for tid, version in closing:
        writes.add("task_version_close", job.bound(b_task=tid, b_version=version))
    for version_row in versions:
        writes.add("task_version", job.chain.link("task_versions", version_row))
    _plan_dependencies(job, parsed, incoming, details.deps)


def _plan_dependencies(
    job: _JobWrite, parsed: ParsedPayload, task_ids: set[str], archived: set[tuple[str, str]]
) -> None:
    """The edges of the reported tasks become exactly the payload's; history is in depends_on."""
    existing = {edge for edge in archived if edge[0] in task_ids}
    wanted = set(parsed.dependencies)
    for t, d in sorted(existing - wanted):
        job.writes.add("dep_delete", job.bound(b_task=t, b_dep=d))
    for t, d in sorted(wanted - existing):
        job.writes.add(
            "dep",
            {
                "workflow_id": job.workflow_id,
                "job_id": job.job_id,
                "task_id": t,
                "depends_on_task_id": d,
            },
        )


def _plan_val_errors(job: _JobWrite, parsed: ParsedPayload, existing: Mapping[str, Any]) -> None:
    wf, job_id, seen = job.workflow_id, job.job_id, job.observed_at
    assert parsed.val_errors is not None
    upserts: list[dict[str, Any]] = []
    for error in parsed.val_errors:
        old = existing.get(error.fingerprint)
        key = error.fingerprint
        if old is None:
            job.change("val_error", "state", None, "open", key=key)
        elif old["resolved_at"] is not None:
            job.change("val_error", "state", "resolved", "open", key=key)
        if old is not None and old["occurrences"] != error.occurrences:
            job.change("val_error", "occurrences", old["occurrences"], error.occurrences, key=key)
        upserts.append(
            {
                "workflow_id": wf,
                "job_id": job_id,
                "fingerprint": key,
                **{name: error.fields[name] for name in VAL_ERROR_FIELDS},
                "occurrences": error.occurrences,
                "first_seen_at": seen,
                "last_seen_at": seen,
                "resolved_at": None,
            }
        )
    incoming = {e.fingerprint for e in parsed.val_errors}
    resolved = [fp for fp, r in existing.items() if fp not in incoming and r["resolved_at"] is None]
    for fp in resolved:
        job.change("val_error", "state", "open", "resolved", key=fp)
        job.writes.add("val_error_resolved", job.bound(b_fp=fp))
    for row in upserts:
        job.writes.add("val_error", row)
