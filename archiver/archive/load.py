"""Read the archived state of a batch of jobs, and recognize bodies archived byte for byte.

Planning (``archiver.archive.plan``) diffs each payload with what this reads: the jobs' rows;
then, for the jobs whose payload changed, the digests of their tasks (``load_task_digests``);
then, once the payloads are read against those digests, what the diff needs in full
(``load_details``): the rows of the tasks not recognized by digest, the edges, and the validation
errors unless recognized by the job's digest of them. Each is one query per batch (tasks in
chunks). A body identical to the archived one (by its digest) is recognized here without being
decoded at all; only its last-seen times move.

The job rows are read ``FOR UPDATE``, in key order: a batch locks in two rounds (bodies
recognized by digest, then the jobs it plans), so two writers whose batches share jobs can still
deadlock; the database then rolls one back and ``archive_batch`` runs it again. Workers that share
a database by leases never hold the same job. SQLite, which locks the whole database, renders no
``FOR UPDATE`` (SQLAlchemy's SQLite compiler leaves it out).
"""

from __future__ import annotations

import functools
import json
import re
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, select, tuple_
from sqlalchemy.orm import Session

from archiver.archive.digests import no_open_errors
from archiver.archive.results import ArchiveResult, JobKey, archived_result
from archiver.archive.statements import Writes
from archiver.models import DEPS, JOBS, TASKS, VAL_ERRORS


@dataclass
class Details:
    """A job's archived tasks, edges and validation errors: what a new payload is diffed with.

    ``tasks`` has every archived task of the job: its full row where it was read in full, else
    the row of ``load_task_digests`` (key, ``version``, ``removed_at``, ``state_sha256``).
    """

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
        JOBS.c.val_errors_sha256,
    )
    .where(JOBS.c.body_sha256.in_(bindparam("b_digests", expanding=True)))
    .order_by(JOBS.c.workflow_id, JOBS.c.job_id)
    .with_for_update()
)


def _of_jobs(table: Any, *columns: Any) -> Any:
    """``columns`` of ``table``'s rows of the jobs whose ``jobs.id`` is in ``b_ids``.

    By the jobs' surrogate ids, joined: every database then reads just those jobs' rows through
    the natural-key index, where SQLite answers ``(workflow_id, job_id) IN (VALUES …)`` by
    scanning the whole table.
    """
    joined = and_(table.c.workflow_id == JOBS.c.workflow_id, table.c.job_id == JOBS.c.job_id)
    return (
        select(*(columns or (table,)))
        .join_from(table, JOBS, joined)
        .where(JOBS.c.id.in_(bindparam("b_ids", expanding=True)))
    )


_TASK_ORDER = TASKS.c["workflow_id", "job_id", "task_id"]
_TASKS_OF = _of_jobs(TASKS).order_by(*_TASK_ORDER)
_TASKS_BY_ID = select(TASKS).where(TASKS.c.id.in_(bindparam("b_ids", expanding=True)))
_TASK_DIGESTS_OF = _of_jobs(
    TASKS,
    *TASKS.c["id", "workflow_id", "job_id", "task_id"],
    *TASKS.c["version", "removed_at", "state_sha256"],
).order_by(*_TASK_ORDER)
_DEPS_OF_TASKS = (
    select(*DEPS.c["workflow_id", "job_id", "task_id", "depends_on_task_id"])
    .join_from(
        DEPS,
        TASKS,
        and_(
            DEPS.c.workflow_id == TASKS.c.workflow_id,
            DEPS.c.job_id == TASKS.c.job_id,
            DEPS.c.task_id == TASKS.c.task_id,
        ),
    )
    .where(TASKS.c.id.in_(bindparam("b_ids", expanding=True)))
)
_VAL_ERRORS_OF = _of_jobs(VAL_ERRORS).order_by(
    *VAL_ERRORS.c["workflow_id", "job_id", "fingerprint"]
)
TASKS_PER_QUERY = 1000  # task ids per query


