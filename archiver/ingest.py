"""Archive payloads that are already on disk (or stdin): ``archiver ingest``.

Input forms, each yielding one or more payloads:
  * a file holding one JSON object (the API's response body, verbatim);
  * a file holding a JSON array of objects;
  * JSON lines: one object per line (blank lines ignored).
Any object may be an envelope ``{"fetched_at": "<ISO-8601>", "payload": {...}}`` to give its own
fetch time; otherwise ``--fetched-at`` applies, else the time of the ingest. A bad payload is
reported with its file and line and recorded in ``sync_errors``; the others are still archived.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from archiver import runs
from archiver.db import is_retryable
from archiver.errors import ArchiverError, PayloadError
from archiver.jsonload import JsonError, loads
from archiver.payload import parse_payload
from archiver.statuses import DEFAULT_CLASSIFIER, StatusClassifier
from archiver.store import ArchiveResult, archive
from archiver.values import parse_timestamp

log = logging.getLogger("archiver.ingest")
CONFLICT_ATTEMPTS = 4


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


def _unwrap(obj: Any, default_time: datetime | None) -> tuple[Any, datetime | None]:
    """An envelope gives its own fetch time; anything else is the payload itself."""
    if isinstance(obj, dict) and set(obj) == {"fetched_at", "payload"}:
        when = parse_timestamp(obj["fetched_at"])
        if when.value is None:
            raise PayloadError(f"envelope fetched_at {obj['fetched_at']!r} is not a timestamp")
        return obj["payload"], when.value
    return obj, default_time


def read_items(name: str, text: bytes, fetched_at: datetime | None) -> Iterator[Item]:
    """Split one input into payload items, keeping verbatim text where there is one."""
    try:
        decoded = loads(text)
    except JsonError as whole_error:
        lines = [ln for ln in text.splitlines()]
        if sum(1 for ln in lines if ln.strip()) < 2:
            yield Item(name, None, error=str(whole_error))
            return
        for number, line in enumerate(lines, 1):
            if line.strip():
                yield from _item(f"{name}:{number}", line, fetched_at)
        return
    if isinstance(decoded.value, list):
        for index, obj in enumerate(decoded.value):
            yield from _object_item(f"{name}[{index}]", obj, fetched_at)
        return
    yield from _item(name, text, fetched_at)


def _item(source: str, text: bytes, fetched_at: datetime | None) -> Iterator[Item]:
    try:
        decoded = loads(text)
    except JsonError as exc:
        yield Item(source, None, error=str(exc))
        return
    if isinstance(decoded.value, dict) and set(decoded.value) == {"fetched_at", "payload"}:
        yield from _object_item(source, decoded.value, fetched_at)
    else:
        yield Item(source, text, fetched_at)  # verbatim: keeps duplicate keys visible


def _object_item(source: str, obj: Any, fetched_at: datetime | None) -> Iterator[Item]:
    try:
        payload, when = _unwrap(obj, fetched_at)
    except PayloadError as exc:
        yield Item(source, None, error=str(exc))
        return
    if not isinstance(payload, dict):
        yield Item(source, None, error=f"expected a JSON object, got {type(payload).__name__}")
        return
    yield Item(source, payload, when)


def archive_one(
    sessions: sessionmaker[Session],
    raw: str | bytes | dict[str, Any],
    fetched_at: datetime,
    *,
    workflow_id: str | None = None,
    job_id: str | None = None,
    classifier: StatusClassifier = DEFAULT_CLASSIFIER,
    on_begin: Callable[[Session], None] | None = None,
    before_commit: Callable[[Session, ArchiveResult], None] | None = None,
) -> ArchiveResult:
    """Parse and archive one payload in its own transaction.

    A conflict with a concurrent writer (another worker's first archive of the same job, a
    deadlock, a lock timeout) rolls the whole job back; it is then run again from the start,
    a few times, and sees the other writer's state.
    """
    parsed = parse_payload(raw, workflow_id=workflow_id, job_id=job_id, classifier=classifier)
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            with sessions.begin() as session:
                if on_begin is not None:
                    on_begin(session)
                result = archive(session, parsed, fetched_at)
                if before_commit is not None:
                    before_commit(session, result)
                return result
        except DBAPIError as exc:
            if attempt == CONFLICT_ATTEMPTS or not is_retryable(exc):
                raise
            log.info(
                "retrying %s/%s after a conflict with a concurrent writer",
                parsed.workflow_id,
                parsed.job_id,
            )
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")


def ingest(
    sessions: sessionmaker[Session],
    items: Iterable[Item],
    *,
    classifier: StatusClassifier = DEFAULT_CLASSIFIER,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_result: Callable[[Item, ArchiveResult | None, str | None], None] | None = None,
) -> Summary:
    """Archive every item, each in its own transaction; failures are recorded, not fatal."""
    summary = Summary()
    with sessions.begin() as session:
        run_id = runs.start_run(session, "ingest", now())
    for item in items:
        result, error = None, item.error
        if error is None:
            assert item.raw is not None
            try:
                result = archive_one(
                    sessions, item.raw, item.fetched_at or now(), classifier=classifier
                )
            except ArchiverError as exc:
                error = str(exc)
            except DBAPIError as exc:
                error = f"database refused the payload: {_db_reason(exc)}"
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
                    workflow_id=_text_id(item.raw, "workflow_id"),
                    job_id=_text_id(item.raw, "id"),
                    when=now(),
                    reason="invalid_payload",
                    message=message,
                )
        if on_result is not None:
            on_result(item, result, error)
    with sessions.begin() as session:
        runs.finish_run(session, run_id, summary.counts(), now())
    return summary


def _db_reason(exc: DBAPIError) -> str:
    lines = str(exc.orig).strip().splitlines()
    return lines[0][:300] if lines else type(exc.orig).__name__


def _text_id(raw: Any, key: str) -> str | None:
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and value else None
