"""Reports for cost and audit, read from the reporting views (docs/reporting.md).

The CLI and BI tools get the same answers because both read the views the migrations create;
this module only filters, groups and orders them. Functions take a session, never commit, and
return plain dataclasses. Rows are ordered here, in Python, because databases order text by
different collations and a report must read the same on every database.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Context, Decimal
from typing import Any, Literal

from sqlalchemy import Integer, Numeric, String, column, func, literal, select, table
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from archiver.models import JobVersion, Workflow
from archiver.sqltypes import UTCDateTime
from archiver.statuses import CLASSES

CostBy = Literal["workflow", "user", "day", "month"]
COST_GROUPS: dict[str, str] = {
    "workflow": "workflow_id",
    "user": "created_by",
    "day": "created_day",
    "month": "created_month",
}
SECONDS = Numeric(20, 3)
_TEXT = String(255)


def _view(name: str, **columns: Any) -> Any:
    """A typed handle on a view, so binds and results convert like the tables' own columns."""
    return table(name, *(column(n, t) for n, t in columns.items()))


JOB_COST = _view(
    "v_job_cost",
    workflow_id=_TEXT,
    created_by=_TEXT,
    created_at=UTCDateTime(),
    created_day=_TEXT,
    created_month=_TEXT,
    cost=Integer(),
)
JOB_BLOCK_COST = _view(
    "v_job_block_cost",
    created_at=UTCDateTime(),
    block=_TEXT,
    block_name=_TEXT,
    block_version=_TEXT,
    tasks=Integer(),
    job_cost=Integer(),
)
_PERIOD_COLUMNS = {
    "workflow_id": _TEXT,
    "job_id": _TEXT,
    "seq": Integer(),
    "status": _TEXT,
    "status_class": _TEXT,
    "entered_at": UTCDateTime(),
    "left_at": UTCDateTime(),
    "next_status": _TEXT,
    "duration_s": SECONDS,
    "prev_seen_at": UTCDateTime(),
    "last_seen_at": UTCDateTime(),
    "entry_window_s": SECONDS,
    "exit_window_s": SECONDS,
}
JOB_PERIODS = _view("v_job_status_periods", **_PERIOD_COLUMNS)
TASK_PERIODS = _view("v_task_status_periods", task_id=_TEXT, **_PERIOD_COLUMNS)
TASK_FAILURES = _view(
    "v_task_failures",
    block=_TEXT,
    block_name=_TEXT,
    block_version=_TEXT,
    failure_type=_TEXT,
    failed_tasks=Integer(),
    jobs=Integer(),
)


def _none_last(value: Any) -> tuple[bool, Any]:
    return (value is None, "" if value is None else value)


def _int(value: Any) -> int:
    """SUM is DECIMAL on MariaDB and NUMERIC on PostgreSQL; counts and money are integers."""
    return int(value or 0)


# SUM of 64-bit costs can pass 2**63. PostgreSQL and MariaDB sum BIGINT as NUMERIC/DECIMAL,
# exactly; SQLite's SUM raises 'integer overflow' (and total() is a float). On SQLite each cost is
# summed as its high and low parts (cost / 2**32 truncated, and the remainder, which has the
# cost's sign): both sums fit 64 bits for any realistic number of rows, and Python adds them back.
_SPLIT = 2**32


def _exact_sum(session: Session, value: ColumnElement[Any]) -> list[ColumnElement[Any]]:
    """The aggregates whose values ``_sum_of`` turns into the exact sum of ``value``."""
    if session.get_bind().dialect.name != "sqlite":
        return [func.sum(value)]
    split = literal(_SPLIT, Integer())
    return [
        func.sum(value.op("/", return_type=Integer())(split)),
        func.sum(value.op("%", return_type=Integer())(split)),
    ]


def _sum_of(parts: Sequence[Any]) -> int:
    if len(parts) == 1:
        return _int(parts[0])
    high, low = parts
    return _int(high) * _SPLIT + _int(low)


def _seconds(value: Any) -> Decimal | None:
    return None if value is None else Decimal(value).quantize(Decimal("0.001"))


def created_between(
    created_at: ColumnElement[Any], since: datetime | None, until: datetime | None
) -> list[ColumnElement[bool]]:
    """``since`` inclusive, ``until`` exclusive; a job without ``created_at`` matches neither."""
    where = []
    if since is not None:
        where.append(created_at >= since)
    if until is not None:
        where.append(created_at < until)
    return where


