"""Apply one parsed payload to the archive: current tables, versions, change log, snapshot.

``archive`` takes a session and never commits: the caller wraps each job in one transaction, so
after a crash the database holds the previous or the new state of a job, never a mix. History is
written explicitly here, beside the current-state upserts, not by ORM events.
"""

from __future__ import annotations

import hashlib
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, bindparam, delete, insert, select, text, update
from sqlalchemy.orm import Session

from archiver.chain import Chain
from archiver.db import upsert
from archiver.errors import PayloadError
from archiver.history import as_text, changed_fields
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
from archiver.payload import JOB_FIELDS, TASK_FIELDS, VAL_ERROR_FIELDS, Identified, ParsedPayload

Outcome = Literal["new", "changed", "unchanged", "stale"]


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


@dataclass
class _JobWrite:
    """Everything one archive call writes, collected so each table gets one statement."""

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


def body_digest(body: str | bytes) -> str:
    """SHA-256 of a payload exactly as received: equal digests mean an identical body."""
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()


_CURRENT_BODY = select(
    JOBS.c.body_sha256, JOBS.c.last_seen_at, JOBS.c.version, JOBS.c.status, JOBS.c.is_terminal
).where(JOBS.c.workflow_id == bindparam("b_wf"), JOBS.c.job_id == bindparam("b_job"))


def touch_if_same_body(
    session: Session, workflow_id: str, job_id: str, digest: str, fetched_at: datetime
) -> ArchiveResult | None:
    """The poll's fast path: a body byte-identical to the archived one needs no decoding.

    Returns None (having written nothing) when the body differs or the job is new.
    """
    query = _CURRENT_BODY
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update()
    current = session.execute(query, {"b_wf": workflow_id, "b_job": job_id}).first()
    if current is None or current.body_sha256 != digest:
        return None
    if fetched_at > current.last_seen_at:
        _touch(session, workflow_id, job_id, fetched_at)
    return _as_archived(workflow_id, job_id, "unchanged", current._mapping)


def _as_archived(workflow_id: str, job_id: str, outcome: Outcome, current: Any) -> ArchiveResult:
    """A payload that changed nothing: the result describes the archived state."""
    return ArchiveResult(
        workflow_id,
        job_id,
        outcome,
        version=current["version"],
        status=current["status"],
        is_terminal=current["is_terminal"],
    )


def _job_key(table: Any, workflow_id: str, job_id: str) -> Any:
    return and_(table.c.workflow_id == workflow_id, table.c.job_id == job_id)


def _is_stale(current: Any, updated_at: datetime | None, fetched_at: datetime) -> bool:
    """Older than the archived state by the API's ``updated_at``, else by fetch time."""
    archived_updated = current["updated_at"]
    if updated_at is not None and archived_updated is not None and updated_at != archived_updated:
        return updated_at < archived_updated
    return fetched_at < current["last_seen_at"]


def archive(
    session: Session, payload: Identified | ParsedPayload, fetched_at: datetime
) -> ArchiveResult:
    """Archive one payload fetched at ``fetched_at`` (aware). Does not commit.

    The payload's fields are only read when its hash differs from the archived one.
    """
    wf, job_id = payload.workflow_id, payload.job_id
    _check_packet_size(session, payload)
    query = select(JOBS).where(_job_key(JOBS, wf, job_id))
    if session.get_bind().dialect.name != "sqlite":
        query = query.with_for_update()
    current = session.execute(query).mappings().first()

    if current is not None and current["payload_sha256"] == payload.sha256:
        if fetched_at > current["last_seen_at"]:
            _touch(session, wf, job_id, fetched_at)
        digest = body_digest(payload.body)
        if current["body_sha256"] != digest:  # the same data spelled differently: remember it
            session.execute(
                update(JOBS).where(_job_key(JOBS, wf, job_id)).values(body_sha256=digest)
            )
        return _as_archived(wf, job_id, "unchanged", current)

    chain = Chain() if current is None else Chain(current["chain_seq"], current["chain_sha256"])
    if current is not None and _is_stale(current, payload.updated_at, fetched_at):
        if _keep_stale_snapshot(session, payload, fetched_at, chain):
            session.execute(
                update(JOBS).where(_job_key(JOBS, wf, job_id)).values(**chain.head_columns())
            )
        return _as_archived(wf, job_id, "stale", current)

    parsed = payload.parsed
    result = ArchiveResult(
        wf, job_id, "unchanged", status=parsed.job["status"], is_terminal=parsed.job["is_terminal"]
    )
    # Fetch order and updated_at order can disagree (files ingested without fetch times); the
    # history must still read forwards, so a newer state is never dated before the last one.
    observed = fetched_at if current is None else max(fetched_at, current["last_seen_at"])
    write = _JobWrite(wf, job_id, observed, chain)
    _insert_snapshot(session, parsed, fetched_at, chain, applied=True)
    version = _write_job_version(session, write, current, parsed)
    if parsed.tasks is not None:
        _write_tasks(session, write, parsed)
    if parsed.val_errors is not None:
        _write_val_errors(session, write, parsed)
    if write.changes:
        for change in write.changes:
            chain.link("job_changes", change)
        session.execute(insert(CHANGES), write.changes)
    if parsed.problems:
        session.execute(
            insert(PROBLEMS),
            [
                {
                    "workflow_id": wf,
                    "job_id": job_id,
                    "task_id": p.task_id,
                    "field": p.field[:255],
                    "raw_value": p.raw_value,
                    "message": p.message,
                    "payload_sha256": parsed.sha256,
                    "observed_at": observed,
                }
                for p in parsed.problems
            ],
        )

    row = {
        "workflow_id": wf,
        "job_id": job_id,
        **parsed.job,
        "version": version,
        "payload_sha256": parsed.sha256,
        "body_sha256": body_digest(parsed.body),
        "first_seen_at": observed,
        "last_seen_at": observed,
        "last_changed_at": observed
        if write.changes or current is None
        else current["last_changed_at"],
        **chain.head_columns(),
    }
    upsert(
        session, JOBS, [row], key=("workflow_id", "job_id"), update=_without(row, "first_seen_at")
    )
    result.outcome = "new" if current is None else ("changed" if write.changes else "unchanged")
    result.changes, result.problems, result.version = (
        len(write.changes),
        len(parsed.problems),
        version,
    )
    return result


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


