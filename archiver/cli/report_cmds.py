"""``archiver report``: cost, status, failures and point-in-time reports (docs/reporting.md)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from archiver.cli.common import (
    Abort,
    F,
    build_settings,
    cli,
    format_option,
    open_archive,
    settings_options,
)

if TYPE_CHECKING:
    from archiver.audit import periods
    from archiver.reporting import reports

BLOCK_NOTE = "A job's whole cost counts under every block it used: rows do not add up to a total."
NAME_AND_VERSION = ("block_name", "block_version")  # the table shows them as one `block`
DAY_NOTE = "Days and months are UTC; 'unknown': jobs without created_at."
PRECISION_NOTE = (
    "Each change happened within its window: the seconds between the last poll that saw the "
    "old status and the first that saw the new one (--format csv shows both polls)."
)


def _timestamp(_ctx: Any, param: click.Parameter, value: str | None) -> datetime | None:
    """ISO-8601, date-only accepted (midnight UTC); a time without a zone is UTC."""
    if value is None:
        return None
    from archiver.archive.values import parse_timestamp

    parsed = parse_timestamp(value)
    if parsed.value is None:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 date or timestamp", param=param)
    return parsed.value


def _period_options(func: F) -> F:
    func = click.option(
        "--until",
        callback=_timestamp,
        help="Only jobs created before this UTC date or time (exclusive).",
    )(func)
    return click.option(
        "--since",
        callback=_timestamp,
        help="Only jobs created at or after this UTC date or time, e.g. 2026-10-01.",
    )(func)


def _check_period(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since >= until:
        raise click.BadParameter("must be before --until", param_hint="--since")


def _columns(row_type: type) -> list[str]:
    return [f.name for f in fields(row_type)]


def _emit(
    data: Sequence[dict[str, Any]],
    columns: Sequence[str],
    fmt: str,
    title: str,
    caption: str | None = None,
    *,
    shown: Sequence[str] | None = None,
) -> None:
    """Print records as a rich table, CSV (header first, even when empty) or a JSON array.

    CSV, JSON and piped text carry every column; a terminal table may show fewer (``shown``).
    """
    from archiver.reporting.render import records_csv, records_grid, records_json, show

    if fmt == "json":
        click.echo(records_json(data))
    elif fmt == "csv":
        click.echo(records_csv(data, columns), nl=False)
    elif not data:
        click.echo(f"{title}: nothing in the archive matches")
    else:
        show(records_grid(data, columns, title, caption, terminal_columns=shown))


def _read(database_url: str | None, query: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    settings = build_settings(database_url=database_url)
    with open_archive(settings, read_only=True) as sessions, sessions() as session:
        return query(session, *args, **kwargs)


@cli.group()
def report() -> None:
    """Reports over the archive; the SQL behind them is in docs/reporting.md."""


@report.command("cost")
@click.option(
    "--by",
    type=click.Choice(["workflow", "user", "block", "day", "month"]),
    default="workflow",
    show_default=True,
    help="Group by workflow, user (created_by), block (name@version), or UTC creation day/month.",
)
@_period_options
@format_option("table", "csv", "json")
@settings_options("report cost")
def report_cost(
    by: str, since: datetime | None, until: datetime | None, fmt: str, database_url: str | None
) -> None:
    """Cost of the archived jobs by workflow, user, block, or the day or month they were created."""
    from archiver.reporting import reports
    from archiver.reporting.render import records

    _check_period(since, until)
    ranged = since is not None or until is not None
    title = f"cost by {by}" + (" (jobs created in range)" if ranged else "")
    if by != "day":
        books: list[periods.BookRow] | None = _read(database_url, _books, by, since, until)
        if books is not None:
            _emit_books(books, by, fmt, title, _names(database_url, by))
            return
    if by == "block":
        blocks = _read(database_url, reports.cost_by_block, since, until)
        columns = _columns(reports.BlockCostRow)
        shown = [c for c in columns if c not in NAME_AND_VERSION]
        _emit(records(blocks), columns, fmt, title, BLOCK_NOTE, shown=shown)
        return
    rows: list[reports.CostRow] = _read(database_url, reports.cost_by, by, since, until)
    columns = [by, "jobs", "jobs_without_cost", "cost"]
    data: list[dict[str, Any]] = [
        dict(zip(columns, (r.group, r.jobs, r.jobs_without_cost, r.cost), strict=True))
        for r in rows
    ]
    if fmt == "table" and data:
        totals = [sum(int(r[c] or 0) for r in data) for c in columns[1:]]
        data.append(dict(zip(columns, ("total", *totals), strict=True)))
    columns = _named(data, columns, _names(database_url, by), totalled=fmt == "table")
    _emit(data, columns, fmt, title, DAY_NOTE)


def _names(database_url: str | None, by: str) -> dict[str, str | None] | None:
    """Current workflow names when grouping by workflow, else None (no name column)."""
    from archiver.reporting import reports

    return _read(database_url, reports.workflow_names) if by == "workflow" else None


def _named(
    data: list[dict[str, Any]],
    columns: list[str],
    names: dict[str, str | None] | None,
    *,
    totalled: bool,
) -> list[str]:
    """Put ``workflow_name`` beside ``workflow``: NULL when the archive knows no name, blank on
    the total line (``totalled``: the last row is one)."""
    if names is None:
        return columns
    for index, row in enumerate(data):
        total = totalled and index == len(data) - 1
        name = "" if total else names.get(row["workflow"])
        items = list(row.items())
        row.clear()
        row.update([items[0], ("workflow_name", name), *items[1:]])
    return [columns[0], "workflow_name", *columns[1:]]


def _books(
    session: Any, by: str, since: datetime | None, until: datetime | None
) -> list[periods.BookRow] | None:
    """The books, when a month is closed; None when none is (the plain report applies)."""
    from archiver.audit import periods

    return periods.books(session, by, since, until) if periods.statements(session) else None


def _emit_books(
    rows: list[periods.BookRow],
    by: str,
    fmt: str,
    title: str,
    names: dict[str, str | None] | None,
) -> None:
    """With closed months: their frozen figures, and what moved since as adjustments."""
    columns = [by, "jobs", "jobs_without_cost", "cost", "adjustments", "total", "closed"]
    data: list[dict[str, Any]] = [
        dict(
            zip(
                columns,
                (r.group, r.jobs, r.jobs_without_cost, r.cost, r.adjustments, r.total, r.closed),
                strict=True,
            )
        )
        for r in rows
    ]
    if fmt == "table" and data:
        totals = [sum(int(r[c] or 0) for r in data) for c in columns[1:-1]]
        data.append(dict(zip(columns, ("total", *totals, None), strict=True)))
    columns = _named(data, columns, names, totalled=fmt == "table")
    note = (
        "Closed months count with their frozen statements (closed=true); what their jobs' cost "
        "moved since is booked as adjustments"
        + (" in the next open month." if by == "month" else ".")
    )
    _emit(data, columns, fmt, f"{title}, closed periods frozen", note)


@report.command("status")
@click.argument("workflow_id", required=False)
@click.argument("job_id", required=False)
@click.option("--tasks", is_flag=True, help="Tasks instead of jobs.")
@format_option("table", "csv", "json")
@settings_options("report status")
def report_status(
    workflow_id: str | None, job_id: str | None, tasks: bool, fmt: str, database_url: str | None
) -> None:
    """Time spent in each status: a summary, or one job's periods (WORKFLOW_ID JOB_ID).

    Each change happened between two polls: after prev_seen_at (last_seen_at) and by
    entered_at (left_at); the *_window_s columns say how wide that interval is.
    """
    from archiver.reporting import reports
    from archiver.reporting.render import records

    what = "tasks" if tasks else "jobs"
    if workflow_id is None:
        summary = _read(database_url, reports.status_summary, tasks=tasks)
        title = f"time in each status ({what}; durations over the periods that ended)"
        _emit(records(summary), _columns(reports.StatusSummaryRow), fmt, title)
        return
    if job_id is None:
        raise click.UsageError("give WORKFLOW_ID JOB_ID, or neither for a summary")
    periods = _read(database_url, reports.status_periods, workflow_id, job_id, tasks=tasks)
    if not periods:
        raise Abort(f"no {'task ' if tasks else ''}history for job {workflow_id}/{job_id}")
    columns = _columns(reports.StatusPeriodRow)
    if not tasks:
        columns.remove("task_id")
    data = [{c: r[c] for c in columns} for r in records(periods)]
    hidden = ("seq", "next_status", "prev_seen_at", "last_seen_at")
    shown = [c for c in columns if c not in hidden]
    title = f"status periods of {workflow_id}/{job_id} ({what})"
    _emit(data, columns, fmt, title, PRECISION_NOTE, shown=shown)


@report.command("failures")
@format_option("table", "csv", "json")
@settings_options("report failures")
def report_failures(fmt: str, database_url: str | None) -> None:
    """Failed tasks by block, version and failure type, most first (current task states)."""
    from archiver.reporting import reports
    from archiver.reporting.render import records

    rows = _read(database_url, reports.failures)
    columns = _columns(reports.FailureRow)
    shown = [c for c in columns if c not in NAME_AND_VERSION]
    _emit(records(rows), columns, fmt, "failed tasks by block", shown=shown)


@report.command("as-of")
@click.argument("timestamp", callback=_timestamp)
@format_option("table", "csv", "json")
@settings_options("report as-of")
def report_as_of(timestamp: datetime, fmt: str, database_url: str | None) -> None:
    """Every job's status, cost and progress as archived at TIMESTAMP (UTC unless it says)."""
    from archiver.reporting import reports
    from archiver.reporting.render import records

    rows = _read(database_url, reports.as_of, timestamp)
    title = f"jobs as of {timestamp.strftime('%Y-%m-%d %H:%M:%S.%f')} UTC"
    columns = _columns(reports.AsOfRow)
    _emit(records(rows), columns, fmt, title, shown=columns[:-1])


