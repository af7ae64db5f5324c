"""Which jobs are tracked, which are due, and the polling policy that moves them along.

States: ``active`` (polled every interval), ``settling`` (terminal, re-checked slowly through the
settle window because cost can still change), ``settled`` (no longer polled), ``paused`` (the API
kept answering 403/404 for it), ``untracked`` (the user stopped it; its archive is kept).
Tracking a job again resumes it from any state.
"""

from __future__ import annotations

import csv
import io
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, and_, bindparam, func, or_, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from archiver.config import Settings
from archiver.db import upsert
from archiver.errors import ApiError, ForbiddenError, NotFoundError
from archiver.ids import id_problem, shown_id
from archiver.models import TRACKED
from archiver.retry import RetryPolicy

POLLED_STATES = ("active", "settling")
CHUNK = 500  # rows per statement: well under every database's bound-parameter limit


# Words a header names a column with (compared lower-cased, spaces and hyphens read as "_"):
# a first line holding one of them, in any order but ``workflow_id,job_id``, is a header the
# file's rows would be misread under, so the file is refused rather than guessed at.
COLUMN_WORDS = frozenset(
    {"workflow_id", "workflowid", "workflow", "job_id", "jobid", "job", "id", "uuid"}
    | {"name", "status", "state"}
)
EXPECTED_HEADER = ["workflow_id", "job_id"]
_COLUMN_NAME = re.compile(r"[a-z]+(?:_[a-z]+)+")  # several words: job_name, created at


@dataclass
class TrackFileResult:
    pairs: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    refused: str | None = None  # why the whole file was refused (a misleading header)


def read_track_file(text: str) -> TrackFileResult:
    """``workflow_id,job_id`` rows, with or without that header; bad rows named by line number.

    The first line with content is a header when ``looks_like_header`` says so: in
    the expected order it is skipped, in any other it refuses the file (no pair is returned).
    """
    result = TrackFileResult()
    seen: set[tuple[str, str]] = set()
    reader = csv.reader(io.StringIO(text))
    last = 0
    first = True
    for row in reader:
        # the line the row starts on: a quoted cell may span lines (a newline inside an id)
        number, last = last + 1, reader.line_num
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if first:
            first = False
            if [_column_word(c) for c in cells if c] == EXPECTED_HEADER:
                continue
            if looks_like_header(cells):
                shown = ",".join(cells)
                return TrackFileResult(
                    refused=f"line {number} looks like a header ({shown!r}), not "
                    "workflow_id,job_id: nothing tracked; give the columns in that order, "
                    "under that header (which also lets a first row of ids read as data)"
                )
        if len(cells) != 2:
            result.errors.append(
                f"line {number}: expected workflow_id,job_id, got {len(cells)} fields"
            )
            continue
        problem = validate_ids(cells[0], cells[1])
        if problem:
            result.errors.append(f"line {number}: {problem}")
            continue
        pair = (cells[0], cells[1])
        if pair not in seen:
            seen.add(pair)
            result.pairs.append(pair)
    return result


def _column_word(cell: str) -> str:
    """A cell as a column name compares: lower-cased, spaces and hyphens read as ``_``."""
    return re.sub(r"[\s-]+", "_", cell.strip().lower())


def looks_like_header(cells: Sequence[str]) -> bool:
    """Whether a first line names columns rather than a job: one of its cells is a known column
    name (``COLUMN_WORDS``: ``Job ID`` and ``job-id`` count as ``job_id``), or a name of several
    letter-only words joined by ``_`` or spaces (``job_name``, ``Created At``). Ids are machine
    made (uuids, ``wf-3f2a``): they hold digits or hyphens, so a real first row is not taken
    for a header."""
    for cell in cells:
        spaced = re.sub(r"\s+", "_", cell.strip().lower())
        if _column_word(cell) in COLUMN_WORDS or _COLUMN_NAME.fullmatch(spaced):
            return True
    return False


def validate_ids(workflow_id: str, job_id: str) -> str | None:
    """Why this pair cannot be tracked (the id rule of ``archiver.ids``), or None."""
    for name, value in (("workflow_id", workflow_id), ("job_id", job_id)):
        if not value.strip():
            return f"empty {name}"
        problem = id_problem(value)
        if problem:
            return f"{name} {shown_id(value)} {problem}"
    return None


