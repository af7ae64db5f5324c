"""Workflow names in the cost views; estimate against actual

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 10:00:00.000000

Every cost view gains ``workflow_name``: the workflow's current name from ``workflows`` (a LEFT
JOIN, so NULL for a workflow the listing endpoints never described, never another one's name). It
is the last column, so a reader that selects columns by position still gets the ones it knew.
The views that read others are dropped and created again in dependency order.

Two views are new (docs/reporting.md, "Workflows and estimates"):

* ``v_job_estimate``: each job with the estimate its workflow had when the job was created (the
  ``workflow_versions`` row with ``valid_from <= created_at < valid_to``, ``valid_to`` NULL for the
  current one). A job created before the first version the archive recorded gets the earliest
  version's estimate, marked ``estimate_basis = 'earliest_known'``; no version at all, no
  ``created_at``, or a creation time between a closed version and the next gives NULL and
  ``'unknown'``. ``overrun`` is cost minus estimate, ``cost_ratio`` cost / estimate (NULL when the
  estimate is 0).
* ``v_workflow_estimate``: the same per workflow, with totals, means and the variance.

Sums and differences are exact as in 0003 (NUMERIC/DECIMAL on PostgreSQL and MariaDB, billions
and remainders on SQLite). The SQL is frozen here; the downgrade restores the definitions of 0008
(0002, 0003 and 0004's), also frozen here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (sign, expression): a sum of signed 64-bit integer expressions, e.g. cost minus estimate
Terms = Sequence[tuple[str, str]]
BILLION = 1_000_000_000
TOP_BILLIONS, TOP_REST = 9_223_372_036, 854_775_807  # 2**63 - 1 in billions and the rest


def _signed(terms: Terms, spell: Callable[[str], str]) -> str:
    text = " ".join(f"{sign} {spell(expr)}" for sign, expr in terms)
    return text.removeprefix("+ ")


def _aggregate(expr: str, total: bool, when: str | None) -> str:
    if not total:
        return expr
    if when is not None:
        expr = f"CASE WHEN {when} THEN {expr} ELSE 0 END"
    return f"COALESCE(SUM({expr}), 0)"


class _Dialect:
    """SQLite, as 0003: exact sums through billions and remainders."""

    def day(self, ts: str) -> str:
        return f"substr({ts}, 1, 10)"

    def month(self, ts: str) -> str:
        return f"substr({ts}, 1, 7)"

    def concat(self, *parts: str) -> str:
        return " || ".join(parts)

    def integer(self, expr: str) -> str:
        return f"CAST({expr} AS INTEGER)"

    def parts(
        self, name: str, terms: Terms, *, total: bool = False, when: str | None = None
    ) -> str:
        billions = _aggregate(_signed(terms, lambda e: f"({e}) / {BILLION}"), total, when)
        rest = _aggregate(_signed(terms, lambda e: f"({e}) % {BILLION}"), total, when)
        return f"{billions} AS {name}_bn, {rest} AS {name}_rest"

    def value(self, name: str) -> str:
        bn = f"({name}_bn + {name}_rest / {BILLION})"
        rest = f"({name}_rest % {BILLION})"
        borrow = (
            f"(CASE WHEN {bn} > 0 AND {rest} < 0 THEN 1"
            f" WHEN {bn} < 0 AND {rest} > 0 THEN -1 ELSE 0 END)"
        )
        high, low = f"({bn} - {borrow})", f"({rest} + {borrow} * {BILLION})"
        fits = (
            f"{high} BETWEEN {-TOP_BILLIONS + 1} AND {TOP_BILLIONS - 1}"
            f" OR ({high} = {TOP_BILLIONS} AND {low} <= {TOP_REST})"
            f" OR ({high} = {-TOP_BILLIONS} AND {low} >= {-TOP_REST - 1})"
        )
        exact = f"CAST({high} AS TEXT) || printf('%09d', abs({low}))"
        return f"CASE WHEN {fits} THEN {high} * {BILLION} + {low} ELSE {exact} END"

    def ratio(self, numerator: str, denominator: str, scale: int) -> str:
        """numerator / denominator rounded to ``scale`` places; NULL when the denominator is 0.

        SQLite has no decimal type: a REAL, which ``archiver report estimate`` does not use (it
        divides the exact integers itself).
        """
        return f"ROUND(CAST({numerator} AS REAL) / NULLIF({denominator}, 0), {scale})"

    def create(self, name: str, body: str) -> str:
        return f"CREATE VIEW {name} AS {body}"


class _Postgres(_Dialect):
    number = "NUMERIC(38, 0)"
    wide = "NUMERIC"

    def day(self, ts: str) -> str:
        return f"to_char({ts} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"

    def month(self, ts: str) -> str:
        return f"to_char({ts} AT TIME ZONE 'UTC', 'YYYY-MM')"

    def integer(self, expr: str) -> str:
        return f"CAST({expr} AS BIGINT)"

    def parts(
        self, name: str, terms: Terms, *, total: bool = False, when: str | None = None
    ) -> str:
        exact = _signed(terms, lambda e: f"CAST({e} AS {self.number})")
        return f"{_aggregate(exact, total, when)} AS {name}"

    def value(self, name: str) -> str:
        return f"CAST({name} AS {self.number})"

    def ratio(self, numerator: str, denominator: str, scale: int) -> str:
        return f"ROUND(CAST({numerator} AS {self.wide}) / NULLIF({denominator}, 0), {scale})"


class _MariaDB(_Postgres):
    number = "DECIMAL(38, 0)"
    wide = "DECIMAL(65, 10)"  # ten places before the division: the rounding is then exact enough

    def day(self, ts: str) -> str:
        return f"DATE_FORMAT({ts}, '%Y-%m-%d')"

    def month(self, ts: str) -> str:
        return f"DATE_FORMAT({ts}, '%Y-%m')"

    def concat(self, *parts: str) -> str:
        return f"CONCAT({', '.join(parts)})"

    def integer(self, expr: str) -> str:
        return f"CAST({expr} AS SIGNED)"

    def create(self, name: str, body: str) -> str:
        # INVOKER: a reader needs SELECT on the tables, and no view depends on who created it.
        return f"CREATE SQL SECURITY INVOKER VIEW {name} AS {body}"


def _block(d: _Dialect, t: str = "") -> str:
    return d.concat(
        f"COALESCE({t}block_name, 'unknown')", "'@'", f"COALESCE({t}block_version, 'unknown')"
    )


NAMED = "LEFT JOIN workflows w ON w.workflow_id = {0}.workflow_id"


# --- the cost views with workflow_name ----------------------------------------------------------


def v_job_cost(d: _Dialect) -> str:
    return f"""