# --- cost ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CostRow:
    group: str | None  # workflow id, user, UTC day, UTC month; 'unknown' day/month: no created_at
    jobs: int
    jobs_without_cost: int
    cost: int


def cost_by(
    session: Session, by: CostBy, since: datetime | None = None, until: datetime | None = None
) -> list[CostRow]:
    """Cost of jobs by workflow, user, or the UTC day/month the job was created."""
    key = JOB_COST.c[COST_GROUPS[by]]
    cost = JOB_COST.c.cost
    rows = session.execute(
        select(key, func.count(), func.count() - func.count(cost), *_exact_sum(session, cost))
        .where(*created_between(JOB_COST.c.created_at, since, until))
        .group_by(key)
    )
    result = [CostRow(g, _int(n), _int(missing), _sum_of(c)) for g, n, missing, *c in rows]
    return sorted(result, key=lambda r: _none_last(r.group))


def workflow_names(session: Session) -> dict[str, str | None]:
    """Every workflow's current name (``workflows``); an id absent here has no known name."""
    rows = session.execute(select(Workflow.workflow_id, Workflow.name))
    return {workflow_id: name for workflow_id, name in rows}


@dataclass(frozen=True)
class DailyCostRow:
    day: str  # UTC day of created_at, 'unknown' without one
    workflow_id: str
    jobs: int
    jobs_without_cost: int
    cost: int
    workflow_name: str | None = None  # its current name; None when the archive knows none


