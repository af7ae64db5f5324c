"""Recompute the per-job hash chains and snapshot hashes; name every break (``archiver verify``).

A chain proves three things about a job's history rows: each row's content is what was written
(its ``row_sha256`` still matches), each row follows the row it followed when written (its
``prev_sha256`` is that row's hash), and nothing was cut off the end (``jobs.chain_seq`` and
``jobs.chain_sha256`` still name the last row). A break is classified from which of these fail:

* ``edited``: the content no longer matches the row's own hash, the link still holds;
* ``deleted``: a row's link names a hash that no row of the job has any more (or the head names a
  row past the end): rows before it were removed;
* ``inserted``: neither the content nor the link is the archiver's (or the row has no hash at all);
* ``reordered``: the row is intact, but its link names another row of the job than the one now
  before it (by ``chain_seq``, or by id within its table).

Beyond the chains: a snapshot's body must still hash to its ``sha256``; versions must close where
the next begins (``valid_to``, which the chain cannot cover because it is written later); the
current tables must equal the last version; closed period statements must match their hash.
Jobs are read a chunk at a time, so memory does not grow with the archive.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from sqlalchemy import Table, insert, select, tuple_
from sqlalchemy.orm import Session

from archiver.archive.chain import GENESIS, UnknownEncoding, all_covered, row_hash
from archiver.archive.changelog import as_text, same
from archiver.archive.payload import JOB_FIELDS, TASK_FIELDS, identify
from archiver.audit.breaks import Break
from archiver.audit.periods import verify_statements
from archiver.errors import ArchiverError, PayloadError
from archiver.models import (
    ANCHORS,
    CHANGES,
    JOB_VERSIONS,
    JOBS,
    SNAPSHOTS,
    TASK_VERSIONS,
    TASKS,
)

CHUNK = 500
HISTORY: dict[str, Table] = {
    "job_snapshots": SNAPSHOTS,
    "job_versions": JOB_VERSIONS,
    "task_versions": TASK_VERSIONS,
    "job_changes": CHANGES,
}
_EXTRA = {"job_snapshots": ("body",), "job_versions": ("valid_to",), "task_versions": ("valid_to",)}


@dataclass
class Report:
    jobs: int = 0
    rows: int = 0
    snapshots: int = 0
    statements: int = 0
    seconds: float = 0.0
    breaks: list[Break] = field(default_factory=list)
    heads: list[tuple[str, str, int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    def line(self) -> str:
        verdict = "no breaks" if self.ok else f"{len(self.breaks)} breaks"
        return (
            f"verified {self.jobs} jobs: {self.rows} history rows, {self.snapshots} snapshots, "
            f"{self.statements} period statements in {self.seconds:.1f} s: {verdict}"
        )


def verify(
    session: Session, *, workflow_id: str | None = None, job_id: str | None = None
) -> Report:
    started = time.perf_counter()
    report = Report()
    keys = _job_keys(session, workflow_id, job_id, report)
    for start in range(0, len(keys), CHUNK):
        _verify_chunk(session, keys[start : start + CHUNK], report)
    if workflow_id is None and job_id is None:
        report.statements, breaks = verify_statements(session)
        report.breaks.extend(breaks)
    report.seconds = time.perf_counter() - started
    return report


def _job_keys(
    session: Session, workflow_id: str | None, job_id: str | None, report: Report
) -> list[tuple[str, str]]:
    """Every job with a jobs row or any history row; history without a jobs row is a break."""

    def where(t: Table, query: Any) -> Any:
        if workflow_id is not None:
            query = query.where(t.c.workflow_id == workflow_id)
        if job_id is not None:
            query = query.where(t.c.job_id == job_id)
        return query

    jobs = {
        tuple(r) for r in session.execute(where(JOBS, select(JOBS.c.workflow_id, JOBS.c.job_id)))
    }
    orphans: set[tuple[str, str]] = set()
    for name, t in HISTORY.items():
        query = where(t, select(t.c.workflow_id, t.c.job_id).distinct())
        for wf, jid in session.execute(query):
            if (wf, jid) not in jobs and (wf, jid) not in orphans:
                orphans.add((wf, jid))
                report.breaks.append(
                    Break(
                        "jobs",
                        None,
                        wf,
                        jid,
                        "deleted",
                        f"the job's row is missing but {name} holds its history",
                    )
                )
    return sorted(jobs | orphans)


def _verify_chunk(session: Session, keys: Sequence[tuple[str, str]], report: Report) -> None:
    rows: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for name, t in HISTORY.items():
        columns = [
            t.c.id,
            t.c.chain_seq,
            t.c.prev_sha256,
            t.c.row_sha256,
            t.c.chain_version,
            *(t.c[c] for c in all_covered(name) + _EXTRA.get(name, ())),
        ]
        query = select(*columns).where(tuple_(t.c.workflow_id, t.c.job_id).in_(keys))
        for row in session.execute(query).mappings():
            rows[(row["workflow_id"], row["job_id"])].append((name, dict(row)))
    heads = {
        (r["workflow_id"], r["job_id"]): r
        for r in session.execute(
            select(JOBS).where(tuple_(JOBS.c.workflow_id, JOBS.c.job_id).in_(keys))
        ).mappings()
    }
    tasks: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for task in session.execute(
        select(TASKS).where(tuple_(TASKS.c.workflow_id, TASKS.c.job_id).in_(keys))
    ).mappings():
        tasks[(task["workflow_id"], task["job_id"])][task["task_id"]] = task
    for key in keys:
        job_rows = rows.get(key, [])
        report.jobs += 1
        report.rows += len(job_rows)
        head = heads.get(key)
        breaks = _check_job(key, job_rows, head, tasks.get(key, {}), report)
        report.breaks.extend(breaks)


def _check_job(
    key: tuple[str, str],
    rows: list[tuple[str, dict[str, Any]]],
    head: Any,
    tasks: dict[str, Any],
    report: Report,
) -> list[Break]:
    wf, jid = key
    found: dict[tuple[str, int], Break] = {}

    def flag(name: str, row: dict[str, Any], kind: str, detail: str) -> None:
        found.setdefault(
            (name, row["id"]), Break(name, row["id"], wf, jid, kind, detail, row["chain_seq"])
        )

    chained = []
    for name, row in rows:
        if row["chain_seq"] is None or row["row_sha256"] is None or row["prev_sha256"] is None:
            flag(name, row, "inserted", "the row has no chain hash: the archiver did not write it")
            continue
        try:
            row["_content_ok"] = row_hash(row["prev_sha256"], name, row) == row["row_sha256"]
        except UnknownEncoding as exc:  # edited, or written by a newer archiver: not provable
            flag(name, row, "edited", f"its {exc}, so its hash cannot be checked")
            row["_content_ok"] = False
        chained.append((name, row))
    _walk(chained, flag)
    _check_id_order(chained, flag)

    last = max(chained, key=lambda r: r[1]["chain_seq"], default=None)
    last_seq, last_hash = (last[1]["chain_seq"], last[1]["row_sha256"]) if last else (0, GENESIS)
    if head is not None:
        head_seq, head_hash = head["chain_seq"] or 0, head["chain_sha256"] or GENESIS
        broken: tuple[str, str] | None = None
        if head_seq > last_seq:
            broken = (
                "deleted",
                f"the chain ends at seq {last_seq} but the job's head is seq {head_seq}: "
                f"the last {head_seq - last_seq} history rows were removed",
            )
        elif (head_seq, head_hash) != (last_seq, last_hash):
            broken = (
                "inserted" if head_seq < last_seq else "edited",
                f"the job's head (seq {head_seq}) does not name the chain's last row "
                f"(seq {last_seq})",
            )
        if broken is not None:  # keyed apart from the current-row check of the same jobs row
            kind, detail = broken
            found.setdefault(
                ("jobs", -1), Break("jobs", head["id"], wf, jid, kind, detail, head_seq)
            )
        report.heads.append((wf, jid, head_seq, head_hash))

    for name, row in rows:
        if name == "job_snapshots":
            report.snapshots += 1
            if _snapshot_hash(wf, jid, row["body"]) != row["sha256"]:
                flag(name, row, "edited", "the payload no longer hashes to the snapshot's sha256")
    _check_versions(wf, jid, rows, head, tasks, flag)
    return list(found.values())


def _walk(chained: list[tuple[str, dict[str, Any]]], flag: Any) -> None:
    by_hash = {row["row_sha256"]: (name, row) for name, row in chained}
    expected_prev, expected_seq = GENESIS, 1
    seen_seq: set[int] = set()
    for name, row in sorted(chained, key=lambda r: (r[1]["chain_seq"], r[1]["id"])):
        seq = row["chain_seq"]
        content_ok, link_ok = row["_content_ok"], row["prev_sha256"] == expected_prev
        if seq in seen_seq:
            flag(name, row, "inserted", f"a second row claims seq {seq} of the chain")
            continue
        seen_seq.add(seq)
        if not content_ok and link_ok:
            flag(name, row, "edited", "its content no longer matches its hash")
        elif content_ok and not link_ok:
            before = by_hash.get(row["prev_sha256"])
            if before is not None:
                other, other_row = before
                flag(
                    name,
                    row,
                    "reordered",
                    f"it was written after {other} row {other_row['id']} "
                    f"(seq {other_row['chain_seq']}), not where it now stands",
                )
            elif row["prev_sha256"] == GENESIS:
                flag(name, row, "reordered", "it was the chain's first row")
            else:
                missing = max(seq - expected_seq, 1)
                flag(
                    name,
                    row,
                    "deleted",
                    f"the row it was written after is gone ({missing} row(s) removed before it)",
                )
        elif not content_ok and not link_ok:
            flag(name, row, "inserted", "neither its content nor its link matches the chain")
        expected_prev, expected_seq = row["row_sha256"], seq + 1


def _check_id_order(chained: list[tuple[str, dict[str, Any]]], flag: Any) -> None:
    """Within a table, ids grow in write order: a swap of two rows' contents shows here."""
    per_table: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, row in chained:
        per_table[name].append(row)
    for name, table_rows in per_table.items():
        table_rows.sort(key=lambda r: r["id"])
        for before, after in pairwise(table_rows):
            if after["chain_seq"] < before["chain_seq"]:
                flag(
                    name,
                    after,
                    "reordered",
                    f"its id comes after row {before['id']} but it was written before it",
                )