SELECT j.workflow_id, j.job_id, j.created_by, j.created_at,
    COALESCE({d.day("j.created_at")}, 'unknown') AS created_day,
    COALESCE({d.month("j.created_at")}, 'unknown') AS created_month,
    j.status, j.status_class, j.cost, w.name AS workflow_name
FROM jobs j
{NAMED.format("j")}"""


def _cost_by(d: _Dialect, period: str) -> str:
    return f"""
SELECT g.{period}, g.workflow_id, g.created_by, g.jobs, g.jobs_without_cost,
    {d.value("g.cost")} AS cost, w.name AS workflow_name
FROM (
    SELECT {period}, workflow_id, created_by,
        COUNT(*) AS jobs,
        COUNT(*) - COUNT(cost) AS jobs_without_cost,
        {d.parts("cost", [("+", "cost")], total=True)}
    FROM v_job_cost
    GROUP BY {period}, workflow_id, created_by
) g
{NAMED.format("g")}"""


def v_cost_by_day(d: _Dialect) -> str:
    return _cost_by(d, "created_day")


def v_cost_by_month(d: _Dialect) -> str:
    return _cost_by(d, "created_month")


def v_job_block_cost(d: _Dialect) -> str:
    """One row per job and block it used: the job's whole cost, not a share (see the docs)."""
    return f"""
SELECT b.workflow_id, b.job_id, b.created_by, b.created_at, b.created_day, b.created_month,
    b.block_name, b.block_version, b.block, b.tasks, b.job_cost, w.name AS workflow_name
FROM (
    SELECT j.workflow_id, j.job_id, j.created_by, j.created_at, j.created_day, j.created_month,
        t.block_name, t.block_version, {_block(d, "t.")} AS block,
        COUNT(*) AS tasks, j.cost AS job_cost
    FROM v_job_cost j
    JOIN tasks t ON t.workflow_id = j.workflow_id AND t.job_id = j.job_id
    WHERE t.removed_at IS NULL
    GROUP BY j.workflow_id, j.job_id, j.created_by, j.created_at, j.created_day, j.created_month,
        j.cost, t.block_name, t.block_version
) b
{NAMED.format("b")}"""


