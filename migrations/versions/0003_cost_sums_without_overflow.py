"""Sum and subtract costs in the reporting views without 64-bit overflow

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:00:00.000000

A cost is any 64-bit integer, so a difference of two costs or a sum of several can pass 2**63:
0002's views failed then (PostgreSQL ``bigint out of range``, MariaDB error 1690, SQLite
``integer overflow``). This revision recreates the views that subtract or sum costs
(``v_cost_by_day``, ``v_cost_by_month``, ``v_cost_movements``, ``v_cost_recorded_by_day``, and
``v_cost_after_terminal``, which reads ``v_cost_movements``) with exact arithmetic:

* PostgreSQL and MariaDB compute in ``NUMERIC(38, 0)`` / ``DECIMAL(38, 0)``: exact, and wide
  enough for 10**18 rows of the largest cost.
* SQLite has no integer wider than 64 bits, and ``total()`` is a float. Each cost is split into
  its billions (``cost / 1000000000``) and the rest (``cost % 1000000000``); those parts are
  subtracted and summed without overflow, then put back together: an INTEGER when the result
  fits in 64 bits (always, for real costs), else the exact value as decimal TEXT such as
  ``'18446744073709551614'``. Such a TEXT sorts after every number in SQLite, so order or
  compare those rows in the tool that reads them (``int()`` in Python reads them exactly).

The SQL is frozen here, as in 0002; the downgrade restores 0002's definitions, also frozen here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (sign, expression): a sum of signed 64-bit integer expressions, e.g. new cost minus old cost
Terms = Sequence[tuple[str, str]]
BILLION = 1_000_000_000
# 2**63 - 1 = 9223372036 * BILLION + 854775807: where SQLite's 64-bit integers end
TOP_BILLIONS, TOP_REST = 9_223_372_036, 854_775_807


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
    """SQLite: exact sums through billions and remainders (see the module docstring)."""

    def day(self, ts: str) -> str:
        return f"substr({ts}, 1, 10)"

    def month(self, ts: str) -> str:
        return f"substr({ts}, 1, 7)"

    def integer(self, expr: str) -> str:
        return f"CAST({expr} AS INTEGER)"

    def parts(
        self, name: str, terms: Terms, *, total: bool = False, when: str | None = None
    ) -> str:
        """Select-list items an inner query computes so that ``value(name)`` is exact outside.

        ``total``: the SUM over the group (0 when empty) of the terms where ``when`` holds;
        else the terms of the row itself.
        """
        billions = _aggregate(_signed(terms, lambda e: f"({e}) / {BILLION}"), total, when)
        rest = _aggregate(_signed(terms, lambda e: f"({e}) % {BILLION}"), total, when)
        return f"{billions} AS {name}_bn, {rest} AS {name}_rest"

    def value(self, name: str) -> str:
        """``{name}_bn * 10**9 + {name}_rest``: INTEGER when it fits 64 bits, else exact TEXT.

        The carry makes the rest smaller than a billion, then a borrow gives both parts the same
        sign, so the TEXT is the billions followed by the rest's nine digits.
        """
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

    def create(self, name: str, body: str) -> str:
        return f"CREATE VIEW {name} AS {body}"


class _Postgres(_Dialect):
    number = "NUMERIC(38, 0)"

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


class _MariaDB(_Postgres):
    number = "DECIMAL(38, 0)"

    def day(self, ts: str) -> str:
        return f"DATE_FORMAT({ts}, '%Y-%m-%d')"

    def month(self, ts: str) -> str:
        return f"DATE_FORMAT({ts}, '%Y-%m')"

    def integer(self, expr: str) -> str:
        return f"CAST({expr} AS SIGNED)"

    def create(self, name: str, body: str) -> str:
        # INVOKER: a reader needs SELECT on the tables, and no view depends on who created it.
        return f"CREATE SQL SECURITY INVOKER VIEW {name} AS {body}"


# --- the views as of this revision ---------------------------------------------------------------


def _cost_by(d: _Dialect, period: str) -> str:
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


def v_cost_by_day(d: _Dialect) -> str:
    return _cost_by(d, "created_day")


def v_cost_by_month(d: _Dialect) -> str:
    return _cost_by(d, "created_month")


def v_cost_movements(d: _Dialect) -> str:
    """Every recorded cost change; the state before it is the version it closed.

    ``pv.valid_from < c.observed_at`` picks that version even when a zero-length version (two
    payloads archived at the same instant) also ends at ``observed_at``.
    """
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


def v_cost_recorded_by_day(d: _Dialect) -> str:
    """Sums of the deltas, from the costs themselves (a delta may be TEXT on SQLite)."""
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


def v_cost_after_terminal(_d: _Dialect) -> str:
    return """
SELECT workflow_id, job_id, status_before, finished_at_before, observed_at, observed_day,
    old_cost, new_cost, delta
FROM v_cost_movements
WHERE after_terminal = 1"""


# --- the same views as 0002 created them, for the downgrade --------------------------------------


def _cost_by_0002(d: _Dialect, period: str) -> str:
    return f"""
SELECT {period}, workflow_id, created_by,
    COUNT(*) AS jobs,
    COUNT(*) - COUNT(cost) AS jobs_without_cost,
    {d.integer("COALESCE(SUM(cost), 0)")} AS cost
FROM v_job_cost
GROUP BY {period}, workflow_id, created_by"""


def v_cost_by_day_0002(d: _Dialect) -> str:
    return _cost_by_0002(d, "created_day")


def v_cost_by_month_0002(d: _Dialect) -> str:
    return _cost_by_0002(d, "created_month")


def v_cost_movements_0002(d: _Dialect) -> str:
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


def v_cost_recorded_by_day_0002(d: _Dialect) -> str:
    return f"""
SELECT observed_day, workflow_id,
    COUNT(*) AS movements,
    {d.integer("SUM(CASE WHEN delta > 0 THEN delta ELSE 0 END)")} AS increases,
    {d.integer("SUM(CASE WHEN delta < 0 THEN delta ELSE 0 END)")} AS decreases,
    {d.integer("SUM(delta)")} AS net,
    {d.integer("SUM(CASE WHEN after_terminal = 1 THEN delta ELSE 0 END)")} AS after_terminal_net
FROM v_cost_movements
GROUP BY observed_day, workflow_id"""


View = Callable[[_Dialect], str]
# In creation order: a view comes after the views it reads.
VIEWS: tuple[tuple[str, View, View], ...] = (
    ("v_cost_by_day", v_cost_by_day, v_cost_by_day_0002),
    ("v_cost_by_month", v_cost_by_month, v_cost_by_month_0002),
    ("v_cost_movements", v_cost_movements, v_cost_movements_0002),
    ("v_cost_recorded_by_day", v_cost_recorded_by_day, v_cost_recorded_by_day_0002),
    ("v_cost_after_terminal", v_cost_after_terminal, v_cost_after_terminal),
)


def _dialect() -> _Dialect:
    name = op.get_bind().dialect.name
    if name == "postgresql":
        return _Postgres()
    if name in ("mysql", "mariadb"):
        return _MariaDB()
    return _Dialect()


def _recreate(pick: Callable[[tuple[str, View, View]], View]) -> None:
    dialect = _dialect()
    for name, _new, _old in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
    for entry in VIEWS:
        op.execute(dialect.create(entry[0], pick(entry)(dialect)))


def upgrade() -> None:
    _recreate(lambda entry: entry[1])


def downgrade() -> None:
    _recreate(lambda entry: entry[2])