def _snapshot_hash(wf: str, jid: str, body: str) -> str | None:
    try:
        return identify(body, workflow_id=wf, job_id=jid).sha256
    except PayloadError:
        return None


def _check_versions(
    wf: str,
    jid: str,
    rows: list[tuple[str, dict[str, Any]]],
    head: Any,
    tasks: dict[str, Any],
    flag: Any,
) -> None:
    """``valid_to`` is outside the hashes: it must be the next version's ``valid_from``."""
    job_versions = sorted((r for n, r in rows if n == "job_versions"), key=lambda r: r["version"])
    _check_closing("job_versions", job_versions, None, set(), flag)
    # a task that disappeared closes its version at once; the next one starts when it is back
    removals = {
        (r["task_id"], r["observed_at"])
        for n, r in rows
        if n == "job_changes" and r["field"] == "presence" and r["new_value"] == "removed"
    }
    per_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, row in rows:
        if name == "task_versions":
            per_task[row["task_id"]].append(row)
    for task_id, versions in per_task.items():
        versions.sort(key=lambda r: r["version"])
        task = tasks.get(task_id)
        removed_at = task["removed_at"] if task else None
        gaps = {at for t, at in removals if t == task_id}
        _check_closing("task_versions", versions, removed_at, gaps, flag)
        if task is not None and versions:
            _check_current("tasks", task, versions[-1], TASK_FIELDS, flag, wf, jid)
    if head is not None and job_versions:
        _check_current("jobs", head, job_versions[-1], JOB_FIELDS, flag, wf, jid)