def _without(row: Mapping[str, Any], *names: str) -> list[str]:
    return [c for c in row if c not in names]


def _bound_key(table: Any) -> Any:
    return and_(table.c.workflow_id == bindparam("b_wf"), table.c.job_id == bindparam("b_job"))


# built once: an unchanged poll runs these and nothing else, so building them each time showed
_TOUCH = (
    update(JOBS).where(_bound_key(JOBS)).values(last_seen_at=bindparam("b_seen")),
    update(TASKS)
    .where(_bound_key(TASKS), TASKS.c.removed_at.is_(None))
    .values(last_seen_at=bindparam("b_seen")),
    update(VAL_ERRORS)
    .where(_bound_key(VAL_ERRORS), VAL_ERRORS.c.resolved_at.is_(None))
    .values(last_seen_at=bindparam("b_seen")),
)


def _touch(session: Session, wf: str, job_id: str, seen: datetime) -> None:
    """The same payload again: only the last-seen times move."""
    params = {"b_wf": wf, "b_job": job_id, "b_seen": seen}
    for statement in _TOUCH:
        session.execute(statement, params)


def _insert_snapshot(
    session: Session,
    payload: Identified | ParsedPayload,
    fetched_at: datetime,
    chain: Chain,
    *,
    applied: bool,
) -> None:
    row = {
        "workflow_id": payload.workflow_id,
        "job_id": payload.job_id,
        "sha256": payload.sha256,
        "fetched_at": fetched_at,
        "applied": applied,
        "body": payload.body,
    }
    session.execute(insert(SNAPSHOTS).values(chain.link("job_snapshots", row)))


def _keep_stale_snapshot(
    session: Session, payload: Identified | ParsedPayload, fetched_at: datetime, chain: Chain
) -> bool:
    """An older payload is evidence, so it is kept (once), but it changes no state."""
    table = SNAPSHOTS
    exists = session.execute(
        select(table.c.id)
        .where(
            _job_key(table, payload.workflow_id, payload.job_id),
            table.c.sha256 == payload.sha256,
        )
        .limit(1)
    ).first()
    if exists is not None:
        return False
    _insert_snapshot(session, payload, fetched_at, chain, applied=False)
    return True


def _write_job_version(
    session: Session, write: _JobWrite, current: Any, parsed: ParsedPayload
) -> int:
    fields = changed_fields(current, parsed.job, JOB_FIELDS)
    if current is not None and not fields:
        return int(current["version"])
    for name in fields:
        write.change("job", name, current[name] if current else None, parsed.job[name])
    version = 1
    table = JOB_VERSIONS
    if current is not None:
        version = current["version"] + 1
        session.execute(
            update(table)
            .where(_job_key(table, write.workflow_id, write.job_id))
            .where(table.c.version == current["version"])
            .values(valid_to=write.observed_at)
        )
    row = {
        "workflow_id": write.workflow_id,
        "job_id": write.job_id,
        "version": version,
        "valid_from": write.observed_at,
        "valid_to": None,
        "payload_sha256": parsed.sha256,
        **parsed.job,
    }
    session.execute(insert(table).values(write.chain.link("job_versions", row)))
    return version


def _close_task_versions(session: Session, write: _JobWrite, closing: Sequence[tuple[str, int]]):
    if not closing:
        return
    table = TASK_VERSIONS
    session.execute(
        update(table)
        .where(
            _job_key(table, write.workflow_id, write.job_id),
            table.c.task_id == bindparam("b_task_id"),
            table.c.version == bindparam("b_version"),
        )
        .values(valid_to=write.observed_at),
        [{"b_task_id": t, "b_version": v} for t, v in closing],
    )


