"""``archiver report html``: one self-contained HTML page of charts over the archive.

The page needs nothing but itself: the charts are inline SVG drawn here (``svg_charts``), the
style is inline, and a Content-Security-Policy of ``default-src 'none'`` forbids every fetch. Its
one script, allowed by its hash, only writes layout facts (bars drawn, policy violations) into
``data-layout`` on the root element, for tests and curious readers; the charts do not need it.

Like ``report cost``, ``since`` (inclusive) and ``until`` (exclusive) keep the jobs created in
between, in every section. Functions take a session and never commit.
"""

from __future__ import annotations

import base64
import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from archiver import __version__
from archiver.models import Job, JobVersion, Task
from archiver.reporting import reports
from archiver.reporting.charts import Series, colors, esc, horizontal_bars, number, stacked_bars
from archiver.statuses import CLASSES
from archiver.wording import counted

MAX_DAYS = 120  # of the status chart: the most recent ones (one small query per day)
TOP_WORKFLOWS = 8  # drawn apart in the cost chart; the others are summed into one series
TOP_BLOCKS = 10
STATUS_COLORS = {
    "queued": "#bab0ac",
    "running": "#4e79a7",
    "succeeded": "#59a14f",
    "failed": "#e15759",
    "cancelled": "#f28e2b",
    "unknown": "#b07aa1",
}


# --- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatusDay:
    day: date
    jobs: dict[str, int]  # status class -> jobs in it at the end of the day (UTC)


@dataclass(frozen=True)
class BlockFailures:
    block: str  # name@version, 'unknown' for a missing part
    failed_tasks: int
    jobs: int


def _job_filter(since: datetime | None, until: datetime | None) -> list[ColumnElement[bool]]:
    return reports.created_between(Job.__table__.c.created_at, since, until)


def _same_job(other: type[JobVersion] | type[Task]) -> ColumnElement[bool]:
    return and_(Job.workflow_id == other.workflow_id, Job.job_id == other.job_id)


