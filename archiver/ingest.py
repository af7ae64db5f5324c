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

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from archiver import runs
from archiver.db import describe_error, is_retryable
from archiver.errors import ArchiverError, PayloadError
from archiver.jsonload import JsonError, array_elements, loads, member_text
from archiver.payload import identify
from archiver.statuses import DEFAULT_CLASSIFIER, StatusClassifier
from archiver.store import ArchiveResult, archive, body_digest, touch_if_same_body
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
    if workflow_id is not None and job_id is not None and isinstance(raw, str | bytes):
        digest = body_digest(raw)

        def same_body(session: Session) -> ArchiveResult | None:
            return touch_if_same_body(session, workflow_id, job_id, digest, fetched_at)

        result = _in_transaction(sessions, same_body, on_begin, before_commit, job_id)
        if result is not None:
            return result
    parsed = identify(raw, workflow_id=workflow_id, job_id=job_id, classifier=classifier)
    result = _in_transaction(
        sessions,
        lambda session: archive(session, parsed, fetched_at),
        on_begin,
        before_commit,
        parsed.job_id,
    )
    assert result is not None
    return result


def _in_transaction(
    sessions: sessionmaker[Session],
    work: Callable[[Session], ArchiveResult | None],
    on_begin: Callable[[Session], None] | None,
    before_commit: Callable[[Session, ArchiveResult], None] | None,
    job_id: str,
) -> ArchiveResult | None:
    """Run ``work`` in one transaction, again from the start after a conflict; None: no-op."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            with sessions.begin() as session:
                if on_begin is not None:
                    on_begin(session)
                result = work(session)
                if result is not None and before_commit is not None:
                    before_commit(session, result)
                return result
        except DBAPIError as exc:
            if attempt == CONFLICT_ATTEMPTS or not is_retryable(exc):
                raise
            log.info("retrying job %s after a conflict with a concurrent writer", job_id)
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
        ids: tuple[str | None, str | None] = (None, None)
        if error is None:
            assert item.raw is not None
            try:
                result = archive_one(
                    sessions, item.raw, item.fetched_at or now(), classifier=classifier
                )
            except PayloadError as exc:
                error, ids = str(exc), (exc.workflow_id, exc.job_id)
            except ArchiverError as exc:
                error = str(exc)
            except OperationalError:
                raise  # the database is gone: stop here, what was archived stays archived
            except DBAPIError as exc:
                error = f"database refused the payload: {describe_error(exc)}"
            except Exception as exc:  # a defect or an unforeseen payload: isolate it
                log.debug("unexpected failure for %s", item.source, exc_info=True)
                error = f"unexpected {type(exc).__name__}: {str(exc)[:300]}"
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