def _write_tasks(session: Session, write: _JobWrite, parsed: ParsedPayload) -> None:
    wf, job_id, seen = write.workflow_id, write.job_id, write.observed_at
    rows = session.execute(select(TASKS).where(_job_key(TASKS, wf, job_id))).mappings()
    existing = {row["task_id"]: row for row in rows}
    assert parsed.tasks is not None
    incoming = {t.task_id for t in parsed.tasks}

    removed = [
        tid for tid, row in existing.items() if tid not in incoming and row["removed_at"] is None
    ]
    # seen now: every task still present (a task that just disappeared was last seen before)
    session.execute(
        update(TASKS)
        .where(
            _job_key(TASKS, wf, job_id),
            TASKS.c.removed_at.is_(None),
            TASKS.c.task_id.not_in(removed),
        )
        .values(last_seen_at=seen)
    )
    upserts: list[dict[str, Any]] = []
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
            write.change("task", "presence", previous, "present", task_id=task.task_id)
        for name in fields:
            write.change(
                "task", name, old[name] if old else None, task.state[name], task_id=task.task_id
            )
        version = old["version"] + 1 if old is not None else 1
        base = {"workflow_id": wf, "job_id": job_id, "task_id": task.task_id, "version": version}
        versions.append({**base, **task.state, "valid_from": seen, "valid_to": None})
        upserts.append(
            {**base, **task.state, "first_seen_at": seen, "last_seen_at": seen, "removed_at": None}
        )

    for tid in removed:
        write.change("task", "presence", "present", "removed", task_id=tid)
        closing.append((tid, existing[tid]["version"]))
    if removed:
        session.execute(
            update(TASKS)
            .where(_job_key(TASKS, wf, job_id), TASKS.c.task_id.in_(removed))
            .values(removed_at=seen)
        )
    _close_task_versions(session, write, closing)
    if versions:
        for version_row in versions:
            write.chain.link("task_versions", version_row)
        session.execute(insert(TASK_VERSIONS), versions)
    upsert(
        session,
        TASKS,
        upserts,
        key=("workflow_id", "job_id", "task_id"),
        update=_without(upserts[0], "first_seen_at") if upserts else (),
    )
    _write_dependencies(session, write, parsed, incoming)


def _write_dependencies(
    session: Session, write: _JobWrite, parsed: ParsedPayload, task_ids: set[str]
) -> None:
    """The edges of the reported tasks become exactly the payload's; history is in depends_on."""
    wf, job_id = write.workflow_id, write.job_id
    rows = session.execute(
        select(DEPS.c.task_id, DEPS.c.depends_on_task_id).where(_job_key(DEPS, wf, job_id))
    )
    existing = {(r.task_id, r.depends_on_task_id) for r in rows if r.task_id in task_ids}
    wanted = set(parsed.dependencies)
    gone = existing - wanted
    if gone:
        session.execute(
            delete(DEPS).where(
                _job_key(DEPS, wf, job_id),
                DEPS.c.task_id == bindparam("b_task"),
                DEPS.c.depends_on_task_id == bindparam("b_dep"),
            ),
            [{"b_task": t, "b_dep": d} for t, d in sorted(gone)],
        )
    new = sorted(wanted - existing)
    if new:
        upsert(
            session,
            DEPS,
            [
                {"workflow_id": wf, "job_id": job_id, "task_id": t, "depends_on_task_id": d}
                for t, d in new
            ],
            key=("workflow_id", "job_id", "task_id", "depends_on_task_id"),
            update=(),
        )


def _write_val_errors(session: Session, write: _JobWrite, parsed: ParsedPayload) -> None:
    wf, job_id, seen = write.workflow_id, write.job_id, write.observed_at
    rows = session.execute(select(VAL_ERRORS).where(_job_key(VAL_ERRORS, wf, job_id))).mappings()
    existing = {row["fingerprint"]: row for row in rows}
    assert parsed.val_errors is not None
    upserts: list[dict[str, Any]] = []
    for error in parsed.val_errors:
        old = existing.get(error.fingerprint)
        key = error.fingerprint
        if old is None:
            write.change("val_error", "state", None, "open", key=key)
        elif old["resolved_at"] is not None:
            write.change("val_error", "state", "resolved", "open", key=key)
        if old is not None and old["occurrences"] != error.occurrences:
            write.change("val_error", "occurrences", old["occurrences"], error.occurrences, key=key)
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
        write.change("val_error", "state", "open", "resolved", key=fp)
    if resolved:
        session.execute(
            update(VAL_ERRORS)
            .where(_job_key(VAL_ERRORS, wf, job_id), VAL_ERRORS.c.fingerprint.in_(resolved))
            .values(resolved_at=seen)
        )
    if upserts:
        upsert(
            session,
            VAL_ERRORS,
            upserts,
            key=("workflow_id", "job_id", "fingerprint"),
            update=_without(upserts[0], "first_seen_at", *VAL_ERROR_FIELDS),
        )
