"""Archive a batch of payloads in one transaction: ``archive_batch`` (and ``archive_one``).

The write path of every command: ``archiver sync`` and ``archiver ingest`` hand their bodies here.
A batch recognizes bodies archived byte for byte, identifies the others, plans them all against
the archive as it is (``archiver.archive.plan``) and writes the plan with one statement per kind
(``archiver.archive.statements``), all in one transaction. A job is all or nothing: when the
batch as a whole is refused it runs again job by job, each in a transaction of its own, and a
conflict with a concurrent writer is retried by ``archiver.retry.DATABASE_CONFLICTS``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive.load import Received, touch_same_bodies
from archiver.archive.payload import Identified, identify
from archiver.archive.plan import plan
from archiver.archive.results import ArchiveResult, body_digest
from archiver.archive.statements import Writes
from archiver.db import is_retryable
from archiver.errors import PayloadError
from archiver.retry import DATABASE_CONFLICTS
from archiver.statuses import DEFAULT_CLASSIFIER, StatusClassifier

log = logging.getLogger("archiver.ingest")  # the name it had, which log filters may know


@dataclass(slots=True)
class Entry:
    """One payload for ``archive_batch``: body, fetch time, and ids when the caller knows them."""

    raw: str | bytes | dict[str, Any]
    fetched_at: datetime
    workflow_id: str | None = None
    job_id: str | None = None
    # worked out once, however often a batch is split or retried
    _digest: str | None = None
    _identified: Identified | PayloadError | None = None

    def digest(self) -> str | None:
        if self._digest is None and isinstance(self.raw, str | bytes):
            self._digest = body_digest(self.raw)
        return self._digest

    def identified(self, classifier: StatusClassifier) -> Identified | PayloadError:
        if self._identified is None:
            try:
                self._identified = identify(
                    self.raw,
                    workflow_id=self.workflow_id,
                    job_id=self.job_id,
                    classifier=classifier,
                )
            except PayloadError as exc:
                self._identified = exc
        return self._identified


Result = ArchiveResult | Exception
# per entry: None to archive it, or the error that keeps it out (a lost lease)
Admit = Callable[[Session, Sequence[Entry]], Sequence[Exception | None]]
BeforeCommit = Callable[[Session, Sequence[tuple[Entry, ArchiveResult]]], None]


def archive_batch(
    sessions: sessionmaker[Session],
    entries: Sequence[Entry],
    *,
    classifier: StatusClassifier = DEFAULT_CLASSIFIER,
    admit: Admit | None = None,
    before_commit: BeforeCommit | None = None,
) -> list[Result]:
    """Archive payloads in one transaction; each entry's result, or the error that refused it.

    Many jobs share the transaction (and each statement) because per-job statements and commits
    were most of an archive's cost. A job is still all or nothing: a payload refused while being
    read writes nothing and its neighbours go on; if the batch itself fails (a row the database
    refuses, a defect) it is rolled back and every job is archived again in a transaction of its
    own, so one bad job costs its neighbours only time. A conflict with a concurrent writer (a
    deadlock between two batches that share jobs) runs the whole batch once more first.

    Raises only when the database is gone before anything of the batch was committed. If it goes
    while the jobs are being archived one by one, the jobs committed so far keep their results
    and every later entry gets the error (``database_gone`` tells it apart): report those, then
    stop.
    """
    if len(entries) > 1:
        for attempt in (1, 2):
            try:
                with sessions.begin() as session:
                    return _archive_entries(session, entries, classifier, admit, before_commit)
            except Exception as exc:
                if database_gone(exc):
                    raise
                if attempt == 1 and isinstance(exc, DBAPIError) and is_retryable(exc):
                    log.info("a batch of %d jobs met a concurrent writer; again", len(entries))
                    time.sleep(DATABASE_CONFLICTS.delay(attempt))
                    continue
                log.info("a batch of %d jobs failed (%s); one by one", len(entries), exc)
                break
    results: list[Result] = []
    for entry in entries:
        if results and database_gone(results[-1]):
            results.append(results[-1])
            continue
        try:
            results.append(_archive_alone(sessions, entry, classifier, admit, before_commit))
        except DBAPIError as exc:  # gone (_archive_alone raises nothing else)
            if not results:
                raise  # nothing of this batch was written: the caller stops at once
            results.append(exc)  # the jobs before it keep their results
    return results


def database_gone(exc: object) -> bool:
    """The database cannot be reached (or dropped the session): stop, rather than go on."""
    if not isinstance(exc, DBAPIError) or is_retryable(exc):
        return False
    return isinstance(exc, OperationalError) or bool(exc.connection_invalidated)


def _archive_alone(
    sessions: sessionmaker[Session],
    entry: Entry,
    classifier: StatusClassifier,
    admit: Admit | None,
    before_commit: BeforeCommit | None,
) -> Result:
    """One job in its own transaction, run again from the start after a conflict.

    A conflict with a concurrent writer (another worker's first archive of the same job, a
    deadlock, a lock timeout) rolls the job back; run again, it sees the other writer's state.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            with sessions.begin() as session:
                return _archive_entries(session, [entry], classifier, admit, before_commit)[0]
        except DBAPIError as exc:
            if DATABASE_CONFLICTS.allows(attempt) and is_retryable(exc):
                log.info("retrying a job after a conflict with a concurrent writer")
                time.sleep(DATABASE_CONFLICTS.delay(attempt - 1))
                continue
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise
            return exc
        except Exception as exc:
            return exc