def v_cost_movements(d: _Dialect) -> str:
    """Every recorded cost change; the state before it is the version it closed (as 0003)."""
    old, new = d.integer("c.old_value"), d.integer("c.new_value")
    delta = d.parts("delta", [("+", f"COALESCE({new}, 0)"), ("-", f"COALESCE({old}, 0)")])
    return f"""
SELECT m.workflow_id, m.job_id, m.observed_at, m.observed_day, m.observed_month, m.old_cost,
    m.new_cost, {d.value("m.delta")} AS delta,
    m.status_before, m.after_terminal, m.finished_at_before, w.name AS workflow_name
FROM (
    SELECT c.workflow_id, c.job_id, c.observed_at,
        {d.day("c.observed_at")} AS observed_day,
        {d.month("c.observed_at")} AS observed_month,
        {old} AS old_cost, {new} AS new_cost,
        {delta},
        pv.status AS status_before,
        CASE WHEN pv.is_terminal THEN 1 ELSE 0 END AS after_terminal,
        pv.finished_at AS finished_at_before
    FROM job_changes c
    LEFT JOIN job_versions pv
        ON pv.workflow_id = c.workflow_id AND pv.job_id = c.job_id
        AND pv.valid_to = c.observed_at AND pv.valid_from < c.observed_at
    WHERE c.entity = 'job' AND c.field = 'cost'
) m
{NAMED.format("m")}"""


def v_cost_recorded_by_day(d: _Dialect) -> str:
    new, old = "COALESCE(new_cost, 0)", "COALESCE(old_cost, 0)"
    delta = [("+", new), ("-", old)]
    sums = {
        "increases": f"{new} > {old}",
        "decreases": f"{new} < {old}",
        "net": None,
        "after_terminal_net": "after_terminal = 1",
    }
    inner = ",\n        ".join(
        d.parts(name, delta, total=True, when=when) for name, when in sums.items()
    )
    outer = ",\n    ".join(f"{d.value(f'g.{name}')} AS {name}" for name in sums)
    return f"""
SELECT g.observed_day, g.workflow_id, g.movements,
    {outer},
    w.name AS workflow_name
FROM (
    SELECT observed_day, workflow_id,
        COUNT(*) AS movements,
        {inner}
    FROM v_cost_movements
    GROUP BY observed_day, workflow_id
) g
{NAMED.format("g")}"""


def v_cost_after_terminal(_d: _Dialect) -> str:
    return """
SELECT workflow_id, job_id, status_before, finished_at_before, observed_at, observed_day,
    old_cost, new_cost, delta, workflow_name
FROM v_cost_movements
WHERE after_terminal = 1"""


