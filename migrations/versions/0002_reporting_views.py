"""Create the reporting views

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 09:00:00.000000

The views answer the questions of ``docs/reporting.md`` the same way on SQLite, PostgreSQL and
MariaDB. The SQL is written once; the few expressions that differ between databases (UTC day and
month labels, seconds between two times, integer casts, concatenation) come from ``_Dialect``.
The SQL is frozen here, in the revision, rather than imported from the package: a migration
describes the schema of its own day. A later revision that changes a view recreates it in full.

A later revision that batch-alters a table these views read must drop the views first and create
them again afterwards: SQLite checks every view when batch mode renames the rebuilt table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class _Dialect:
    """Expressions spelled differently per database; the defaults are SQLite's.

    SQLite stores times as text ``YYYY-MM-DD HH:MM:SS.ffffff`` in UTC, so a day is a prefix.
    """

    def day(self, ts: str) -> str:
        return f"substr({ts}, 1, 10)"

    def month(self, ts: str) -> str:
        return f"substr({ts}, 1, 7)"

    def concat(self, *parts: str) -> str:
        return " || ".join(parts)

    def integer(self, expr: str) -> str:
        return f"CAST({expr} AS INTEGER)"

    def seconds(self, start: str, end: str) -> str:
        """Seconds from start to end, to the millisecond; NULL when either is NULL."""

        def epoch(ts: str) -> str:  # whole seconds, then the six fraction digits
            return f"CAST(strftime('%s', {ts}) AS INTEGER)"

        def micros(ts: str) -> str:
            return f"CAST(substr({ts}, 21, 6) AS INTEGER)"

        whole = f"({epoch(end)} - {epoch(start)})"
        fraction = f"({micros(end)} - {micros(start)}) / 1000000.0"
        return f"ROUND({whole} + {fraction}, 3)"

    def create(self, name: str, body: str) -> str:
        return f"CREATE VIEW {name} AS {body}"


class _Postgres(_Dialect):
    """timestamptz: labels are taken at UTC whatever the session's TimeZone."""

    def day(self, ts: str) -> str:
        return f"to_char({ts} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def month(self, ts: str) -> str:
        return f"to_char({ts} AT TIME ZONE 'UTC', 'YYYY-MM')"

    def integer(self, expr: str) -> str:
        return f"CAST({expr} AS BIGINT)"

    def seconds(self, start: str, end: str) -> str:
        return f"ROUND(CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS NUMERIC), 3)"


class _MariaDB(_Dialect):
    """DATETIME(6) holding UTC; ``||`` means OR here, so concatenation is CONCAT."""

    def day(self, ts: str) -> str:
        return f"DATE_FORMAT({ts}, '%Y-%m-%d')"

    def month(self, ts: str) -> str:
        return f"DATE_FORMAT({ts}, '%Y-%m')"

    def concat(self, *parts: str) -> str:
        return f"CONCAT({', '.join(parts)})"

    def integer(self, expr: str) -> str:
        return f"CAST({expr} AS SIGNED)"

    def seconds(self, start: str, end: str) -> str:
        return f"ROUND(TIMESTAMPDIFF(MICROSECOND, {start}, {end}) / 1000000, 3)"

    def create(self, name: str, body: str) -> str:
        # INVOKER: a reader needs SELECT on the tables, and no view depends on who created it.
        return f"CREATE SQL SECURITY INVOKER VIEW {name} AS {body}"


def _block(d: _Dialect, t: str = "") -> str:
    """``name@version``; an unknown part reads ``unknown`` so the label is never NULL."""
    return d.concat(
        f"COALESCE({t}block_name, 'unknown')", "'@'", f"COALESCE({t}block_version, 'unknown')"
    )


# --- question 1: cost by creation day and month --------------------------------------------------


def v_job_cost(d: _Dialect) -> str:
    return f"""
SELECT j.workflow_id, j.job_id, j.created_by, j.created_at,
    COALESCE({d.day("j.created_at")}, 'unknown') AS created_day,
    COALESCE({d.month("j.created_at")}, 'unknown') AS created_month,
    j.status, j.status_class, j.cost
FROM jobs j"""


