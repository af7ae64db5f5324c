"""Archive payloads that are already on disk (or stdin): ``archiver ingest``.

Input forms, each yielding one or more payloads:
  * a file holding one JSON object (the API's response body, verbatim);
  * a file holding a JSON array of objects;
  * JSON lines: one object per line (blank lines ignored).
Any object may be an envelope ``{"fetched_at": "<ISO-8601>", "payload": {...}}`` to give its own
fetch time; otherwise ``--fetched-at`` applies, else the time of the ingest. A bad payload is
reported with its file and line and recorded in ``sync_errors``; the others are still archived.
Payloads go to the database in batches (``archiver.archive.batches.archive_batch``), each job whole
in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from archiver.archive import runs
from archiver.archive.batches import Entry, archive_batch, database_gone
from archiver.archive.jsonload import JsonError, array_elements, loads, member_text
from archiver.archive.results import ArchiveResult
from archiver.archive.values import parse_timestamp
from archiver.db import describe_error
from archiver.errors import ArchiverError, PayloadError
from archiver.statuses import DEFAULT_CLASSIFIER, StatusClassifier
from archiver.wording import counted

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
            f"{counted(self.total, 'payload')}: archived {self.archived} (new {self.new}, "
            f"changed {self.changed}), unchanged {self.unchanged}, stale {self.stale}, "
            f"failed {self.failed}; {counted(self.changes, 'change')}, "
            f"{counted(self.problems, 'problem')} recorded"
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
                yield _item_of(f"{name}:{number}", line, fetched_at)
        return
    is_array = isinstance(decoded.value, list)
    del decoded  # a big file must not stay decoded while its payloads are archived
    if is_array:
        elements = array_elements(text) or []
        for index, element in enumerate(elements):
            yield _item_of(f"{name}[{index}]", element, fetched_at)
        return
    yield _item_of(name, text, fetched_at)


def _looks_like_json_lines(text: str) -> bool:
    """JSON lines when the first non-blank line is a document of its own, not a broken file."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        loads(first)
    except JsonError:
        return False
    return True


def _item_of(source: str, text: str, fetched_at: datetime | None) -> Item:
    """A payload, or an envelope ``{"fetched_at", "payload"}`` around one.

    Its decoded copy is gone when this returns, before the item is archived."""
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