def daily_cost_by_workflow(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> list[DailyCostRow]:
    """Cost of jobs by the UTC day they were created and workflow, as ``cost_by`` counts it."""
    v = JOB_COST.c
    rows = session.execute(
        select(
            v.created_day,
            v.workflow_id,
            func.count(),
            func.count() - func.count(v.cost),
            *_exact_sum(session, v.cost),
        )
        .where(*created_between(v.created_at, since, until))
        .group_by(v.created_day, v.workflow_id)
    )
    names = workflow_names(session)
    result = [
        DailyCostRow(day, wf, _int(n), _int(missing), _sum_of(c), names.get(wf))
        for day, wf, n, missing, *c in rows
    ]
    return sorted(result, key=lambda r: (r.day == "unknown", r.day, r.workflow_id))


@dataclass(frozen=True)
class BlockCostRow:
    """A job's whole cost counts under every block it used: rows do not add up to the total."""

    block: str
    block_name: str | None
    block_version: str | None
    jobs: int
    tasks: int
    jobs_without_cost: int
    jobs_cost: int


def cost_by_block(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> list[BlockCostRow]:
    v = JOB_BLOCK_COST.c
    rows = session.execute(
        select(
            v.block,
            v.block_name,
            v.block_version,
            func.count(),
            func.sum(v.tasks),
            func.count() - func.count(v.job_cost),
            *_exact_sum(session, v.job_cost),
        )
        .where(*created_between(v.created_at, since, until))
        .group_by(v.block, v.block_name, v.block_version)
    )
    result = [
        BlockCostRow(b, name, version, _int(n), _int(t), _int(m), _sum_of(c))
        for b, name, version, n, t, m, *c in rows
    ]
    return sorted(result, key=lambda r: r.block)


# --- status --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusSummaryRow:
    status: str | None
    status_class: str | None
    now: int  # jobs (or tasks) in this status now
    periods: int  # times a job (or task) entered it
    avg_duration_s: Decimal | None  # over the periods that ended
    max_duration_s: Decimal | None
    avg_entry_window_s: Decimal | None  # how precisely the entries are known, on average


def status_summary(session: Session, *, tasks: bool = False) -> list[StatusSummaryRow]:
    v = (TASK_PERIODS if tasks else JOB_PERIODS).c
    rows = session.execute(
        select(
            v.status,
            v.status_class,
            func.count() - func.count(v.left_at),
            func.count(),
            func.avg(v.duration_s),
            func.max(v.duration_s),
            func.avg(v.entry_window_s),
        ).group_by(v.status, v.status_class)
    )
    result = [
        StatusSummaryRow(
            s, c, _int(now), _int(n), _seconds(avg), _seconds(longest), _seconds(window)
        )
        for s, c, now, n, avg, longest, window in rows
    ]
    order = {name: i for i, name in enumerate(CLASSES)}  # the lifecycle: queued first
    return sorted(
        result, key=lambda r: (order.get(r.status_class or "", len(order)), _none_last(r.status))
    )


@dataclass(frozen=True)
class StatusPeriodRow:
    task_id: str | None  # None for the job itself
    seq: int
    status: str | None
    entered_at: datetime
    left_at: datetime | None  # None: still in it
    next_status: str | None
    duration_s: Decimal | None
    prev_seen_at: datetime | None  # the change to this status happened after this poll ...
    last_seen_at: datetime | None  # ... and the change away from it after this one
    entry_window_s: Decimal | None
    exit_window_s: Decimal | None


def status_periods(
    session: Session, workflow_id: str, job_id: str, *, tasks: bool = False
) -> list[StatusPeriodRow]:
    """The job's (or its tasks') time in each status, with how precisely each change is known."""
    view = TASK_PERIODS if tasks else JOB_PERIODS
    v = view.c
    task_id = v.task_id if tasks else None
    rows = session.execute(
        select(
            *([task_id] if task_id is not None else []),
            v.seq,
            v.status,
            v.entered_at,
            v.left_at,
            v.next_status,
            v.duration_s,
            v.prev_seen_at,
            v.last_seen_at,
            v.entry_window_s,
            v.exit_window_s,
        ).where(v.workflow_id == workflow_id, v.job_id == job_id)
    )
    result = []
    for row in rows:
        values = list(row) if tasks else [None, *row]
        tid, seq, status, entered, left, nxt, duration, prev, last, entry, exit_ = values
        result.append(
            StatusPeriodRow(
                tid,
                int(seq),
                status,
                entered,
                left,
                nxt,
                _seconds(duration),
                prev,
                last,
                _seconds(entry),
                _seconds(exit_),
            )
        )
    return sorted(result, key=lambda r: (_none_last(r.task_id), r.seq))


# --- failures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FailureRow:
    block: str
    block_name: str | None
    block_version: str | None
    failure_type: str  # '(none)' when the API gave none
    failed_tasks: int
    jobs: int


def failures(session: Session) -> list[FailureRow]:
    """Tasks whose current status is a failure, by block, version and failure type; most first."""
    v = TASK_FAILURES.c
    rows = session.execute(
        select(v.block, v.block_name, v.block_version, v.failure_type, v.failed_tasks, v.jobs)
    )
    result = [FailureRow(b, n, ver, f, _int(t), _int(j)) for b, n, ver, f, t, j in rows]
    return sorted(result, key=lambda r: (-r.failed_tasks, r.block, r.failure_type))


# --- point in time -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AsOfRow:
    workflow_id: str
    job_id: str
    version: int
    status: str | None
    cost: int | None
    progress_pct: Decimal | None
    valid_from: datetime
    valid_to: datetime | None


def as_of(session: Session, when: datetime) -> list[AsOfRow]:
    """Every job as the archive knew it at ``when``: valid_from <= when < valid_to (or current).

    Jobs first seen after ``when`` are absent: the archive cannot know what it had not seen.
    """
    v = JobVersion
    rows = session.execute(
        select(
            v.workflow_id,
            v.job_id,
            v.version,
            v.status,
            v.cost,
            v.progress_pct,
            v.valid_from,
            v.valid_to,
        ).where(v.valid_from <= when, (v.valid_to.is_(None)) | (v.valid_to > when))
    )
    result = [AsOfRow(*row) for row in rows]
    return sorted(result, key=lambda r: (r.workflow_id, r.job_id))


# --- estimate against actual ---------------------------------------------------------------------

JOB_ESTIMATE = _view(
    "v_job_estimate",
    workflow_id=_TEXT,
    workflow_name=_TEXT,
    job_id=_TEXT,
    created_by=_TEXT,
    created_at=UTCDateTime(),
    estimate_basis=_TEXT,
    estimate_at_creation=Integer(),
    cost=Integer(),
)
_WIDE = Context(prec=80)  # exact for any quotient of two sums of 64-bit integers, to 4 places


def _ratio(numerator: int, denominator: int, places: int) -> Decimal | None:
    """numerator / denominator rounded half away from zero, as PostgreSQL and MariaDB round;
    None for a zero denominator (an estimate of 0 has no ratio)."""
    if denominator == 0:
        return None
    quotient = _WIDE.divide(Decimal(numerator), Decimal(denominator))
    return quotient.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP, context=_WIDE)


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class WorkflowEstimateRow:
    """One workflow of ``v_workflow_estimate``; means and the percentage divided here, exactly."""

    workflow_id: str
    workflow_name: str | None
    current_estimate: int | None  # the workflow's estimate now
    jobs: int
    jobs_with_cost: int
    jobs_with_estimate: int  # jobs whose workflow had a known estimate when they were created
    jobs_estimate_earliest: int  # ... of which created before the first version recorded
    jobs_compared: int  # jobs with both a cost and an estimate: the variance is over these
    estimate_total: int
    mean_estimate: Decimal | None  # the estimate per run, over jobs_with_estimate
    actual_total: int
    mean_actual: Decimal | None  # over jobs_with_cost
    compared_estimate: int
    variance_total: int  # actual minus estimate, over the compared jobs
    variance_pct: Decimal | None  # variance_total / compared_estimate, in percent


_WORKFLOW_ESTIMATE_COLUMNS = (
    "workflow_id",
    "workflow_name",
    "current_estimate",
    "jobs",
    "jobs_with_cost",
    "jobs_with_estimate",
    "jobs_estimate_earliest",
    "jobs_compared",
    "estimate_total",
    "actual_total",
    "compared_estimate",
    "variance_total",
)
WORKFLOW_ESTIMATE = _view(
    "v_workflow_estimate",
    **{
        # Integer: no conversion of the driver's value (a Numeric would pass SQLite's through
        # a float); int() reads a PostgreSQL/MariaDB Decimal and SQLite's decimal TEXT exactly
        name: _TEXT if name in ("workflow_id", "workflow_name") else Integer()
        for name in _WORKFLOW_ESTIMATE_COLUMNS
    },
)


def workflow_estimates(session: Session) -> list[WorkflowEstimateRow]:
    """Estimate against actual per workflow, by workflow id.

    The view's sums are exact on every database (decimal TEXT past 64 bits on SQLite, which
    ``int`` reads); its means and percentage are recomputed here from them, since SQLite divides
    in floating point.
    """
    v = WORKFLOW_ESTIMATE.c
    rows = session.execute(select(*(v[name] for name in _WORKFLOW_ESTIMATE_COLUMNS)))
    result = []
    for wf, name, current, *counts, est, actual, compared, variance in rows:
        jobs, with_cost, with_estimate, earliest, both = (_int(n) for n in counts)
        est, actual, compared, variance = (_int(x) for x in (est, actual, compared, variance))
        result.append(
            WorkflowEstimateRow(
                wf,
                name,
                _opt_int(current),
                jobs,
                with_cost,
                with_estimate,
                earliest,
                both,
                est,
                _ratio(est, with_estimate, 2),
                actual,
                _ratio(actual, with_cost, 2),
                compared,
                variance,
                _ratio(100 * variance, compared, 2),
            )
        )
    return sorted(result, key=lambda r: r.workflow_id)


@dataclass(frozen=True)
class OverrunRow:
    """A job that cost more than its workflow's estimate when it was created."""

    workflow_id: str
    workflow_name: str | None
    job_id: str
    created_by: str | None
    created_at: datetime | None
    estimate_basis: str  # 'at_creation' or 'earliest_known' (see docs/reporting.md)
    estimate_at_creation: int
    cost: int
    overrun: int  # cost - estimate_at_creation
    cost_ratio: Decimal | None  # cost / estimate_at_creation; None for an estimate of 0


def _overrun_rank(row: OverrunRow) -> tuple[Any, ...]:
    """Largest overrun first, then largest ratio (an estimate of 0 first), then by ids."""
    ratio = row.cost_ratio
    return (-row.overrun, ratio is not None, -(ratio or 0), row.workflow_id, row.job_id)


def top_overruns(session: Session, top: int) -> list[OverrunRow]:
    """The ``top`` jobs whose cost exceeds their estimate at creation by the most.

    The candidates are streamed and only ``top`` are kept, so memory does not grow with the
    archive; they are ranked here, in Python, for the same order on every database.
    """
    if top <= 0:
        return []
    v = JOB_ESTIMATE.c
    statement = (
        select(
            v.workflow_id,
            v.workflow_name,
            v.job_id,
            v.created_by,
            v.created_at,
            v.estimate_basis,
            v.estimate_at_creation,
            v.cost,
        )
        .where(v.cost > v.estimate_at_creation)
        .execution_options(yield_per=1000)
    )

    def candidates() -> Iterable[OverrunRow]:
        for wf, name, job, by, created, basis, estimate, cost in session.execute(statement):
            estimate, cost = int(estimate), int(cost)
            yield OverrunRow(
                wf,
                name,
                job,
                by,
                created,
                basis,
                estimate,
                cost,
                cost - estimate,
                _ratio(cost, estimate, 4),
            )

    return heapq.nsmallest(top, candidates(), key=_overrun_rank)
