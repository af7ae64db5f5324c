"""Read the archived state of a batch of jobs, and recognize bodies archived byte for byte.

Planning (``archiver.archive.plan``) diffs each payload with what this reads: the jobs' rows, then
the tasks, edges and validation errors of the jobs whose payload changed, each in one query per
batch. A body identical to the archived one (by its digest) is recognized here without being
decoded at all; only its last-seen times move.

The job rows are read ``FOR UPDATE``, in key order: a batch locks in two rounds (bodies
recognized by digest, then the jobs it plans), so two writers whose batches share jobs can still
deadlock; the database then rolls one back and ``archive_batch`` runs it again. Workers that share
a database by leases never hold the same job. SQLite, which locks the whole database, renders no
``FOR UPDATE`` (SQLAlchemy's SQLite compiler leaves it out).
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.orm import Session

from archiver.archive.results import ArchiveResult, JobKey, archived_result
from archiver.archive.statements import Writes
from archiver.models import DEPS, JOBS, TASKS, VAL_ERRORS


@dataclass
class Details:
    """A job's archived tasks, edges and validation errors: what a new payload is diffed with."""

    tasks: dict[str, Any] = field(default_factory=dict)
    deps: set[tuple[str, str]] = field(default_factory=set)
    val_errors: dict[str, Any] = field(default_factory=dict)


def _keys_in(table: Any) -> Any:
    return tuple_(table.c.workflow_id, table.c.job_id).in_(bindparam("b_keys", expanding=True))


_JOBS_BY_KEY = (
    select(JOBS).where(_keys_in(JOBS)).order_by(JOBS.c.workflow_id, JOBS.c.job_id).with_for_update()
)
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
    .with_for_update()
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


def load_jobs(session: Session, keys: Sequence[JobKey]) -> dict[JobKey, Any]:
    """The archived rows of the jobs of ``keys`` (those archived), locked."""
    if not keys:
        return {}
    rows = session.execute(_JOBS_BY_KEY, {"b_keys": list(keys)}).mappings()
    return {(row["workflow_id"], row["job_id"]): row for row in rows}


def load_details(session: Session, keys: Sequence[JobKey]) -> dict[JobKey, Details]:
    """The archived tasks, edges and validation errors of the jobs of ``keys``."""
    details: dict[JobKey, Details] = {key: Details() for key in keys}
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
    for row in session.execute(_JOBS_BY_BODY, {"b_digests": digests}).mappings():
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
            writes.touch(key, body.fetched_at)
        out[i] = archived_result(key, "unchanged", current)
    return out


def _names_workflow(body: str | bytes, workflow_id: str) -> bool:
    """Whether the body carries its workflow id (``identify`` refuses one that does not)."""
    value = json.dumps(workflow_id)
    pattern = rb'"workflow_id"\s*:\s*' if isinstance(body, bytes) else r'"workflow_id"\s*:\s*'
    needle: Any = value.encode() if isinstance(body, bytes) else value
    return re.search(pattern + re.escape(needle), body) is not None