def status_per_day(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> tuple[list[StatusDay], bool]:
    """Jobs in each status class at the end of each UTC day, from the first archived version
    to the day the archive last saw a job; and whether older days were left out (MAX_DAYS).

    A day counts the jobs the archive had seen by its end, as ``report as-of`` would.
    """
    v = JobVersion
    where = _job_filter(since, until)
    first, last = session.execute(
        select(func.min(v.valid_from), func.max(Job.last_seen_at))
        .join(Job, _same_job(v))
        .where(*where)
    ).one()
    if first is None:
        return [], False
    days = [first.date() + timedelta(n) for n in range((last.date() - first.date()).days + 1)]
    cut = len(days) > MAX_DAYS
    result = []
    for day in days[-MAX_DAYS:]:
        end = datetime.combine(day + timedelta(1), time(), UTC)
        rows = session.execute(
            select(v.status_class, func.count())
            .join(Job, _same_job(v))
            .where(*where, v.valid_from < end, or_(v.valid_to.is_(None), v.valid_to >= end))
            .group_by(v.status_class)
        )
        counts: dict[str, int] = defaultdict(int)
        for klass, n in rows:
            counts[klass or "unknown"] += int(n)
        result.append(StatusDay(day, dict(counts)))
    return result, cut


def failing_blocks(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> list[BlockFailures]:
    """Current failed tasks by block (name@version), most first, as ``report failures``."""
    t = Task
    per_job = (
        select(t.block_name, t.block_version, func.count().label("tasks"))
        .join(Job, _same_job(t))
        .where(t.removed_at.is_(None), t.status_class == "failed", *_job_filter(since, until))
        .group_by(t.block_name, t.block_version, t.workflow_id, t.job_id)
        .subquery()
    )
    rows = session.execute(
        select(
            per_job.c.block_name, per_job.c.block_version, func.sum(per_job.c.tasks), func.count()
        ).group_by(per_job.c.block_name, per_job.c.block_version)
    )
    result = [
        BlockFailures(f"{name or 'unknown'}@{version or 'unknown'}", int(tasks), int(jobs))
        for name, version, tasks, jobs in rows
    ]
    return sorted(result, key=lambda r: (-r.failed_tasks, r.block))


# --- page ----------------------------------------------------------------------------------------

PROBE = """(function () {
  var violations = [];
  function facts() {
    var charts = {};
    document.querySelectorAll("svg[data-chart]").forEach(function (svg) {
      var box = svg.getBoundingClientRect(), bars = svg.querySelectorAll(".bar"), drawn = 0;
      bars.forEach(function (bar) {
        var r = bar.getBoundingClientRect();
        if (r.width > 0 && r.height > 0) { drawn += 1; }
      });
      charts[svg.dataset.chart] = {bars: bars.length, drawn: drawn,
        width: Math.round(box.width), height: Math.round(box.height)};
    });
    document.documentElement.dataset.layout =
      JSON.stringify({charts: charts, violations: violations});
  }
  document.addEventListener("securitypolicyviolation", function (e) {
    violations.push(e.violatedDirective + " " + e.blockedURI);
    facts();
  });
  document.addEventListener("DOMContentLoaded", facts);
})();"""
_PROBE_HASH = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_PROBE_HASH}'; base-uri 'none'; form-action 'none'"
)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 960px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta, .note { color: #555; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; margin-top: 8px; }
th, td { border-bottom: 1px solid #eee; padding: 3px 10px; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
svg { display: block; max-width: 100%; height: auto; }
"""


def _table(headers: list[str], rows: list[list[object]]) -> str:
    numeric = [all(isinstance(r[i], int) for r in rows) and rows != [] for i in range(len(headers))]

    def cell(tag: str, i: int, value: object) -> str:
        text = number(value) if isinstance(value, int) else str(value)
        return f"<{tag}{' class=n' if numeric[i] else ''}>{esc(text)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(anchor: str, title: str, chart: str | None, note: str, table: str) -> str:
    body = chart or '<p class="note">Nothing in the archive matches.</p>'
    details = f"<details><summary>The numbers</summary>{table}</details>" if chart else ""
    return (
        f'<section id="{anchor}"><h2>{esc(title)}</h2>{body}'
        f'<p class="note">{esc(note)}</p>{details}</section>'
    )


def _cost_section(rows: list[reports.DailyCostRow]) -> str:
    days = sorted({r.day for r in rows}, key=lambda d: (d == "unknown", d))
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        totals[r.workflow_id] += abs(r.cost)
    ranked = sorted(totals, key=lambda w: (-totals[w], w))
    shown, rest = ranked[:TOP_WORKFLOWS], ranked[TOP_WORKFLOWS:]
    other = counted(len(rest), "other workflow") if rest else ""
    names = shown + ([other] if rest else [])
    cells: dict[tuple[str, str], int] = defaultdict(int)
    for r in rows:
        cells[(r.workflow_id if r.workflow_id in shown else other, r.day)] += r.cost
    palette = colors(names)
    known = {r.workflow_id: r.workflow_name for r in rows if r.workflow_name}
    series = [
        Series(n, [cells[(n, d)] for d in days], c, f"{known[n]} ({n})" if n in known else None)
        for n, c in zip(names, palette, strict=True)
    ]
    chart = (
        stacked_bars("cost", "Cost per day of job creation", days, series, "cost") if rows else None
    )
    table = _table(
        ["created (UTC day)", "workflow", "workflow name", "jobs", "jobs without cost", "cost"],
        [
            [r.day, r.workflow_id, r.workflow_name or "", r.jobs, r.jobs_without_cost, r.cost]
            for r in rows
        ],
    )
    note = (
        "A job's current cost, on the UTC day of its created_at ('unknown': none), as "
        "archiver report cost --by day; a workflow is named by its current name where the "
        "archive knows one. Negative costs are drawn below the axis."
    )
    if rest:
        note += f" The {TOP_WORKFLOWS} workflows of largest cost are drawn apart."
    return _section("cost", "Cost per day by workflow", chart, note, table)


def _status_section(days: list[StatusDay], cut: bool) -> str:
    seen = {k for d in days for k in d.jobs}
    classes = [k for k in CLASSES if k in seen] + sorted(seen - set(CLASSES))
    labels = [d.day.isoformat() for d in days]
    palette = colors(classes, STATUS_COLORS)
    series = [
        Series(k, [d.jobs.get(k, 0) for d in days], c)
        for k, c in zip(classes, palette, strict=True)
    ]
    chart = (
        stacked_bars("status", "Jobs in each status class", labels, series, ("job", "jobs"))
        if days
        else None
    )
    table = _table(
        ["day (UTC)", *classes],
        [[d.day.isoformat(), *(d.jobs.get(k, 0) for k in classes)] for d in days],
    )
    note = "Jobs in each status class at the end of each UTC day, as the archive knew them then."
    if cut:
        note += f" Only the last {MAX_DAYS} days are shown."
    return _section("status", "Jobs by status over time", chart, note, table)


def _failure_section(blocks: list[BlockFailures]) -> str:
    top = blocks[:TOP_BLOCKS]
    labels, values = [b.block for b in top], [b.failed_tasks for b in top]
    chart = (
        horizontal_bars(
            "failures", "Failed tasks by block", labels, values, ("failed task", "failed tasks")
        )
        if top
        else None
    )
    table = _table(
        ["block", "failed tasks", "jobs"], [[b.block, b.failed_tasks, b.jobs] for b in blocks]
    )
    note = (
        f"Tasks whose current status is a failure, by block name@version; the top {TOP_BLOCKS} "
        "are drawn (archiver report failures adds the failure type)."
    )
    return _section("failures", "Top failing blocks", chart, note, table)


def build_page(
    session: Session,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> str:
    """The whole page, as text."""
    now = now or datetime.now(UTC)
    costs = reports.daily_cost_by_workflow(session, since, until)
    days, cut = status_per_day(session, since, until)
    blocks = failing_blocks(session, since, until)
    jobs = sum(r.jobs for r in costs)
    scope = "all jobs" if since is None and until is None else "jobs created"
    if since is not None:
        scope += f" from {since.isoformat()}"
    if until is not None:
        scope += f" before {until.isoformat()}"
    stamp = now.strftime("%Y-%m-%d %H:%M:%S")
    meta = f"{scope}: {jobs:,} · generated {stamp} UTC by job-archiver {__version__}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>job-archiver report</title>"
        f"<style>{STYLE}</style><script>{PROBE}</script></head>\n<body>"
        f'<h1>job-archiver report</h1><p class="meta">{esc(meta)}</p>\n'
        + _cost_section(costs)
        + "\n"
        + _status_section(days, cut)
        + "\n"
        + _failure_section(blocks)
        + "\n</body></html>\n"
    )