def _cost_by(d: _Dialect, period: str) -> str:
    return f"""
SELECT {period}, workflow_id, created_by,
    COUNT(*) AS jobs,
    COUNT(*) - COUNT(cost) AS jobs_without_cost,
    {d.integer("COALESCE(SUM(cost), 0)")} AS cost
FROM v_job_cost
GROUP BY {period}, workflow_id, created_by"""


def v_cost_by_day(d: _Dialect) -> str:
    return _cost_by(d, "created_day")


def v_cost_by_month(d: _Dialect) -> str:
    return _cost_by(d, "created_month")


def v_job_block_cost(d: _Dialect) -> str:
    """One row per job and block it used: the job's whole cost, not a share (see the docs)."""
    return f"""
SELECT j.workflow_id, j.job_id, j.created_by, j.created_at, j.created_day, j.created_month,
    t.block_name, t.block_version, {_block(d, "t.")} AS block,
    COUNT(*) AS tasks, j.cost AS job_cost
FROM v_job_cost j
JOIN tasks t ON t.workflow_id = j.workflow_id AND t.job_id = j.job_id
WHERE t.removed_at IS NULL
GROUP BY j.workflow_id, j.job_id, j.created_by, j.created_at, j.created_day, j.created_month,
    j.cost, t.block_name, t.block_version"""


# --- questions 2 and 3: cost as recorded by the change log ---------------------------------------


def v_cost_movements(d: _Dialect) -> str:
    """Every recorded cost change; the state before it is the version it closed.

    ``pv.valid_from < c.observed_at`` picks that version even when a zero-length version (two
    payloads archived at the same instant) also ends at ``observed_at``.
    """
    old, new = d.integer("c.old_value"), d.integer("c.new_value")
    return f"""
SELECT c.workflow_id, c.job_id, c.observed_at,
    {d.day("c.observed_at")} AS observed_day,
    {d.month("c.observed_at")} AS observed_month,
    {old} AS old_cost, {new} AS new_cost,
    COALESCE({new}, 0) - COALESCE({old}, 0) AS delta,
    pv.status AS status_before,
    CASE WHEN pv.is_terminal THEN 1 ELSE 0 END AS after_terminal,
    pv.finished_at AS finished_at_before
FROM job_changes c
LEFT JOIN job_versions pv
    ON pv.workflow_id = c.workflow_id AND pv.job_id = c.job_id
    AND pv.valid_to = c.observed_at AND pv.valid_from < c.observed_at
WHERE c.entity = 'job' AND c.field = 'cost'"""


def v_cost_recorded_by_day(d: _Dialect) -> str:
    return f"""
SELECT observed_day, workflow_id,
    COUNT(*) AS movements,
    {d.integer("SUM(CASE WHEN delta > 0 THEN delta ELSE 0 END)")} AS increases,
    {d.integer("SUM(CASE WHEN delta < 0 THEN delta ELSE 0 END)")} AS decreases,
    {d.integer("SUM(delta)")} AS net,
    {d.integer("SUM(CASE WHEN after_terminal = 1 THEN delta ELSE 0 END)")} AS after_terminal_net
FROM v_cost_movements
GROUP BY observed_day, workflow_id"""


def v_cost_after_terminal(_d: _Dialect) -> str:
    return """
SELECT workflow_id, job_id, status_before, finished_at_before, observed_at, observed_day,
    old_cost, new_cost, delta
FROM v_cost_movements
WHERE after_terminal = 1"""


# --- question 5: time in each status -------------------------------------------------------------