ESTIMATE_NOTE = (
    "Each job is compared with its workflow's estimate when the job was created; "
    "jobs_estimate_earliest: jobs created before the first estimate the archive recorded, "
    "compared with that one. variance_total: actual minus estimate over jobs_compared."
)
OVERRUN_NOTE = "cost_ratio: cost / estimate (none for an estimate of 0)."


def _estimates(session: Any, top: int, overruns_only: bool) -> tuple[list[Any], list[Any]]:
    from archiver.reporting import reports

    workflows = [] if overruns_only else reports.workflow_estimates(session)
    return workflows, reports.top_overruns(session, top)


@report.command("estimate")
@click.option(
    "--top",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="How many of the jobs that overran their estimate the most to list (0: none).",
)
@click.option(
    "--overruns",
    "overruns_only",
    is_flag=True,
    help="Only the jobs that overran the most (with --format csv, the way to get them).",
)
@format_option("table", "csv", "json")
@settings_options("report estimate")
def report_estimate(top: int, overruns_only: bool, fmt: str, database_url: str | None) -> None:
    """Estimate against actual cost per workflow, then the jobs that overran the most.

    A job's estimate is its workflow's as it was when the job was created (docs/reporting.md,
    "Workflows and estimates"). --format json gives {"workflows": [...], "top_overruns": [...]};
    --format csv one table: the workflows, or with --overruns the jobs.
    """
    from archiver.reporting import reports
    from archiver.reporting.render import records, sections_json

    listed = 0 if fmt == "csv" and not overruns_only else top  # CSV: one table, the workflows
    workflows, overruns = _read(database_url, _estimates, listed, overruns_only)
    w_columns = _columns(reports.WorkflowEstimateRow)
    o_columns = _columns(reports.OverrunRow)
    w_title = "estimate against actual, by workflow"
    o_title = f"top {top} overruns of the estimate at creation"
    if fmt == "json":
        sections = {"workflows": records(workflows), "top_overruns": records(overruns)}
        if overruns_only:
            del sections["workflows"]
        click.echo(sections_json(sections))
        return
    if fmt == "csv":
        if overruns_only:
            _emit(records(overruns), o_columns, fmt, o_title)
        else:
            _emit(records(workflows), w_columns, fmt, w_title)
        return
    if not overruns_only:
        shown = [c for c in w_columns if c not in ("estimate_total", "compared_estimate")]
        _emit(records(workflows), w_columns, fmt, w_title, ESTIMATE_NOTE, shown=shown)
    if top > 0 or overruns_only:
        shown = [c for c in o_columns if c not in ("created_by", "created_at")]
        _emit(records(overruns), o_columns, fmt, o_title, OVERRUN_NOTE, shown=shown)


@report.command("html")
@click.option(
    "-o",
    "--output",
    type=click.File("w", encoding="utf-8", atomic=True),
    required=True,
    help="Write the page to this file ('-': standard output).",
)
@_period_options
@settings_options("report html")
def report_html(
    output: Any, since: datetime | None, until: datetime | None, database_url: str | None
) -> None:
    """One self-contained HTML page: cost per day by workflow, jobs by status over time, and the
    top failing blocks. It opens offline: inline SVG and style, nothing fetched."""
    from archiver.reporting import html_report

    _check_period(since, until)
    page = _read(database_url, html_report.build_page, since, until)
    output.write(page)
    if output.name != "<stdout>":
        click.echo(f"report written to {output.name}", err=True)
