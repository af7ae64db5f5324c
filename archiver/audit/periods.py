"""Closed periods: a month's cost statement, frozen and hashed (``archiver close-period``).

Closing a month stores what its jobs (by creation month, as in ``archiver report cost``) cost at
that moment, by workflow, user and block, with a SHA-256 over the whole statement. Costs keep
moving after that (re-pricing after a job ends); a closed figure never does. The difference
between what the period's jobs cost now and what was closed is an *adjustment*, booked in the
next open month, so the books always add up: closed + adjustments = current cost. Reopening is
an explicit action with a reason, written to ``period_events`` beside every close; ``archiver
verify`` checks each statement against its hash and its events.

Sums are taken in Python over exact integers, so costs near the 64-bit limits cannot overflow.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.orm import Session

from archiver.archive.changelog import as_text
from archiver.audit.breaks import Break
from archiver.errors import ArchiverError
from archiver.models import JOBS, PERIOD_EVENTS, STATEMENT_LINES, STATEMENTS, TASKS

DIMENSIONS = ("workflow", "user", "block")
UNKNOWN = "(unknown)"
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_period(text: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` to its [start, end) in UTC."""
    match = _PERIOD.match(text.strip())
    if match is None:
        raise ArchiverError(f"period {text!r} is not a month written YYYY-MM (e.g. 2026-10)")
    year, month = int(match.group(1)), int(match.group(2))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_of(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).strftime("%Y-%m")


@dataclass(frozen=True)
class Line:
    dimension: str
    key: str
    jobs: int
    jobs_without_cost: int
    cost: int


@dataclass(frozen=True)
class Statement:
    id: int
    period: str
    closed_at: datetime
    closed_by: str
    jobs: int
    cost: int
    sha256: str
    reopened_at: datetime | None
    lines: tuple[Line, ...]


