"""Plan the archiving of payloads: diff each with the archived state into the rows to write.

Archiving is planned, then written. Planning reads the archived state of a whole batch of jobs in
a few queries (``archiver.archive.load``) and works out in Python, job by job, every row to
insert, update or delete: current tables, versions, change log, snapshot. Writing then runs each
statement once for the batch with all of its parameter sets (``archiver.archive.statements``).
A job's plan touches nothing, so a payload found bad while planning is left out of the batch and
its neighbours go on. Nothing here commits: the caller owns the transaction (see
``archiver.archive.batches``), so after a crash the database holds a job's previous or new state,
never a mix. History is written explicitly here, beside the current-state upserts, not by ORM
events.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from archiver.archive.chain import Chain
from archiver.archive.changelog import as_text, changed_fields
from archiver.archive.digests import no_open_errors
from archiver.archive.load import Details, load_details, load_jobs, load_task_digests
from archiver.archive.payload import (
    JOB_FIELDS,
    TASK_FIELDS,
    VAL_ERROR_FIELDS,
    Identified,
    ParsedPayload,
    Problem,
)
from archiver.archive.results import ArchiveResult, JobKey, Outcome, archived_result, body_digest
from archiver.archive.statements import Writes, bound_key
from archiver.errors import ArchiverError, PayloadError
from archiver.models import SNAPSHOTS

# How far a provider's ``updated_at`` may run ahead of the fetch that brought it and still order
# payloads: the API's clock and ours disagree by seconds, not minutes. Beyond it (year 9999, say)
# the value is kept in its column but recorded as a problem and orders nothing, so one wrong
# clock cannot freeze a job (issue 14). A module constant for now; a setting would be its home.
CLOCK_SKEW = timedelta(minutes=5)
FUTURE_UPDATED_AT = (
    "later than the fetch time by more than the clock-skew allowance "
    f"({int(CLOCK_SKEW.total_seconds())} s); kept, but not used to order payloads"
)


def archive(
    session: Session,
    payload: Identified | ParsedPayload,
    fetched_at: datetime,
    *,
    applied: bool | None = None,
) -> ArchiveResult:
    """Archive one payload fetched at ``fetched_at`` (aware). Does not commit.

    ``applied`` replays a recorded decision (see ``plan``); None decides.
    """
    writes = Writes()
    decided = None if applied is None else [applied]
    result = plan(session, [(payload, fetched_at)], writes, applied=decided)[0]
    if isinstance(result, Exception):
        raise result
    writes.execute(session)
    return result


def plan(
    session: Session,
    payloads: Sequence[tuple[Identified | ParsedPayload, datetime]],
    writes: Writes,
    *,
    applied: Sequence[bool] | None = None,
) -> list[ArchiveResult | ArchiverError]:
    """Work out what each payload (of distinct jobs) writes, into ``writes``; reads only.

    A payload refused while being read is returned as its error, and adds nothing to ``writes``.
    The payloads' fields are only read when their hash differs from the archived one, and then
    only those of the tasks and validation errors whose digest differs from the archived one
    (``archiver.archive.digests``); only those are compared with the archived rows.
    ``applied``, when given, is each payload's recorded decision (its snapshot's ``applied``):
    a rebuild replays it rather than deciding staleness again, because ingest decided with
    sightings that wrote no snapshot (see ``_is_stale``).
    """
    keys = [(p.workflow_id, p.job_id) for p, _ in payloads]
    if len(set(keys)) != len(keys):
        raise ValueError("a batch holds one payload per job")
    current = load_jobs(session, keys)
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
                writes.touch(key, fetched_at, errors=not no_open_errors(row["val_errors_sha256"]))
            digest = body_digest(payload.body)
            if row["body_sha256"] != digest:  # the same data spelled differently: remember it
                writes.add("job_body", {"b_wf": key[0], "b_job": key[1], "b_digest": digest})
            out[i] = archived_result(key, "unchanged", row)
        elif row is not None and (
            not applied[i] if applied is not None else _is_stale(row, payload, fetched_at)
        ):
            chain = Chain(row["chain_seq"], row["chain_sha256"])
            if _keep_stale_snapshot(session, payload, fetched_at, chain, writes):
                head = {"b_wf": key[0], "b_job": key[1], "b_seq": chain.seq, "b_head": chain.head}
                writes.add("job_head", head)
            out[i] = archived_result(key, "stale", row)
        else:
            changed.append(i)
    ids = {keys[i]: current[keys[i]]["id"] for i in changed if keys[i] in current}
    digests = load_task_digests(session, ids)
    readings: dict[int, ParsedPayload] = {}
    full: dict[JobKey, list[str]] = {}
    val_errors: list[JobKey] = []
    for i in changed:
        key, row = keys[i], current.get(keys[i])
        try:
            parsed = readings[i] = _read(payloads[i][0], row, digests.get(key))
        except PayloadError as exc:
            out[i] = exc
            continue
        if row is None:
            continue
        if parsed.tasks is not None:
            archived = digests[key]
            full[key] = [
                t.task_id for t in parsed.tasks if not t.as_archived and t.task_id in archived
            ]
        if parsed.val_errors is not None:
            val_errors.append(key)
    details = load_details(session, ids, digests, full, val_errors)
    for i, parsed in readings.items():
        job_writes = Writes()
        key, fetched_at = keys[i], payloads[i][1]
        out[i] = _plan_changed(job_writes, parsed, fetched_at, current.get(key), details.get(key))
        writes.extend(job_writes)
    assert all(r is not None for r in out)
    return out  # type: ignore[return-value]


def _read(
    payload: Identified | ParsedPayload, current: Any, tasks: Mapping[str, Any] | None
) -> ParsedPayload:
    """The payload read against the archived digests of its job's present tasks and errors."""
    if current is None or not isinstance(payload, Identified):
        return payload.parsed
    known = {
        task_id: row["state_sha256"]
        for task_id, row in (tasks or {}).items()
        if row["removed_at"] is None and row["state_sha256"] is not None
    }
    return payload.read(known, current["val_errors_sha256"])