def _check_closing(
    name: str,
    versions: list[dict[str, Any]],
    closed_at: datetime | None,
    gaps: set[datetime],
    flag: Any,
) -> None:
    for before, after in pairwise(versions):
        end = before["valid_to"]
        if end != after["valid_from"] and not (end in gaps and end <= after["valid_from"]):
            flag(
                name,
                before,
                "edited",
                f"valid_to {as_text(before['valid_to'])} is not where version "
                f"{after['version']} begins ({as_text(after['valid_from'])})",
            )
    if versions and versions[-1]["valid_to"] != closed_at:
        flag(
            name,
            versions[-1],
            "edited",
            f"the last version's valid_to is {as_text(versions[-1]['valid_to'])}, expected "
            f"{as_text(closed_at) or 'NULL'}",
        )


def _check_current(
    table: str,
    current: Any,
    last: dict[str, Any],
    fields: Iterable[str],
    flag: Any,
    wf: str,
    jid: str,
) -> None:
    # plain equality settles nearly every field; ``same`` (canonical JSON) only the rest
    differ = [f for f in fields if current[f] != last[f] and not same(current[f], last[f])]
    if differ:
        flag(
            table,
            {"id": current["id"], "chain_seq": None},
            "edited",
            f"the current row differs from its last version in {', '.join(differ)}",
        )