def v_cost_ledger(_d: _Dialect) -> str:
    return """
SELECT m.workflow_id, m.job_id, jc.created_by, jc.created_month,
    m.observed_at, m.observed_day, m.observed_month,
    m.old_cost, m.new_cost, m.delta,
    m.status_before, v.status AS status_after, m.after_terminal,
    CASE WHEN ps.id IS NULL THEN 0 ELSE 1 END AS after_close,
    ps.period_month AS closed_month, m.workflow_name
FROM v_cost_movements m
JOIN v_job_cost jc ON jc.workflow_id = m.workflow_id AND jc.job_id = m.job_id
LEFT JOIN job_versions v
    ON v.workflow_id = m.workflow_id AND v.job_id = m.job_id
    AND v.valid_from = m.observed_at AND (v.valid_to IS NULL OR v.valid_to > m.observed_at)
LEFT JOIN period_statements ps
    ON ps.period_month = jc.created_month AND ps.reopened_at IS NULL
    AND ps.closed_at < m.observed_at"""


# --- estimate against actual ---------------------------------------------------------------------

# The version of the job's workflow that was current when the job was created, else (the job is
# older than every version recorded) the earliest version; NULL without created_at.
_ESTIMATE_VERSION = """COALESCE(
            (SELECT MAX(a.version) FROM workflow_versions a
             WHERE a.workflow_id = j.workflow_id AND a.valid_from <= j.created_at
                AND (a.valid_to IS NULL OR a.valid_to > j.created_at)),
            (SELECT MIN(e.version) FROM workflow_versions e
             WHERE e.workflow_id = j.workflow_id AND NOT EXISTS (
                SELECT 1 FROM workflow_versions b
                WHERE b.workflow_id = j.workflow_id AND b.valid_from <= j.created_at)))"""


def v_job_estimate(d: _Dialect) -> str:
    both = "cost IS NOT NULL AND estimate_at_creation IS NOT NULL"
    overrun = d.parts("overrun", [("+", "j.cost"), ("-", "v.estimated_cost")])
    return f"""
SELECT workflow_id, workflow_name, job_id, created_by, created_at, status, status_class,
    estimate_version, estimate_basis, estimate_at_creation, cost,
    CASE WHEN {both} THEN {d.value("x.overrun")} END AS overrun,
    CASE WHEN {both} THEN {d.ratio("cost", "estimate_at_creation", 4)} END AS cost_ratio
FROM (
    SELECT j.workflow_id, j.job_id, j.created_by, j.created_at, j.status, j.status_class,
        v.version AS estimate_version,
        CASE
            WHEN v.version IS NULL THEN 'unknown'
            WHEN v.valid_from <= j.created_at THEN 'at_creation'
            ELSE 'earliest_known'
        END AS estimate_basis,
        v.estimated_cost AS estimate_at_creation, j.cost,
        {overrun},
        w.name AS workflow_name
    FROM jobs j
    {NAMED.format("j")}
    LEFT JOIN workflow_versions v
        ON v.workflow_id = j.workflow_id AND j.created_at IS NOT NULL
        AND v.version = {_ESTIMATE_VERSION}
) x"""


def v_workflow_estimate(d: _Dialect) -> str:
    both = "cost IS NOT NULL AND estimate_at_creation IS NOT NULL"

    def count_if(condition: str) -> str:
        return d.integer(f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)")

    sums = ",\n        ".join(
        (
            d.parts("estimate_total", [("+", "estimate_at_creation")], total=True),
            d.parts("actual_total", [("+", "cost")], total=True),
            d.parts("compared_estimate", [("+", "estimate_at_creation")], total=True, when=both),
            d.parts(
                "variance_total",
                [("+", "cost"), ("-", "estimate_at_creation")],
                total=True,
                when=both,
            ),
        )
    )
    return f"""
SELECT g.workflow_id, w.name AS workflow_name, w.estimated_cost AS current_estimate,
    g.jobs, g.jobs_with_cost, g.jobs_with_estimate, g.jobs_estimate_earliest, g.jobs_compared,
    {d.value("g.estimate_total")} AS estimate_total,
    {d.ratio(d.value("g.estimate_total"), "g.jobs_with_estimate", 2)} AS mean_estimate,
    {d.value("g.actual_total")} AS actual_total,
    {d.ratio(d.value("g.actual_total"), "g.jobs_with_cost", 2)} AS mean_actual,
    {d.value("g.compared_estimate")} AS compared_estimate,
    {d.value("g.variance_total")} AS variance_total,
    {d.ratio(f"100 * ({d.value('g.variance_total')})", d.value("g.compared_estimate"), 2)}
        AS variance_pct
FROM (
    SELECT workflow_id,
        COUNT(*) AS jobs,
        COUNT(cost) AS jobs_with_cost,
        COUNT(estimate_at_creation) AS jobs_with_estimate,
        {count_if("estimate_basis = 'earliest_known'")} AS jobs_estimate_earliest,
        {count_if(both)} AS jobs_compared,
        {sums}
    FROM v_job_estimate
    GROUP BY workflow_id
) g
{NAMED.format("g")}"""