def _is_stale(current: Any, payload: Identified | ParsedPayload, fetched_at: datetime) -> bool:
    """Older than the archived state by the API's ``updated_at``, else by fetch time.

    Only an ``updated_at`` the clock allows orders (``_usable``): the payload's own is judged by
    its fetch time; the archived one by ``last_changed_at``, when the archived state began to be
    observed, which a rebuild reproduces and which is never before the fetch that brought it.
    By fetch time the payload is compared with ``last_seen_at``, the last sighting of the
    archived state: a payload fetched before the state was last confirmed is older than it.
    """
    incoming = _usable(payload.updated_at, fetched_at)
    archived = _usable(current["updated_at"], current["last_changed_at"])
    if incoming is not None and archived is not None and incoming != archived:
        return incoming < archived
    return fetched_at < current["last_seen_at"]


def _usable(updated_at: datetime | None, observed_at: datetime) -> datetime | None:
    """``updated_at`` if it may order payloads: not past ``observed_at`` by more than the skew."""
    if updated_at is None or updated_at > observed_at + CLOCK_SKEW:
        return None
    return updated_at


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
    parsed: ParsedPayload,
    fetched_at: datetime,
    current: Any,
    details: Details | None,
) -> ArchiveResult:
    wf, job_id = parsed.workflow_id, parsed.job_id
    details = details or Details()
    chain = Chain() if current is None else Chain(current["chain_seq"], current["chain_sha256"])
    # Fetch order and updated_at order can disagree (files ingested without fetch times); the
    # history must still read forwards, so a newer state is never dated before the one it
    # follows. That one began at last_changed_at; last_seen_at is no base, because sightings of
    # an unchanged payload move it without a snapshot, and a rebuild could not date alike.
    observed = fetched_at if current is None else max(fetched_at, current["last_changed_at"])
    job = _JobWrite(writes, wf, job_id, observed, chain)
    writes.add("snapshot", chain.link("job_snapshots", _snapshot_row(parsed, fetched_at, True)))
    version = _plan_job_version(job, current, parsed)
    if parsed.tasks is not None:
        _plan_tasks(job, parsed, details)
    if parsed.val_errors_as_archived:  # the archived open errors, seen again
        writes.add("val_error_touch", job.bound())
        val_errors_sha256 = parsed.val_errors_sha256
    elif parsed.val_errors is not None:
        _plan_val_errors(job, parsed, details.val_errors)
        val_errors_sha256 = parsed.val_errors_sha256
    else:  # not reported: the archived errors, and what they were read from, are kept
        val_errors_sha256 = None if current is None else current["val_errors_sha256"]
    for change in job.changes:
        writes.add("change", chain.link("job_changes", change))
    problems = _problems(parsed, fetched_at)
    for p in problems:
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
            "val_errors_sha256": val_errors_sha256,
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
        problems=len(problems),
        version=version,
        status=parsed.job["status"],
        is_terminal=parsed.job["is_terminal"],
    )