# --- anchors --------------------------------------------------------------------------------------


def digest_of(heads: Iterable[tuple[str, str, int, str]]) -> tuple[str, str]:
    """The canonical text of a set of chain heads and its SHA-256."""
    text = json.dumps(sorted(heads), ensure_ascii=True, separators=(",", ":"))
    return text, hashlib.sha256(text.encode("ascii")).hexdigest()


def take_anchor(session: Session, report: Report) -> str:
    """Store the heads a full verification saw; the digest is what the team keeps elsewhere."""
    text, digest = digest_of(report.heads)
    session.execute(
        insert(ANCHORS).values(
            created_at=datetime.now(UTC), jobs=len(report.heads), digest=digest, heads=text
        )
    )
    return digest


def check_anchor(session: Session, digest: str) -> tuple[int, list[Break]]:
    """Is everything the anchor saw still there? Returns (jobs checked, breaks)."""
    row = (
        session.execute(select(ANCHORS).where(ANCHORS.c.digest == digest.strip().lower()).limit(1))
        .mappings()
        .first()
    )
    if row is None:
        raise ArchiverError(
            f"no anchor with digest {digest} in this archive: it was never taken here, or its "
            "record was removed"
        )
    heads = [(str(w), str(j), int(n), str(h)) for w, j, n, h in json.loads(row["heads"])]
    _, recomputed = digest_of(heads)
    if recomputed != row["digest"]:
        return 0, [
            Break(
                "chain_anchors",
                row["id"],
                "*",
                "*",
                "edited",
                "the anchor's heads no longer hash to its digest",
            )
        ]
    breaks: list[Break] = []
    for chunk in _chunks(heads, CHUNK):
        wanted = {(wf, jid, seq): sha for wf, jid, seq, sha in chunk}
        found: dict[tuple[str, str, int], str] = {}
        for t in HISTORY.values():
            query = select(t.c.workflow_id, t.c.job_id, t.c.chain_seq, t.c.row_sha256).where(
                tuple_(t.c.workflow_id, t.c.job_id, t.c.chain_seq).in_(list(wanted))
            )
            for wf, jid, seq, sha in session.execute(query):
                found[(wf, jid, seq)] = sha
        for (wf, jid, seq), sha in wanted.items():
            if seq == 0:
                continue
            got = found.get((wf, jid, seq))
            if got != sha:
                breaks.append(
                    Break(
                        "history",
                        None,
                        wf,
                        jid,
                        "deleted" if got is None else "edited",
                        f"the anchor saw row seq {seq} with hash {sha[:12]}…, the archive "
                        + ("has no such row" if got is None else f"has {got[:12]}…"),
                        seq,
                    )
                )
    return len(heads), breaks


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