def _status_periods(d: _Dialect, versions: str, current: str, keys: Sequence[str]) -> str:
    """Runs of consecutive versions with the same status (gaps-and-islands).

    A run also ends where the versions are not contiguous (a task removed, then back). The
    sightings around each change come from the applied snapshots: every distinct payload is one.
    """
    part = ", ".join(keys)
    window = f"OVER (PARTITION BY {part} ORDER BY version)"

    def on(a: str, b: str) -> str:
        return " AND ".join(f"{a}.{k} = {b}.{k}" for k in keys)

    def seen(before: str) -> str:
        return (
            "(SELECT MAX(s.fetched_at) FROM job_snapshots s"
            " WHERE s.workflow_id = p.workflow_id AND s.job_id = p.job_id"
            f" AND s.applied = TRUE AND s.fetched_at < {before})"
        )

    return f"""
WITH marked AS (
    SELECT {part}, version, status, valid_from, valid_to,
        CASE
            WHEN LAG(version) {window} IS NULL THEN 1
            WHEN LAG(valid_to) {window} <> valid_from THEN 1
            WHEN status = LAG(status) {window} THEN 0
            WHEN status IS NULL AND LAG(status) {window} IS NULL THEN 0
            ELSE 1
        END AS starts
    FROM {versions}
),
numbered AS (
    SELECT {part}, version, valid_from, valid_to,
        SUM(starts) OVER (PARTITION BY {part} ORDER BY version
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS seq
    FROM marked
),
spans AS (
    SELECT {part}, seq,
        MIN(version) AS first_version, MAX(version) AS last_version,
        MIN(valid_from) AS entered_at,
        CASE WHEN COUNT(valid_to) = COUNT(*) THEN MAX(valid_to) END AS left_at
    FROM numbered
    GROUP BY {part}, seq
),
sightings AS (
    SELECT p.*, {seen("p.entered_at")} AS prev_seen_at,
        CASE WHEN p.left_at IS NULL THEN c.last_seen_at ELSE {seen("p.left_at")} END
            AS last_seen_at
    FROM spans p
    JOIN {current} c ON {on("c", "p")}
)
SELECT {", ".join(f"p.{k}" for k in keys)}, {d.integer("p.seq")} AS seq,
    v.status, v.status_class, p.entered_at, p.left_at, n.status AS next_status,
    {d.seconds("p.entered_at", "p.left_at")} AS duration_s,
    p.prev_seen_at, p.last_seen_at,
    {d.seconds("p.prev_seen_at", "p.entered_at")} AS entry_window_s,
    {d.seconds("p.last_seen_at", "p.left_at")} AS exit_window_s
FROM sightings p
JOIN {versions} v ON {on("v", "p")} AND v.version = p.first_version
LEFT JOIN {versions} n
    ON {on("n", "p")} AND n.version = p.last_version + 1 AND n.valid_from = p.left_at"""


def v_job_status_periods(d: _Dialect) -> str:
    return _status_periods(d, "job_versions", "jobs", ("workflow_id", "job_id"))


def v_task_status_periods(d: _Dialect) -> str:
    return _status_periods(d, "task_versions", "tasks", ("workflow_id", "job_id", "task_id"))


# --- question 6: failures, task durations, overruns ----------------------------------------------


def v_task_failures(d: _Dialect) -> str:
    """Tasks whose current status is a failure, by block, version and failure type."""
    failure = "COALESCE(NULLIF(t.failure_type, ''), '(none)')"
    return f"""
SELECT block_name, block_version, {_block(d)} AS block, failure_type,
    {d.integer("SUM(tasks)")} AS failed_tasks, COUNT(*) AS jobs
FROM (
    SELECT t.block_name, t.block_version, {failure} AS failure_type, t.workflow_id, t.job_id,
        COUNT(*) AS tasks
    FROM tasks t
    WHERE t.removed_at IS NULL AND t.status_class = 'failed'
    GROUP BY t.block_name, t.block_version, {failure}, t.workflow_id, t.job_id
) f
GROUP BY block_name, block_version, failure_type"""


def v_block_task_stats(d: _Dialect) -> str:
    """Current tasks per block; durations over finished tasks that report ``time_taken``."""
    done = "CASE WHEN is_terminal THEN time_taken_s END"

    def count_if(condition: str) -> str:
        return d.integer(f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)")

    return f"""
SELECT block_name, block_version, {_block(d)} AS block,
    COUNT(*) AS tasks,
    {count_if("is_terminal")} AS finished_tasks,
    {count_if("status_class = 'succeeded'")} AS succeeded_tasks,
    {count_if("status_class = 'failed'")} AS failed_tasks,
    {count_if("status_class = 'cancelled'")} AS cancelled_tasks,
    COUNT({done}) AS timed_tasks,
    ROUND(AVG({done}), 3) AS avg_time_taken_s,
    MIN({done}) AS min_time_taken_s,
    MAX({done}) AS max_time_taken_s
FROM tasks
WHERE removed_at IS NULL
GROUP BY block_name, block_version"""