def _states(session: Session, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    key = tuple_(TRACKED.c.workflow_id, TRACKED.c.job_id)
    for start in range(0, len(pairs), CHUNK):
        rows = session.execute(
            select(TRACKED.c.workflow_id, TRACKED.c.job_id, TRACKED.c.state).where(
                key.in_(pairs[start : start + CHUNK])
            )
        )
        found.update({(r.workflow_id, r.job_id): r.state for r in rows})
    return found


def track(session: Session, pairs: Sequence[tuple[str, str]], now: datetime) -> int:
    """Start (or resume) tracking; each is due at once. Returns how many were new or resumed.

    Jobs already being polled keep their schedule, so re-running a track file is harmless.
    """
    pairs = unique(pairs)
    states = _states(session, pairs)
    changed = [p for p in pairs if states.get(p) not in POLLED_STATES]
    rows = [
        {
            "workflow_id": w,
            "job_id": j,
            "added_at": now,
            "state": "active",
            "next_poll_at": now,
            "consecutive_failures": 0,
            "last_error": None,
            "terminal_since": None,
            "claim_token": 0,
        }
        for w, j in changed
    ]
    for start in range(0, len(rows), CHUNK):
        upsert(
            session,
            TRACKED,
            rows[start : start + CHUNK],
            key=("workflow_id", "job_id"),
            update=(
                "state",
                "next_poll_at",
                "consecutive_failures",
                "last_error",
                "terminal_since",
            ),
        )
    return len(changed)


def untrack(session: Session, workflow_id: str, job_id: str) -> bool:
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(TRACKED)
        .where(TRACKED.c.workflow_id == workflow_id, TRACKED.c.job_id == job_id)
        .values(state="untracked", next_poll_at=None)
    )
    return bool(result.rowcount)


def _due_where(now: datetime, everything: bool) -> list[Any]:
    if everything:
        return [TRACKED.c.state != "untracked"]
    return [TRACKED.c.state.in_(POLLED_STATES), TRACKED.c.next_poll_at <= now]


def due_jobs(session: Session, now: datetime, *, everything: bool = False) -> list[tuple[str, str]]:
    """Jobs to fetch in this pass, most overdue first; ``everything``: all but untracked ones."""
    query = select(TRACKED.c.workflow_id, TRACKED.c.job_id).where(*_due_where(now, everything))
    if everything:
        query = query.order_by(TRACKED.c.id)
    else:
        query = query.order_by(TRACKED.c.next_poll_at, TRACKED.c.id)
    return [(r.workflow_id, r.job_id) for r in session.execute(query)]


def count_due(session: Session, now: datetime, *, everything: bool = False) -> int:
    query = select(func.count()).select_from(TRACKED).where(*_due_where(now, everything))
    return int(session.execute(query).scalar_one())


def due_pages(
    sessions: sessionmaker[Session], now: datetime, *, everything: bool = False, page: int = 1000
) -> Iterator[tuple[str, str]]:
    """``due_jobs`` a page at a time, so a pass over 100,000 jobs holds 1,000 ids, not all.

    Keyset order (next_poll_at, id), or id for ``everything``: a job the pass has archived gets
    a later next_poll_at and is not seen again; one that falls due meanwhile may join the pass.
    """
    last: tuple[Any, ...] | None = None
    while True:
        query = select(
            TRACKED.c.id, TRACKED.c.next_poll_at, TRACKED.c.workflow_id, TRACKED.c.job_id
        ).where(*_due_where(now, everything))
        if everything:
            order = [TRACKED.c.id]
            if last is not None:
                query = query.where(TRACKED.c.id > last[0])
        else:
            order = [TRACKED.c.next_poll_at, TRACKED.c.id]
            if last is not None:
                query = query.where(
                    or_(
                        TRACKED.c.next_poll_at > last[1],
                        and_(TRACKED.c.next_poll_at == last[1], TRACKED.c.id > last[0]),
                    )
                )
        with sessions() as session:
            rows = session.execute(query.order_by(*order).limit(page)).all()
        if not rows:
            return
        for row in rows:
            yield row.workflow_id, row.job_id
        last = (rows[-1].id, rows[-1].next_poll_at)


def list_tracked(session: Session, state: str | None = None) -> list[Any]:
    query = select(TRACKED).order_by(TRACKED.c.workflow_id, TRACKED.c.job_id)
    if state:
        query = query.where(TRACKED.c.state == state)
    return list(session.execute(query).mappings())


