"""Rebuild an archive from its raw evidence: replay ``job_snapshots`` into an empty database.

Every distinct payload was kept verbatim, each job's in the order it arrived, so replaying the
snapshots in id order (which follows each job's arrival order; jobs archived in one batch may
interleave) through the same ``plan.archive`` reproduces the current tables, versions,
change log and even the hash chains. That makes a rebuild two things: a proof that the derived
tables are what the evidence says (``compare`` shows any difference), and the upgrade path after
a parser fix (rebuild into a new database, compare with ``--dry-run``, then switch the URL).

Each snapshot's recorded ``applied`` is replayed, not decided again: ingest judged staleness by
fetch time against the last sighting of the archived state, and sightings of an unchanged payload
write no snapshot, so a replay would see fewer of them and apply what ingest kept aside. It never
sees more, so the recorded decision is one the replay could only have made less strictly.
Everything else a change depends on, the replay sees too: a change is dated by its fetch time
or, if later, by when the state it follows began (``plan._plan_changed``).

Not reproducible from snapshots, and left out of the comparison: ``last_seen_at`` of jobs, tasks
and validation errors, which re-polls of an unchanged payload move without writing a snapshot.
Copied as they are, because they are not derived from payloads: tracked jobs, sync runs and
errors, closed period statements and their log, chain anchors.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, func, insert, select, text, tuple_
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from archiver import db
from archiver.archive.changelog import as_text
from archiver.archive.payload import identify
from archiver.archive.plan import archive
from archiver.errors import ArchiverError
from archiver.models import (
    ANCHORS,
    CHANGES,
    DEPS,
    ERRORS,
    JOB_VERSIONS,
    JOBS,
    PERIOD_EVENTS,
    PROBLEMS,
    RUNS,
    SNAPSHOTS,
    STATEMENT_LINES,
    STATEMENTS,
    TASK_VERSIONS,
    TASKS,
    TRACKED,
    VAL_ERRORS,
)
from archiver.statuses import DEFAULT_CLASSIFIER, StatusClassifier

BATCH = 200
CHUNK = 300  # jobs compared at a time
# derived from the snapshots: compared after a rebuild
DERIVED: tuple[Table, ...] = (
    JOBS,
    TASKS,
    DEPS,
    VAL_ERRORS,
    JOB_VERSIONS,
    TASK_VERSIONS,
    CHANGES,
    PROBLEMS,
    SNAPSHOTS,
)
# last_seen_at moves, and body_sha256 follows the bytes, on polls that write no snapshot; the
# digests of what tasks and validation errors were read from are a cache of the reading, filled
# as jobs change, so an archive from before they existed (or an older release) has others
NOT_COMPARED = frozenset({"id", "last_seen_at", "body_sha256", "state_sha256", "val_errors_sha256"})
# not derived from payloads: copied, ids kept (foreign keys point at them), parents first
COPIED: tuple[Table, ...] = (RUNS, ERRORS, STATEMENTS, STATEMENT_LINES, PERIOD_EVENTS, ANCHORS)


@dataclass
class TableDiff:
    table: str
    only_before: int
    only_after: int
    jobs: set[tuple[str, str]] = field(default_factory=set)


@dataclass
class RebuildReport:
    snapshots: int = 0
    jobs: int = 0
    rejected: list[str] = field(default_factory=list)
    seconds: float = 0.0
    diffs: list[TableDiff] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.diffs

    def changed_jobs(self) -> set[tuple[str, str]]:
        return set().union(*(d.jobs for d in self.diffs)) if self.diffs else set()


def rebuild(
    source: sessionmaker[Session],
    target_url: str,
    *,
    classifier: StatusClassifier = DEFAULT_CLASSIFIER,
) -> RebuildReport:
    """Replay the source's snapshots into the empty database at ``target_url``, then compare."""
    started = time.perf_counter()
    db.upgrade(target_url)
    engine = db.make_engine(target_url)
    try:
        target = db.session_factory(engine)
        with target() as session:
            if session.execute(select(func.count()).select_from(JOBS)).scalar_one():
                raise ArchiverError(
                    "the target database already holds jobs; rebuild only into an empty one"
                )
        report = RebuildReport()
        _replay(source, target, classifier, report)
        _copy_bookkeeping(source, target, engine)
        report.diffs = compare(source, target)
        with target() as session:
            report.jobs = session.execute(select(func.count()).select_from(JOBS)).scalar_one()
    finally:
        engine.dispose()
    report.seconds = time.perf_counter() - started
    return report