# --- the definitions of 0008, for the downgrade --------------------------------------------------


def v_job_cost_0008(d: _Dialect) -> str:
    return f"""
SELECT j.workflow_id, j.job_id, j.created_by, j.created_at,
    COALESCE({d.day("j.created_at")}, 'unknown') AS created_day,
    COALESCE({d.month("j.created_at")}, 'unknown') AS created_month,
    j.status, j.status_class, j.cost
FROM jobs j"""


def _cost_by_0008(d: _Dialect, period: str) -> str:
    return f"""
SELECT {period}, workflow_id, created_by, jobs, jobs_without_cost, {d.value("cost")} AS cost
FROM (
    SELECT {period}, workflow_id, created_by,
        COUNT(*) AS jobs,
        COUNT(*) - COUNT(cost) AS jobs_without_cost,
        {d.parts("cost", [("+", "cost")], total=True)}
    FROM v_job_cost
    GROUP BY {period}, workflow_id, created_by
) g"""


def v_cost_by_day_0008(d: _Dialect) -> str:
    return _cost_by_0008(d, "created_day")


def v_cost_by_month_0008(d: _Dialect) -> str:
    return _cost_by_0008(d, "created_month")


def v_job_block_cost_0008(d: _Dialect) -> str:
    return f"""
SELECT j.workflow_id, j.job_id, j.created_by, j.created_at, j.created_day, j.created_month,
    t.block_name, t.block_version, {_block(d, "t.")} AS block,
    COUNT(*) AS tasks, j.cost AS job_cost
FROM v_job_cost j
JOIN tasks t ON t.workflow_id = j.workflow_id AND t.job_id = j.job_id
WHERE t.removed_at IS NULL
GROUP BY j.workflow_id, j.job_id, j.created_by, j.created_at, j.created_day, j.created_month,
    j.cost, t.block_name, t.block_version"""


def v_cost_movements_0008(d: _Dialect) -> str:
    old, new = d.integer("c.old_value"), d.integer("c.new_value")
    delta = d.parts("delta", [("+", f"COALESCE({new}, 0)"), ("-", f"COALESCE({old}, 0)")])
    return f"""
SELECT workflow_id, job_id, observed_at, observed_day, observed_month, old_cost, new_cost,
    {d.value("delta")} AS delta,
    status_before, after_terminal, finished_at_before
FROM (
    SELECT c.workflow_id, c.job_id, c.observed_at,
        {d.day("c.observed_at")} AS observed_day,
        {d.month("c.observed_at")} AS observed_month,
        {old} AS old_cost, {new} AS new_cost,
        {delta},
        pv.status AS status_before,
        CASE WHEN pv.is_terminal THEN 1 ELSE 0 END AS after_terminal,
        pv.finished_at AS finished_at_before
    FROM job_changes c
    LEFT JOIN job_versions pv
        ON pv.workflow_id = c.workflow_id AND pv.job_id = c.job_id
        AND pv.valid_to = c.observed_at AND pv.valid_from < c.observed_at
    WHERE c.entity = 'job' AND c.field = 'cost'
) m"""