def v_job_overruns(_d: _Dialect) -> str:
    return """
SELECT workflow_id, job_id, created_by, status, status_class, estimated_duration,
    time_taken_s, time_taken_s - estimated_duration AS overrun_s
FROM jobs
WHERE time_taken_s > estimated_duration"""


# --- question 7: validation errors ---------------------------------------------------------------


def v_val_error_summary(d: _Dialect) -> str:
    return f"""
SELECT component_name, err,
    {d.integer("SUM(errors)")} AS errors,
    {d.integer("SUM(open_errors)")} AS open_errors,
    {d.integer("SUM(errors) - SUM(open_errors)")} AS resolved_errors,
    COUNT(*) AS jobs,
    MIN(first_seen_at) AS first_seen_at,
    MAX(last_seen_at) AS last_seen_at
FROM (
    SELECT component_name, err, workflow_id, job_id,
        COUNT(*) AS errors,
        SUM(CASE WHEN resolved_at IS NULL THEN 1 ELSE 0 END) AS open_errors,
        MIN(first_seen_at) AS first_seen_at,
        MAX(last_seen_at) AS last_seen_at
    FROM val_errors
    GROUP BY component_name, err, workflow_id, job_id
) e
GROUP BY component_name, err"""


def v_open_val_errors(_d: _Dialect) -> str:
    return """
SELECT workflow_id, job_id, fingerprint, component_name, source_component, target_component,
    err, reason, occurrences, first_seen_at, last_seen_at
FROM val_errors
WHERE resolved_at IS NULL"""


# --- question 8: what the archiver saw of a job, and when it failed ------------------------------


def v_job_poll_events(_d: _Dialect) -> str:
    """Failed fetches and distinct payloads per job (a poll that saw nothing new leaves no row)."""
    return """
SELECT e.workflow_id, e.job_id, e.occurred_at AS event_at, 'error' AS event_kind,
    e.sync_run_id, e.reason, e.http_status, e.error_code, e.message, NULL AS sha256
FROM sync_errors e
WHERE e.job_id IS NOT NULL
UNION ALL
SELECT s.workflow_id, s.job_id, s.fetched_at,
    CASE WHEN s.applied THEN 'new_payload' ELSE 'stale_payload' END,
    NULL, NULL, NULL, NULL, NULL, s.sha256
FROM job_snapshots s"""


def v_job_poll_daily(d: _Dialect) -> str:
    day = d.day("event_at")

    def count_of(kind: str) -> str:
        return d.integer(f"SUM(CASE WHEN event_kind = '{kind}' THEN 1 ELSE 0 END)")

    return f"""
SELECT workflow_id, job_id, {day} AS event_day,
    {count_of("new_payload")} AS new_payloads,
    {count_of("stale_payload")} AS stale_payloads,
    {count_of("error")} AS errors,
    MIN(event_at) AS first_event_at,
    MAX(event_at) AS last_event_at
FROM v_job_poll_events
GROUP BY workflow_id, job_id, {day}"""


# In creation order: a view comes after the views it reads.
VIEWS: tuple[Callable[[_Dialect], str], ...] = (
    v_job_cost,
    v_cost_by_day,
    v_cost_by_month,
    v_job_block_cost,
    v_cost_movements,
    v_cost_recorded_by_day,
    v_cost_after_terminal,
    v_job_status_periods,
    v_task_status_periods,
    v_task_failures,
    v_block_task_stats,
    v_job_overruns,
    v_val_error_summary,
    v_open_val_errors,
    v_job_poll_events,
    v_job_poll_daily,
)


def _dialect() -> _Dialect:
    name = op.get_bind().dialect.name
    if name == "postgresql":
        return _Postgres()
    if name in ("mysql", "mariadb"):
        return _MariaDB()
    return _Dialect()


def upgrade() -> None:
    dialect = _dialect()
    for view in VIEWS:
        op.execute(dialect.create(view.__name__, view(dialect)))


def downgrade() -> None:
    for view in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {view.__name__}")