def dry_run(
    source: sessionmaker[Session],
    *,
    classifier: StatusClassifier = DEFAULT_CLASSIFIER,
) -> RebuildReport:
    """Rebuild into a scratch SQLite file and report what would differ; the source is untouched."""
    with tempfile.TemporaryDirectory(prefix="archiver-rebuild-") as folder:
        url = f"sqlite:///{Path(folder) / 'rebuild.db'}"
        return rebuild(source, url, classifier=classifier)


def _snapshots(source: sessionmaker[Session]) -> Iterator[Any]:
    """All snapshots in arrival order, a page at a time (keyset), bodies included."""
    last = 0
    while True:
        with source() as session:
            page = (
                session.execute(
                    select(SNAPSHOTS)
                    .where(SNAPSHOTS.c.id > last)
                    .order_by(SNAPSHOTS.c.id)
                    .limit(BATCH)
                )
                .mappings()
                .all()
            )
        if not page:
            return
        yield from page
        last = page[-1]["id"]


def _replay(
    source: sessionmaker[Session],
    target: sessionmaker[Session],
    classifier: StatusClassifier,
    report: RebuildReport,
) -> None:
    session = target()
    try:
        for snapshot in _snapshots(source):
            wf, jid = snapshot["workflow_id"], snapshot["job_id"]
            try:
                payload = identify(
                    snapshot["body"], workflow_id=wf, job_id=jid, classifier=classifier
                )
                with session.begin_nested():
                    archive(session, payload, snapshot["fetched_at"], applied=snapshot["applied"])
            except ArchiverError as exc:
                report.rejected.append(f"snapshot {snapshot['id']} of {wf}/{jid}: {exc}")
            report.snapshots += 1
            if report.snapshots % BATCH == 0:
                session.commit()
        session.commit()
    finally:
        session.close()


def _copy_bookkeeping(
    source: sessionmaker[Session], target: sessionmaker[Session], engine: Engine
) -> None:
    with source() as src, target() as dst:
        tracked = [dict(r) for r in src.execute(select(TRACKED)).mappings()]
        for row in tracked:
            row.pop("id")
            row.update(lease_owner=None, lease_expires_at=None)
        if tracked:
            dst.execute(insert(TRACKED), tracked)
        for table in COPIED:
            rows = [dict(r) for r in src.execute(select(table).order_by(table.c.id)).mappings()]
            if rows:
                dst.execute(insert(table), rows)
                if engine.dialect.name == "postgresql":  # explicit ids leave the sequence behind
                    name = table.name  # one of ours, not input
                    dst.execute(
                        text(
                            f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "  # noqa: S608
                            f"(SELECT MAX(id) FROM {name}))"
                        )
                    )
        dst.commit()


def _job_keys(session: Session) -> set[tuple[str, str]]:
    keys: set[tuple[str, str]] = set()
    for table in (JOBS, SNAPSHOTS):
        query = select(table.c.workflow_id, table.c.job_id).distinct()
        keys.update((wf, jid) for wf, jid in session.execute(query))
    return keys


def _fingerprints(
    session: Session, table: Table, keys: Sequence[tuple[str, str]]
) -> Counter[tuple[Any, ...]]:
    columns = [c for c in table.c if c.name not in NOT_COMPARED]
    query = select(*columns).where(tuple_(table.c.workflow_id, table.c.job_id).in_(keys))
    return Counter(tuple(as_text(v) for v in row) for row in session.execute(query))


def compare(before: sessionmaker[Session], after: sessionmaker[Session]) -> list[TableDiff]:
    """Rows (ids and ``last_seen_at`` aside) present on one side only, per derived table.

    Compared a few hundred jobs at a time, so memory does not grow with the archive.
    """
    diffs = {t.name: TableDiff(t.name, 0, 0) for t in DERIVED}
    with before() as a, after() as b:
        keys = sorted(_job_keys(a) | _job_keys(b))
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            for table in DERIVED:
                old, new = _fingerprints(a, table, chunk), _fingerprints(b, table, chunk)
                gone, added = old - new, new - old
                if gone or added:
                    names = [c.name for c in table.c if c.name not in NOT_COMPARED]
                    wf, jid = names.index("workflow_id"), names.index("job_id")
                    diff = diffs[table.name]
                    diff.only_before += sum(gone.values())
                    diff.only_after += sum(added.values())
                    diff.jobs.update((r[wf], r[jid]) for r in (*gone, *added))
    return [d for d in diffs.values() if d.only_before or d.only_after]