def statement_hash(
    period: str, closed_at: datetime, closed_by: str, jobs: int, cost: int, lines: Iterable[Line]
) -> str:
    content = [
        "statement-v1",
        period,
        as_text(closed_at),
        closed_by,
        jobs,
        str(cost),
        sorted([ln.dimension, ln.key, ln.jobs, ln.jobs_without_cost, str(ln.cost)] for ln in lines),
    ]
    text = json.dumps(content, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# --- what the jobs of a month cost now ---------------------------------------------------------


@dataclass
class _Tally:
    jobs: int = 0
    without_cost: int = 0
    cost: int = 0

    def add(self, cost: int | None) -> None:
        self.jobs += 1
        if cost is None:
            self.without_cost += 1
        else:
            self.cost += cost


def _current(
    session: Session,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    blocks: bool = True,
) -> dict[tuple[str, str, str], _Tally]:
    """(month, dimension, key) -> tally of the jobs created in [start, end), as they are now.

    ``blocks=False`` leaves the block tallies out, and with them the read of every task.
    """
    query = select(
        JOBS.c.workflow_id, JOBS.c.job_id, JOBS.c.created_by, JOBS.c.created_at, JOBS.c.cost
    )
    if start is not None:
        query = query.where(JOBS.c.created_at >= start)
    if end is not None:
        query = query.where(JOBS.c.created_at < end)
    tallies: dict[tuple[str, str, str], _Tally] = defaultdict(_Tally)
    months: dict[tuple[str, str], tuple[str, int | None]] = {}
    for wf, jid, user, created, cost in session.execute(query):
        month = month_of(created) or UNKNOWN
        months[(wf, jid)] = (month, cost)
        tallies[(month, "total", "")].add(cost)
        tallies[(month, "workflow", wf)].add(cost)
        tallies[(month, "user", user or UNKNOWN)].add(cost)
    if not blocks:
        return tallies
    used_blocks = select(
        TASKS.c.workflow_id, TASKS.c.job_id, TASKS.c.block_name, TASKS.c.block_version
    ).where(TASKS.c.removed_at.is_(None))
    used: set[tuple[str, str, str]] = set()
    for wf, jid, name, version in session.execute(used_blocks):
        if (wf, jid) not in months:
            continue
        block = f"{name or UNKNOWN}@{version or UNKNOWN}"
        if (wf, jid, block) in used:
            continue
        used.add((wf, jid, block))
        month, cost = months[(wf, jid)]
        tallies[(month, "block", block)].add(cost)
    return tallies


# --- closing and reopening -----------------------------------------------------------------------


def statements(session: Session, *, in_force: bool = True) -> list[Statement]:
    query = select(STATEMENTS).order_by(STATEMENTS.c.period_month, STATEMENTS.c.id)
    if in_force:
        query = query.where(STATEMENTS.c.reopened_at.is_(None))
    heads = session.execute(query).mappings().all()
    lines: dict[int, list[Line]] = defaultdict(list)
    if heads:
        for r in session.execute(
            select(STATEMENT_LINES).where(
                STATEMENT_LINES.c.statement_id.in_([h["id"] for h in heads])
            )
        ).mappings():
            lines[r["statement_id"]].append(
                Line(
                    r["dimension"], r["dim_key"], r["jobs"], r["jobs_without_cost"], int(r["cost"])
                )
            )
    return [
        Statement(
            h["id"],
            h["period_month"],
            h["closed_at"],
            h["closed_by"],
            h["jobs"],
            int(h["cost"]),
            h["sha256"],
            h["reopened_at"],
            tuple(lines[h["id"]]),
        )
        for h in heads
    ]


def close_period(
    session: Session, period: str, actor: str, now: datetime | None = None
) -> Statement:
    """Freeze ``period``'s cost. Does not commit."""
    start, end = parse_period(period)
    now = now or datetime.now(UTC)
    if now < end:
        raise ArchiverError(f"period {period} has not ended yet (it ends {as_text(end)})")
    _lock_period(session, period)
    if any(s.period == period for s in statements(session)):
        raise ArchiverError(
            f"period {period} is already closed; reopen it first "
            f"(archiver close-period {period} --reopen --reason ...)"
        )
    tallies = _current(session, start, end)
    total = tallies.get((period, "total", ""), _Tally())
    lines = tuple(
        Line(dimension, key, t.jobs, t.without_cost, t.cost)
        for (_, dimension, key), t in sorted(tallies.items())
        if dimension in DIMENSIONS
    )
    digest = statement_hash(period, now, actor, total.jobs, total.cost, lines)
    inserted: Any = session.execute(
        insert(STATEMENTS).values(
            period_month=period,
            closed_at=now,
            closed_by=actor,
            jobs=total.jobs,
            cost=total.cost,
            sha256=digest,
            reopened_at=None,
        )
    )
    statement_id = int(inserted.inserted_primary_key[0])
    if lines:
        session.execute(
            insert(STATEMENT_LINES),
            [
                {
                    "statement_id": statement_id,
                    "dimension": ln.dimension,
                    "dim_key": ln.key[:600],
                    "jobs": ln.jobs,
                    "jobs_without_cost": ln.jobs_without_cost,
                    "cost": ln.cost,
                }
                for ln in lines
            ],
        )
    _log(session, period, "close", now, actor, None, statement_id, digest)
    return Statement(statement_id, period, now, actor, total.jobs, total.cost, digest, None, lines)


def reopen_period(
    session: Session, period: str, actor: str, reason: str, now: datetime | None = None
) -> Statement:
    """Take a closed statement out of force, with a reason for the log. Does not commit."""
    parse_period(period)
    if not reason.strip():
        raise ArchiverError("reopening a closed period needs a reason (--reason)")
    now = now or datetime.now(UTC)
    _lock_period(session, period)
    current = [s for s in statements(session) if s.period == period]
    if not current:
        raise ArchiverError(f"period {period} is not closed")
    statement = current[0]
    session.execute(
        update(STATEMENTS).where(STATEMENTS.c.id == statement.id).values(reopened_at=now)
    )
    _log(session, period, "reopen", now, actor, reason.strip(), statement.id, statement.sha256)
    return statement


def _lock_period(session: Session, period: str) -> None:
    """Two closes (or reopens) must not race: they queue on one row every archive has.

    Locking the month's own statements is not enough: before its first close a month has none,
    so two closes would both find nothing to lock, nothing closed, and both insert. The schema
    version row always exists; closing is rare, so serializing every close on it costs nothing.
    SQLite needs nothing: ``BEGIN IMMEDIATE`` already makes writers queue.
    """
    if session.get_bind().dialect.name != "sqlite":
        session.execute(text("SELECT version_num FROM alembic_version FOR UPDATE")).all()


def _log(
    session: Session,
    period: str,
    action: str,
    when: datetime,
    actor: str,
    reason: str | None,
    statement_id: int,
    digest: str,
) -> None:
    session.execute(
        insert(PERIOD_EVENTS).values(
            period_month=period,
            action=action,
            occurred_at=when,
            actor=actor,
            reason=reason,
            statement_id=statement_id,
            statement_sha256=digest,
        )
    )


def verify_statements(session: Session) -> tuple[int, list[Break]]:
    """Every statement still hashes to its sha256, and its close/reopen match the log."""
    breaks: list[Break] = []
    events: dict[int, dict[str, Any]] = defaultdict(dict)
    for e in session.execute(select(PERIOD_EVENTS)).mappings():
        if e["statement_id"] is not None:
            events[e["statement_id"]][e["action"]] = e
    every = statements(session, in_force=False)
    for s in every:

        def bad(kind: str, detail: str, s: Statement = s) -> None:
            breaks.append(Break("period_statements", s.id, "*", "*", kind, f"{s.period}: {detail}"))

        if statement_hash(s.period, s.closed_at, s.closed_by, s.jobs, s.cost, s.lines) != s.sha256:
            bad("edited", "the statement or its lines no longer hash to its sha256")
        logged = events.get(s.id, {})
        if logged.get("close", {}).get("statement_sha256") != s.sha256:
            bad("edited", "the close in period_events does not match the statement")
        if s.reopened_at is not None and "reopen" not in logged:
            bad("edited", "marked reopened, but no reopen is logged in period_events")
        if s.reopened_at is None and "reopen" in logged:
            bad("edited", "a reopen is logged, but the statement is back in force")
    return len(every), breaks


# --- the books: closed figures plus adjustments -----------------------------------------------


@dataclass(frozen=True)
class BookRow:
    group: str
    jobs: int
    jobs_without_cost: int
    cost: int  # closed figures for closed months, current cost for open ones
    adjustments: int  # movements since a close, for closed months' jobs, booked here
    closed: bool  # month rows: the figure is a closed statement's

    @property
    def total(self) -> int:
        return self.cost + self.adjustments


def books(
    session: Session, by: str, since: datetime | None = None, until: datetime | None = None
) -> list[BookRow]:
    """Cost by ``month``, ``workflow``, ``user`` or ``block`` as the books read it.

    A closed month counts with its statement's figures; what its jobs cost beyond that is an
    adjustment, booked in the first open month after it (``by="month"``) or beside the key.
    """
    closed = {s.period: s for s in statements(session)}
    tallies = _current(session, since, until, blocks=by == "block")
    months = sorted({m for m, _, _ in tallies} | {p for p in closed if _within(p, since, until)})
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # jobs, without, cost, adj

    if by == "month":
        for month in months:
            now = tallies.get((month, "total", ""), _Tally())
            if month in closed:
                s = closed[month]
                row = rows[month]
                row[0], row[2] = s.jobs, s.cost
                row[1] = sum(ln.jobs_without_cost for ln in s.lines if ln.dimension == "workflow")
                adjustment = now.cost - s.cost
                if adjustment:
                    rows[_next_open(month, closed)][3] += adjustment
            else:
                row = rows[month]
                row[0], row[1], row[2] = now.jobs, now.without_cost, now.cost
        return [
            BookRow(g, r[0], r[1], r[2], r[3], g in closed)
            for g, r in sorted(rows.items(), key=lambda kv: (kv[0] == UNKNOWN, kv[0]))
        ]

    for (month, dimension, key), tally in tallies.items():
        if dimension != by:
            continue
        row = rows[key]
        if month in closed:
            row[3] += tally.cost  # minus the closed line, below
        else:
            row[0], row[1], row[2] = (
                row[0] + tally.jobs,
                row[1] + tally.without_cost,
                row[2] + tally.cost,
            )
    for month, s in closed.items():
        if not _within(month, since, until):
            continue
        for ln in s.lines:
            if ln.dimension == by:
                row = rows[ln.key]
                row[0], row[1], row[2] = (
                    row[0] + ln.jobs,
                    row[1] + ln.jobs_without_cost,
                    row[2] + ln.cost,
                )
                row[3] -= ln.cost
    return [
        BookRow(g, r[0], r[1], r[2], r[3], False)
        for g, r in sorted(rows.items(), key=lambda kv: (kv[0] == UNKNOWN, kv[0]))
    ]


def _within(period: str, since: datetime | None, until: datetime | None) -> bool:
    start, _ = parse_period(period)
    return (since is None or start >= since) and (until is None or start < until)


def _next_open(month: str, closed: dict[str, Statement]) -> str:
    _, end = parse_period(month)
    candidate = month_of(end)
    assert candidate is not None
    while candidate in closed:
        _, end = parse_period(candidate)
        candidate = month_of(end) or candidate
    return candidate