def _archive_entries(
    session: Session,
    entries: Sequence[Entry],
    classifier: StatusClassifier,
    admit: Admit | None,
    before_commit: BeforeCommit | None,
) -> list[Result]:
    results: list[Result | None] = [None] * len(entries)
    if admit is not None:
        for i, refused in enumerate(admit(session, entries)):
            results[i] = refused
    live = [i for i, r in enumerate(results) if r is None]
    _archive_in_order(session, entries, live, results, classifier)
    if before_commit is not None:
        done = [
            (e, r) for e, r in zip(entries, results, strict=True) if isinstance(r, ArchiveResult)
        ]
        before_commit(session, done)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def _archive_in_order(
    session: Session,
    entries: Sequence[Entry],
    live: list[int],
    results: list[Result | None],
    classifier: StatusClassifier,
) -> None:
    """Plan ``live`` entries against the archive as it is, then write them all at once.

    Bodies byte-identical to an archived one are recognized without decoding; the others are
    identified. A job may appear only once per write: from its second payload on, the rest goes
    into a later write (same transaction) that sees the first, so payloads apply in input order.
    """
    writes = Writes()
    bodies = [(i, entries[i].digest()) for i in live]
    received = []
    for i, digest in bodies:
        raw = entries[i].raw
        if digest is not None and isinstance(raw, str | bytes):
            received.append(
                Received(
                    digest, entries[i].fetched_at, raw, entries[i].workflow_id, entries[i].job_id
                )
            )
    matched = iter(touch_same_bodies(session, received, writes))
    keys: list[tuple[str, str] | None] = []
    to_plan: list[tuple[int, Identified]] = []
    for i, digest in bodies:
        fast = next(matched) if digest is not None else None
        if fast is not None:
            results[i] = fast
            keys.append((fast.workflow_id, fast.job_id))
            continue
        ident = entries[i].identified(classifier)
        if isinstance(ident, PayloadError):
            results[i] = ident
            keys.append(None)
            continue
        to_plan.append((i, ident))
        keys.append((ident.workflow_id, ident.job_id))
    seen: set[tuple[str, str]] = set()
    for position, key in enumerate(keys):
        if key is None:
            continue
        if key in seen:  # the same job again: write what comes before it first
            for i in live:
                results[i] = None
            _archive_in_order(session, entries, live[:position], results, classifier)
            _archive_in_order(session, entries, live[position:], results, classifier)
            return
        seen.add(key)
    planned = plan(session, [(ident, entries[i].fetched_at) for i, ident in to_plan], writes)
    for (i, _), outcome in zip(to_plan, planned, strict=True):
        results[i] = outcome
    writes.execute(session)


def archive_one(
    sessions: sessionmaker[Session],
    raw: str | bytes | dict[str, Any],
    fetched_at: datetime,
    *,
    workflow_id: str | None = None,
    job_id: str | None = None,
    classifier: StatusClassifier = DEFAULT_CLASSIFIER,
    before_commit: Callable[[Session, ArchiveResult], None] | None = None,
) -> ArchiveResult:
    """Parse and archive one payload in its own transaction; a refused payload raises."""

    def each(session: Session, done: Sequence[tuple[Entry, ArchiveResult]]) -> None:
        assert before_commit is not None
        for _, result in done:
            before_commit(session, result)

    entry = Entry(raw, fetched_at, workflow_id, job_id)
    result = archive_batch(
        sessions, [entry], classifier=classifier, before_commit=each if before_commit else None
    )[0]
    if isinstance(result, Exception):
        raise result
    return result