def v_cost_recorded_by_day_0008(d: _Dialect) -> str:
    new, old = "COALESCE(new_cost, 0)", "COALESCE(old_cost, 0)"
    delta = [("+", new), ("-", old)]
    sums = {
        "increases": f"{new} > {old}",
        "decreases": f"{new} < {old}",
        "net": None,
        "after_terminal_net": "after_terminal = 1",
    }
    inner = ",\n        ".join(
        d.parts(name, delta, total=True, when=when) for name, when in sums.items()
    )
    outer = ",\n    ".join(f"{d.value(name)} AS {name}" for name in sums)
    return f"""
SELECT observed_day, workflow_id, movements,
    {outer}
FROM (
    SELECT observed_day, workflow_id,
        COUNT(*) AS movements,
        {inner}
    FROM v_cost_movements
    GROUP BY observed_day, workflow_id
) g"""


def v_cost_after_terminal_0008(_d: _Dialect) -> str:
    return """
SELECT workflow_id, job_id, status_before, finished_at_before, observed_at, observed_day,
    old_cost, new_cost, delta
FROM v_cost_movements
WHERE after_terminal = 1"""


def v_cost_ledger_0008(_d: _Dialect) -> str:
    return """
SELECT m.workflow_id, m.job_id, jc.created_by, jc.created_month,
    m.observed_at, m.observed_day, m.observed_month,
    m.old_cost, m.new_cost, m.delta,
    m.status_before, v.status AS status_after, m.after_terminal,
    CASE WHEN ps.id IS NULL THEN 0 ELSE 1 END AS after_close,
    ps.period_month AS closed_month
FROM v_cost_movements m
JOIN v_job_cost jc ON jc.workflow_id = m.workflow_id AND jc.job_id = m.job_id
LEFT JOIN job_versions v
    ON v.workflow_id = m.workflow_id AND v.job_id = m.job_id
    AND v.valid_from = m.observed_at AND (v.valid_to IS NULL OR v.valid_to > m.observed_at)
LEFT JOIN period_statements ps
    ON ps.period_month = jc.created_month AND ps.reopened_at IS NULL
    AND ps.closed_at < m.observed_at"""


View = Callable[[_Dialect], str]
# In creation order: a view comes after the views it reads. (name, this revision's, 0008's)
VIEWS: tuple[tuple[str, View, View], ...] = (
    ("v_job_cost", v_job_cost, v_job_cost_0008),
    ("v_cost_by_day", v_cost_by_day, v_cost_by_day_0008),
    ("v_cost_by_month", v_cost_by_month, v_cost_by_month_0008),
    ("v_job_block_cost", v_job_block_cost, v_job_block_cost_0008),
    ("v_cost_movements", v_cost_movements, v_cost_movements_0008),
    ("v_cost_recorded_by_day", v_cost_recorded_by_day, v_cost_recorded_by_day_0008),
    ("v_cost_after_terminal", v_cost_after_terminal, v_cost_after_terminal_0008),
    ("v_cost_ledger", v_cost_ledger, v_cost_ledger_0008),
)
NEW_VIEWS: tuple[tuple[str, View], ...] = (
    ("v_job_estimate", v_job_estimate),
    ("v_workflow_estimate", v_workflow_estimate),
)


def _dialect() -> _Dialect:
    name = op.get_bind().dialect.name
    if name == "postgresql":
        return _Postgres()
    if name in ("mysql", "mariadb"):
        return _MariaDB()
    return _Dialect()


def _drop_all() -> None:
    for name, *_ in reversed(NEW_VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for name, *_ in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")


def _create(dialect: _Dialect, name: str, body: str) -> None:
    # 0004 created v_cost_ledger with a plain CREATE VIEW: it keeps that (on MariaDB, DEFINER)
    plain = name == "v_cost_ledger"
    op.execute(f"CREATE VIEW {name} AS {body}" if plain else dialect.create(name, body))


def upgrade() -> None:
    dialect = _dialect()
    _drop_all()
    for name, view, _old in VIEWS:
        _create(dialect, name, view(dialect))
    for name, view in NEW_VIEWS:
        _create(dialect, name, view(dialect))


def downgrade() -> None:
    dialect = _dialect()
    _drop_all()
    for name, _new, old in VIEWS:
        _create(dialect, name, old(dialect))
