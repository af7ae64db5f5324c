"""Check a job's current rows against its history: the sets of rows, not only their values.

The current tables are derived from the history, so each row must be backed by it and each row the
history implies must be there. What a job's walk (``archiver.audit.walk``) kept is enough: the last
version of the job and of each task, each task's presence and each validation error's state from
the change log. The rules are those of the archiving plan (``archiver.archive.plan``):

* ``jobs``: a row needs a history (a forged row has none: ``inserted``); its state columns and
  ``version`` equal its last ``job_versions`` row; ``first_seen_at`` is version 1's
  ``valid_from``, ``last_changed_at`` the last change's ``observed_at`` (later changes are dated
  from it) and ``payload_sha256`` the last applied snapshot's. (A row missing while history
  remains is found when the job's keys are listed.)
* ``tasks``: exactly one row per task with ``task_versions``, equal to its last version, with
  ``removed_at`` set exactly when the last ``presence`` change says ``removed``, to its time.
* ``task_dependencies``: archiving rewrites the edges of the tasks a payload lists to that
  payload's ``depends_on`` and leaves the others' alone, so every task's edges are the
  ``depends_on`` of its last version, a removed task's included.
* ``val_errors``: one row per fingerprint the change log names, open or resolved (at the time) as
  its last ``state`` change says, with its logged ``occurrences`` if a change of them was logged
  (the first count is not logged), and with fields that still hash to its fingerprint.

A row the history does not back is ``inserted``, a row it implies but the table lacks is
``deleted``, a differing value is ``edited``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from archiver.archive.changelog import as_text, same
from archiver.archive.jsonload import canonical
from archiver.archive.payload import JOB_FIELDS, TASK_FIELDS, VAL_ERROR_FIELDS
from archiver.audit.walk import CURRENT, JobWalk

Edges = Mapping[str, Mapping[str, int]]  # task id -> depends-on task id -> row id


def check_current(
    walk: JobWalk, edges: Edges, val_errors: Mapping[str, Any], has_history: bool
) -> None:
    """Flag (into ``walk.flags``) every current row of the job the history does not match."""
    _check_job(walk, has_history)
    _check_tasks(walk)
    _check_edges(walk, edges)
    _check_val_errors(walk, val_errors)


def _check_job(walk: JobWalk, has_history: bool) -> None:
    head, flags = walk.head, walk.flags
    if head is None:
        return
    if not has_history:
        detail = "the job's row has no history: no version backs it"
        flags.add(("jobs", head["id"]), CURRENT, "jobs", head["id"], "inserted", detail)
        return
    last = walk.job_version
    differ = _differ(head, last.row, JOB_FIELDS) if last is not None else []
    differ += [
        name
        for name, expected in (
            ("first_seen_at", walk.first_valid_from),
            ("last_changed_at", walk.last_change_at or walk.first_valid_from),
            ("payload_sha256", walk.last_applied_sha),
        )
        if expected is not None and as_text(head[name]) != as_text(expected)
    ]
    if differ:
        detail = f"the current row differs from its last version in {', '.join(differ)}"
        flags.add(("jobs", head["id"]), CURRENT, "jobs", head["id"], "edited", detail)


def _check_tasks(walk: JobWalk) -> None:
    flags = walk.flags
    for task_id, trail in walk.task_trails.items():
        last = trail.last
        if last is None:  # a presence change without a version: the chain walk names that
            continue
        row = walk.tasks.get(task_id)
        where = f"task {task_id}"
        if row is None:
            detail = f"{where} has a history (last version {last.version}) but no current row"
            flags.add(("tasks", task_id), CURRENT, "tasks", None, "deleted", detail, last.chain_seq)
            continue
        problems = []
        differ = _differ(row, last.row, TASK_FIELDS)
        if differ:
            problems.append(f"the current row differs from its last version in {', '.join(differ)}")
        gone = trail.removed_at if trail.presence == "removed" else None
        if row["removed_at"] != gone:
            problems.append(
                f"removed_at is {as_text(row['removed_at']) or 'NULL'} but its presence changes "
                f"say {as_text(gone) or 'present (NULL)'}"
            )
        if problems:
            detail = f"{where}: {'; '.join(problems)}"
            flags.add(("tasks", row["id"]), CURRENT, "tasks", row["id"], "edited", detail)
    for task_id, row in walk.tasks.items():
        backed = walk.task_trails.get(task_id)
        if backed is None or backed.last is None:
            detail = f"task {task_id} has no history: no task_versions row backs it"
            flags.add(("tasks", row["id"]), CURRENT, "tasks", row["id"], "inserted", detail)


def _check_edges(walk: JobWalk, edges: Edges) -> None:
    """Each task's edges are its last version's ``depends_on``; an edge changed in place shows
    as one edge missing and one foreign for the same task, which is named ``edited``."""
    flags = walk.flags
    table = "task_dependencies"
    for task_id in sorted(set(edges) | set(walk.task_trails)):
        trail = walk.task_trails.get(task_id)
        have = edges.get(task_id, {})
        if trail is None or trail.last is None:
            for dep, row_id in sorted(have.items()):
                detail = f"the edge {task_id} → {dep} belongs to a task with no history"
                flags.add((table, row_id), CURRENT, table, row_id, "inserted", detail)
            continue
        seq = trail.last.chain_seq
        missing = sorted(trail.depends_on - set(have))
        extra = sorted(set(have) - trail.depends_on)
        for dep, wanted in zip(extra, missing, strict=False):
            row_id = have[dep]
            detail = (
                f"the edge {task_id} → {dep} should be {task_id} → {wanted}, as the task's last "
                f"version (seq {seq}) depends on"
            )
            flags.add((table, row_id), CURRENT, table, row_id, "edited", detail)
        for dep in missing[len(extra) :]:
            detail = f"the edge {task_id} → {dep} of the task's last version (seq {seq}) is missing"
            flags.add((table, task_id, dep), CURRENT, table, None, "deleted", detail, seq)
        for dep in extra[len(missing) :]:
            row_id = have[dep]
            detail = (
                f"the edge {task_id} → {dep} is not in the depends_on of the task's last "
                f"version (seq {seq})"
            )
            flags.add((table, row_id), CURRENT, table, row_id, "inserted", detail)


def _check_val_errors(walk: JobWalk, val_errors: Mapping[str, Any]) -> None:
    flags = walk.flags
    table = "val_errors"
    for fp, trail in walk.error_trails.items():
        if trail.state is None:  # occurrences without a state change: the chain walk names that
            continue
        row = val_errors.get(fp)
        short = f"validation error {fp[:12]}…"
        if row is None:
            detail = f"{short} is {trail.state} in the change log but has no current row"
            flags.add((table, fp), CURRENT, table, None, "deleted", detail, trail.state_seq)
            continue
        problems = []
        resolved_at = trail.state_at if trail.state == "resolved" else None
        if row["resolved_at"] != resolved_at:
            problems.append(
                f"resolved_at is {as_text(row['resolved_at']) or 'NULL'} but the change log says "
                f"{trail.state} (seq {trail.state_seq})"
            )
        if trail.occurrences is not None and as_text(row["occurrences"]) != trail.occurrences:
            problems.append(
                f"occurrences is {row['occurrences']} but the change log says {trail.occurrences}"
            )
        if _fingerprint(row) != fp:
            problems.append("its fields no longer hash to its fingerprint")
        if problems:
            detail = f"{short}: {'; '.join(problems)}"
            flags.add((table, row["id"]), CURRENT, table, row["id"], "edited", detail)
    for fp, row in val_errors.items():
        logged = walk.error_trails.get(fp)
        if logged is None or logged.state is None:
            detail = f"validation error {fp[:12]}… has no state change in the change log"
            flags.add((table, row["id"]), CURRENT, table, row["id"], "inserted", detail)


def _differ(current: Any, last: Mapping[str, Any], fields: Sequence[str]) -> list[str]:
    """The fields (and version number) a current row differs from its last version in."""
    # plain equality settles nearly every field; ``same`` (canonical JSON) only the rest
    differ = [f for f in fields if current[f] != last[f] and not same(current[f], last[f])]
    if current["version"] != last["version"]:
        differ.append("version")
    return differ


def _fingerprint(row: Any) -> str:
    """As the payload reader computes it: SHA-256 of the canonical list of the error's fields."""
    fields = canonical([row[name] for name in VAL_ERROR_FIELDS])
    return hashlib.sha256(fields.encode("ascii")).hexdigest()