def _problems(parsed: ParsedPayload, fetched_at: datetime) -> list[Problem]:
    """The payload's problems, and its ``updated_at`` if too far ahead of the fetch to order."""
    updated_at = parsed.updated_at
    if updated_at is None or _usable(updated_at, fetched_at) is not None:
        return parsed.problems
    return [*parsed.problems, Problem("updated_at", as_text(updated_at), FUTURE_UPDATED_AT)]


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
    .where(bound_key(SNAPSHOTS), SNAPSHOTS.c.sha256 == bindparam("b_sha"))
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


def _plan_tasks(job: _JobWrite, parsed: ParsedPayload, details: Details) -> None:
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
        if task.as_archived:  # its digest is the archived one: read as it was, not typed
            continue
        old = existing.get(task.task_id)
        if old is not None and old["removed_at"] is None:
            fields = changed_fields(old, task.state, TASK_FIELDS)
            if not fields:
                if task.digest is not None and old["state_sha256"] != task.digest:
                    _remember_digest(job, old, task.digest)
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
            {
                **base,
                **task.state,
                "first_seen_at": seen,
                "last_seen_at": seen,
                "removed_at": None,
                "state_sha256": task.digest,
            },
        )
    for tid in removed:
        job.change("task", "presence", "present", "removed", task_id=tid)
        closing.append((tid, existing[tid]["version"]))
    for tid, version in closing:
        writes.add("task_version_close", job.bound(b_task=tid, b_version=version))
    for version_row in versions:
        writes.add("task_version", job.chain.link("task_versions", version_row))
    read = {t.task_id for t in parsed.tasks if not t.as_archived}
    _plan_dependencies(job, parsed, read, details.deps)


def _remember_digest(job: _JobWrite, old: Any, digest: str) -> None:
    """A task read the same as archived from text of another digest (NULL after the migration
    that added digests, or from a release that read differently): its row as it is, with the
    digest, so that the next payload carrying that text does not read it again."""
    job.writes.add(
        "task",
        {
            "workflow_id": job.workflow_id,
            "job_id": job.job_id,
            "task_id": old["task_id"],
            "version": old["version"],
            **{name: old[name] for name in TASK_FIELDS},
            "first_seen_at": job.observed_at,  # an upsert leaves the archived one
            "last_seen_at": job.observed_at,  # as the job's task_touch sets it
            "removed_at": None,
            "state_sha256": digest,
        },
    )


def _plan_dependencies(
    job: _JobWrite, parsed: ParsedPayload, task_ids: set[str], archived: set[tuple[str, str]]
) -> None:
    """The edges of the reported tasks become exactly the payload's; history is in depends_on.

    Only those of the tasks read (``task_ids``): a task recognized by digest lists the
    dependencies it listed when its edges were last made the payload's, so they are.
    """
    existing = {edge for edge in archived if edge[0] in task_ids}
    wanted = {edge for edge in parsed.dependencies if edge[0] in task_ids}
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