def load_jobs(session: Session, keys: Sequence[JobKey]) -> dict[JobKey, Any]:
    """The archived rows of the jobs of ``keys`` (those archived), locked."""
    if not keys:
        return {}
    rows = session.execute(_JOBS_BY_KEY, {"b_keys": list(keys)}).mappings()
    return {(row["workflow_id"], row["job_id"]): row for row in rows}


def load_task_digests(session: Session, jobs: Mapping[JobKey, int]) -> dict[JobKey, dict[str, Any]]:
    """Every archived task of ``jobs`` (key -> ``jobs.id``), without its state: task id -> row
    of ``id``, ``task_id``, ``version``, ``removed_at`` and ``state_sha256``, in task id order."""
    out: dict[JobKey, dict[str, Any]] = {key: {} for key in jobs}
    if jobs:
        for row in session.execute(_TASK_DIGESTS_OF, {"b_ids": list(jobs.values())}).mappings():
            out[row["workflow_id"], row["job_id"]][row["task_id"]] = row
    return out


def load_details(
    session: Session,
    jobs: Mapping[JobKey, int],
    tasks: Mapping[JobKey, dict[str, Any]],
    full: Mapping[JobKey, Collection[str]],
    val_errors: Collection[JobKey],
) -> dict[JobKey, Details]:
    """What ``jobs`` (key -> ``jobs.id``) are diffed with: their tasks (their
    ``load_task_digests`` rows in ``tasks``) with the full rows and the edges of those named in
    ``full`` (the others were recognized by digest), and the validation errors of the jobs of
    ``val_errors``.

    A job most of whose tasks are wanted is read whole; of the others, the tasks wanted.
    """
    details = {key: Details(tasks=dict(tasks.get(key, {}))) for key in jobs}
    if not jobs:
        return details
    whole: list[int] = []
    some: list[int] = []
    wanted_ids: list[int] = []
    for key, wanted in full.items():
        archived = tasks[key]
        ids = [archived[task_id]["id"] for task_id in wanted]
        wanted_ids.extend(ids)
        if ids and 2 * len(ids) >= len(archived):
            whole.append(jobs[key])
        else:
            some.extend(ids)
    queries = [(_TASKS_OF, whole)] if whole else []
    queries += [(_TASKS_BY_ID, chunk) for chunk in _chunks(some)]
    for query, chunk in queries:
        for row in session.execute(query, {"b_ids": chunk}).mappings():
            details[row["workflow_id"], row["job_id"]].tasks[row["task_id"]] = row
    for chunk in _chunks(wanted_ids):
        for wf, job_id, task_id, dep in session.execute(_DEPS_OF_TASKS, {"b_ids": chunk}):
            details[wf, job_id].deps.add((task_id, dep))
    if val_errors:
        of_jobs = {"b_ids": [jobs[key] for key in val_errors]}
        for row in session.execute(_VAL_ERRORS_OF, of_jobs).mappings():
            details[row["workflow_id"], row["job_id"]].val_errors[row["fingerprint"]] = row
    return details


def _chunks(ids: list[int]) -> list[list[int]]:
    return [ids[start : start + TASKS_PER_QUERY] for start in range(0, len(ids), TASKS_PER_QUERY)]


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
            errors = not no_open_errors(current["val_errors_sha256"])
            writes.touch(key, body.fetched_at, errors=errors)
        out[i] = archived_result(key, "unchanged", current)
    return out


def _names_workflow(body: str | bytes, workflow_id: str) -> bool:
    """Whether the body carries its workflow id (``identify`` refuses one that does not)."""
    value = _json_text(workflow_id)
    if isinstance(body, str) and f'"workflow_id": {value}' in body:  # as json.dumps spells it
        return True
    pattern = rb'"workflow_id"\s*:\s*' if isinstance(body, bytes) else r'"workflow_id"\s*:\s*'
    needle: Any = value.encode() if isinstance(body, bytes) else value
    return re.search(pattern + re.escape(needle), body) is not None


@functools.lru_cache(maxsize=1024)
def _json_text(value: str) -> str:
    """A batch's bodies name a few workflows, many times."""
    return json.dumps(value)
