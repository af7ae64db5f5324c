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
current tables must hold exactly the rows the history implies, with its values
(``archiver.audit.current``); a job that polling says was archived must have rows; closed period
statements must match their hash. Jobs are read a chunk at a time, and each job's history a
bounded number of rows at a time (``archiver.audit.walk``), so memory grows neither with the
archive nor with a job's history.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, insert, select, tuple_
from sqlalchemy.orm import Session

from archiver.audit.breaks import Break
from archiver.audit.current import check_current
from archiver.audit.periods import verify_statements
from archiver.audit.walk import HISTORY, JobWalk, Reader, of_jobs
from archiver.errors import ArchiverError
from archiver.models import ANCHORS, DEPS, JOBS, TASKS, TRACKED, VAL_ERRORS
from archiver.wording import counted

CHUNK = 500


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
        verdict = "no breaks" if self.ok else counted(len(self.breaks), "break")
        return (
            f"verified {counted(self.jobs, 'job')}: {counted(self.rows, 'history row')}, "
            f"{counted(self.snapshots, 'snapshot')}, "
            f"{counted(self.statements, 'period statement')} in {self.seconds:.1f} s: {verdict}"
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
    _vanished(session, where, jobs | orphans, report)
    return sorted(jobs | orphans)


def _vanished(session: Session, where: Any, seen: set[tuple[str, str]], report: Report) -> None:
    """A tracked job with a last status was archived by a poll (in the same transaction): if none
    of its rows is left, the whole job was deleted. Without its tracking row, only an anchor
    taken before can tell (docs/audit.md)."""
    query = where(
        TRACKED,
        select(TRACKED.c.workflow_id, TRACKED.c.job_id, TRACKED.c.last_status).where(
            TRACKED.c.last_status.is_not(None)
        ),
    )
    for wf, jid, status in session.execute(query):
        if (wf, jid) not in seen:
            report.breaks.append(
                Break(
                    "jobs",
                    None,
                    wf,
                    jid,
                    "deleted",
                    f"tracked_jobs says a poll archived it (last status {status}) but the job "
                    "has no rows at all",
                )
            )


def _verify_chunk(session: Session, keys: Sequence[tuple[str, str]], report: Report) -> None:
    """Walk each job's chain as it is read, then check its current rows against what the walk
    kept; the chunk's current rows are read once, its history a bounded number of rows at a
    time (``archiver.audit.walk``)."""
    heads = {
        (r["workflow_id"], r["job_id"]): r
        for r in session.execute(select(JOBS).where(of_jobs(JOBS, keys))).mappings()
    }
    tasks: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for task in session.execute(select(TASKS).where(of_jobs(TASKS, keys))).mappings():
        tasks[(task["workflow_id"], task["job_id"])][task["task_id"]] = task
    edges: dict[tuple[str, str], dict[str, dict[str, int]]] = defaultdict(dict)
    deps = select(
        DEPS.c.workflow_id, DEPS.c.job_id, DEPS.c.task_id, DEPS.c.depends_on_task_id, DEPS.c.id
    )
    for wf, jid, task_id, dep, row_id in session.execute(deps.where(of_jobs(DEPS, keys))):
        edges[(wf, jid)].setdefault(task_id, {})[dep] = row_id
    errors: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    for error in session.execute(select(VAL_ERRORS).where(of_jobs(VAL_ERRORS, keys))).mappings():
        errors[(error["workflow_id"], error["job_id"])][error["fingerprint"]] = error
    reader = Reader(session)
    for key, rows in reader.jobs(keys):
        walk = JobWalk(key, heads.get(key), tasks.get(key, {}), reader.lookup)
        for name, row in rows:
            walk.feed(name, row)
        head = walk.finish()
        check_current(walk, edges.get(key, {}), errors.get(key, {}), walk.rows > 0)
        report.jobs += 1
        report.rows += walk.rows
        report.snapshots += walk.snapshots
        if walk.head is not None:
            report.heads.append((*key, *head))
        report.breaks.extend(walk.flags.breaks())


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
