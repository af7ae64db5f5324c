"""Archive payloads that are already on disk (or stdin): ``archiver ingest``.

Input forms, each yielding one or more payloads:
  * a file holding one JSON object (the API's response body, verbatim);
  * a file holding a JSON array of objects;
  * JSON lines: one object per line (blank lines ignored).
Any object may be an envelope ``{"fetched_at": "<ISO-8601>", "payload": {...}}`` to give its own
fetch time; otherwise ``--fetched-at`` applies, else the time of the ingest. A bad payload is
reported with its file and line and recorded in ``sync_errors``; the others are still archived.
Payloads go to the database in batches (``archive_batch``), each job whole in one transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive import runs
from archiver.archive.jsonload import JsonError, array_elements, loads, member_text
from archiver.archive.payload import Identified, identify
from archiver.archive.store import (
    ArchiveResult,
    Received,
    Writes,
    body_digest,
    plan,
    touch_same_bodies,
)
from archiver.archive.values import parse_timestamp
from archiver.db import describe_error, is_retryable
from archiver.errors import ArchiverError, PayloadError
from archiver.retry import DATABASE_CONFLICTS
from archiver.statuses import DEFAULT_CLASSIFIER, StatusClassifier

log = logging.getLogger("archiver.ingest")


@dataclass(frozen=True)
class Item:
    """One payload to archive: its text (or decoded object), fetch time and where it came from."""

    source: str
    raw: str | bytes | dict[str, Any] | None
    fetched_at: datetime | None = None
    error: str | None = None  # set when the input could not even be split into payloads


@dataclass
class Summary:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    stale: int = 0
    failed: int = 0
    changes: int = 0
    problems: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def archived(self) -> int:
        return self.new + self.changed

    @property
    def total(self) -> int:
        return self.new + self.changed + self.unchanged + self.stale + self.failed

    def add(self, result: ArchiveResult) -> None:
        setattr(self, result.outcome, getattr(self, result.outcome) + 1)
        self.changes += result.changes
        self.problems += result.problems

    def counts(self) -> dict[str, int]:
        return {
            "jobs_total": self.total,
            "archived": self.archived,
            "changed": self.changed,
            "unchanged": self.unchanged,
            "stale": self.stale,
            "failed": self.failed,
            "problems": self.problems,
        }

    def line(self) -> str:
        return (
            f"{self.total} payloads: archived {self.archived} (new {self.new}, "
            f"changed {self.changed}), unchanged {self.unchanged}, stale {self.stale}, "
            f"failed {self.failed}; {self.changes} changes, {self.problems} problems recorded"
        )


ENVELOPE_KEYS = frozenset({"fetched_at", "payload"})


def read_items(name: str, data: bytes, fetched_at: datetime | None) -> Iterator[Item]:
    """Split one input into payload items, each keeping its verbatim text."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        yield Item(name, None, error=f"not UTF-8 (byte {exc.start})")
        return
    try:
        decoded = loads(text)
    except JsonError as whole_error:
        if not _looks_like_json_lines(text):
            yield Item(name, None, error=str(whole_error))
            return
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield from _payload_item(f"{name}:{number}", line, fetched_at)
        return
    is_array = isinstance(decoded.value, list)
    del decoded  # a big file must not stay decoded while its payloads are archived
    if is_array:
        elements = array_elements(text) or []
        for index, element in enumerate(elements):
            yield from _payload_item(f"{name}[{index}]", element, fetched_at)
        return
    yield from _payload_item(name, text, fetched_at)


def _looks_like_json_lines(text: str) -> bool:
    """JSON lines when the first non-blank line is a document of its own, not a broken file."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        loads(first)
    except JsonError:
        return False
    return True


def _payload_item(source: str, text: str, fetched_at: datetime | None) -> Iterator[Item]:
    """A payload, or an envelope ``{"fetched_at", "payload"}`` around one."""
    yield _item_of(source, text, fetched_at)  # the decoded copy is gone before it is archived


def _item_of(source: str, text: str, fetched_at: datetime | None) -> Item:
    try:
        value = loads(text).value
    except JsonError as exc:
        return Item(source, None, error=f"payload rejected: {exc}")
    if not (isinstance(value, dict) and set(value) == ENVELOPE_KEYS):
        return Item(source, text, fetched_at)
    when = parse_timestamp(value["fetched_at"])
    if when.value is None:
        shown = repr(value["fetched_at"])[:80]
        return Item(source, None, error=f"envelope fetched_at {shown} is not a timestamp")
    inner = member_text(text, "payload")
    if inner is None or not isinstance(value["payload"], dict):
        return Item(source, None, error="envelope payload is not a JSON object")
    return Item(source, inner, when.value)


# a batch: up to this many payloads, or this many bytes of them, in one transaction
BATCH_JOBS = 200
BATCH_BYTES = 32 * 2**20


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


def batches(
    items: Iterable[Item], jobs: int = BATCH_JOBS, size: int = BATCH_BYTES
) -> Iterator[list[Item]]:
    """Items in groups of at most ``jobs`` payloads or about ``size`` bytes of them."""
    batch: list[Item] = []
    held = 0
    for item in items:
        batch.append(item)
        held += len(item.raw) if isinstance(item.raw, str | bytes) else 0
        if len(batch) >= jobs or held >= size:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


def ingest(
    sessions: sessionmaker[Session],
    items: Iterable[Item],
    *,
    classifier: StatusClassifier = DEFAULT_CLASSIFIER,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_result: Callable[[Item, ArchiveResult | None, str | None], None] | None = None,
) -> Summary:
    """Archive every item (in batches, each job whole in one transaction); failures are recorded,
    not fatal, unless the database goes away."""
    summary = Summary()
    with sessions.begin() as session:
        run_id = runs.start_run(session, "ingest", now())
    for batch in batches(items):
        readable = [item for item in batch if item.error is None]
        entries = [Entry(i.raw, i.fetched_at or now()) for i in readable]  # type: ignore[arg-type]
        outcomes = iter(archive_batch(sessions, entries, classifier=classifier))
        for item in batch:
            outcome = next(outcomes) if item.error is None else None
            if isinstance(outcome, DBAPIError) and database_gone(outcome):
                # the database went away: what was committed is reported above; stop here
                raise outcome
            result = outcome if isinstance(outcome, ArchiveResult) else None
            error: str | None = item.error
            ids: tuple[str | None, str | None] = (None, None)
            if isinstance(outcome, Exception):
                error, ids = _describe(outcome, item.source)
            if result is not None:
                summary.add(result)
            else:
                summary.failed += 1
                message = f"{item.source}: {error}"
                summary.errors.append(message)
                with sessions.begin() as session:
                    runs.record_error(
                        session,
                        run_id,
                        workflow_id=ids[0],
                        job_id=ids[1],
                        when=now(),
                        reason="invalid_payload",
                        message=message,
                    )
            if on_result is not None:
                on_result(item, result, error)
    with sessions.begin() as session:
        runs.finish_run(session, run_id, summary.counts(), now())
    return summary


def _describe(exc: Exception, source: str) -> tuple[str, tuple[str | None, str | None]]:
    """What the user reads about a refused payload, and the job it names if it names one."""
    if isinstance(exc, PayloadError):
        return str(exc), (exc.workflow_id, exc.job_id)
    if isinstance(exc, ArchiverError):
        return str(exc), (None, None)
    if isinstance(exc, DBAPIError):
        return f"database refused the payload: {describe_error(exc)}", (None, None)
    log.debug("unexpected failure for %s", source, exc_info=exc)
    return f"unexpected {type(exc).__name__}: {str(exc)[:300]}", (None, None)