@dataclass(frozen=True)
class PollingPolicy:
    interval: float
    jitter: float
    settle_window: float
    settle_interval: float
    backoff_max: float
    pause_after: int
    rng: random.Random = field(default_factory=random.Random, compare=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> PollingPolicy:
        return cls(
            settings.poll_interval,
            settings.poll_jitter,
            settings.settle_window,
            settings.settle_interval,
            settings.failure_backoff_max,
            settings.pause_after,
        )

    def _jittered(self, seconds: float) -> timedelta:
        spread = seconds * self.jitter
        return timedelta(seconds=max(0.0, seconds + self.rng.uniform(-spread, spread)))

    def after_success(
        self, row: dict[str, Any], now: datetime, status: str | None, terminal: bool | None
    ) -> dict[str, Any]:
        """The tracking columns after a successful fetch."""
        values: dict[str, Any] = {
            "last_polled_at": now,
            "last_status": status[:64] if status else None,
            "consecutive_failures": 0,
            "last_error": None,
        }
        if row.get("state") == "untracked":  # untracked while this fetch was in flight
            return values
        if not terminal:
            return {
                **values,
                "state": "active",
                "terminal_since": None,
                "next_poll_at": now + self._jittered(self.interval),
            }
        since = row.get("terminal_since") or now
        if (now - since).total_seconds() >= self.settle_window:
            return {**values, "state": "settled", "terminal_since": since, "next_poll_at": None}
        return {
            **values,
            "state": "settling",
            "terminal_since": since,
            "next_poll_at": now + self._jittered(self.settle_interval),
        }

    def after_failure(
        self, row: dict[str, Any], now: datetime, error: ApiError | Exception, message: str
    ) -> dict[str, Any]:
        """Back off exponentially; 429 waits at least Retry-After; repeated 403/404 pauses."""
        failures = int(row.get("consecutive_failures") or 0) + 1
        values: dict[str, Any] = {
            "last_polled_at": now,
            "consecutive_failures": failures,
            "last_error": message[:2000],
            "last_error_at": now,
        }
        if row.get("state") == "untracked":
            return values
        if isinstance(error, NotFoundError | ForbiddenError) and failures >= self.pause_after:
            return {**values, "state": "paused", "next_poll_at": None}
        # Retry-After is honoured (jitter never goes below it), but a server cannot push a job
        # out past the backoff cap
        retry = RetryPolicy(
            base=self.interval if row.get("state") != "settling" else self.settle_interval,
            cap=self.backoff_max,
            jitter=self.jitter,
            retry_after_cap=self.backoff_max,
        )
        retry_after = getattr(error, "retry_after", None)
        delay = retry.delay(
            failures - 1,
            retry_after=float(retry_after) if retry_after else None,
            draw=self.rng.uniform,
        )
        return {**values, "next_poll_at": now + timedelta(seconds=delay)}


def apply(session: Session, workflow_id: str, job_id: str, values: dict[str, Any]) -> None:
    session.execute(
        update(TRACKED)
        .where(TRACKED.c.workflow_id == workflow_id, TRACKED.c.job_id == job_id)
        .values(**values)
    )


def load(session: Session, workflow_id: str, job_id: str) -> dict[str, Any]:
    row = (
        session.execute(
            select(TRACKED).where(TRACKED.c.workflow_id == workflow_id, TRACKED.c.job_id == job_id)
        )
        .mappings()
        .first()
    )
    return dict(row) if row else {}


def load_many(
    session: Session, keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """``load`` for a batch of jobs in one query."""
    if not keys:
        return {}
    rows = session.execute(
        select(TRACKED).where(tuple_(TRACKED.c.workflow_id, TRACKED.c.job_id).in_(list(keys)))
    ).mappings()
    return {(r["workflow_id"], r["job_id"]): dict(r) for r in rows}


_BY_KEY = update(TRACKED).where(
    TRACKED.c.workflow_id == bindparam("b_wf"), TRACKED.c.job_id == bindparam("b_job")
)


def apply_many(session: Session, changes: Sequence[tuple[tuple[str, str], dict[str, Any]]]) -> None:
    """``apply`` for a batch: one statement per set of columns, run with every job's values."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for (wf, job_id), values in changes:
        groups.setdefault(tuple(values), []).append({"b_wf": wf, "b_job": job_id, **values})
    for rows in groups.values():
        session.execute(_BY_KEY, rows)


def unique(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(pairs))
