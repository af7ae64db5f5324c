"""Hash chains on the history, cost ledger view, closed periods, body digests

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 15:30:00.000000

Adds the chain columns (``archiver.archive.chain``) to the four history tables and the head to
``jobs``, then chains the rows already archived, job by job, in the order they were written (time,
then snapshot, job version, task versions, changes, then id). The rows are chained with encoding
v1, frozen in ``archiver.archive.chain`` (``V1``), which is why this revision imports it: asked for
by name, never the archiver's current encoding, so a later encoding cannot change what this revision
writes (0006 then records these rows as v1). The columns it reads are named here, typed by the
package's column types so values read back the way the archiver wrote them.

Columns are added (no table rebuild), so the reporting views that read these tables stay valid on
SQLite.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from archiver.sqltypes import BigIntPK, LongText, UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HISTORY = ("job_snapshots", "job_versions", "task_versions", "job_changes")
# the time a row was written at, by table, and its rank within one archive call
WRITTEN_AT = {
    "job_snapshots": ("fetched_at", 0),
    "job_versions": ("valid_from", 1),
    "task_versions": ("valid_from", 2),
    "job_changes": ("observed_at", 3),
}


# Every cost movement as a signed delta (from 0003's exact v_cost_movements), with the job's
# status before and after it, whether it re-priced a job that had ended, and whether it came
# after the job's creation month was closed (an adjustment). Same SQL on every database.
V_COST_LEDGER = """
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


def table_options() -> dict[str, Any]:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return {}
    mariadb = bind.dialect.name == "mariadb" or getattr(bind.dialect, "is_mariadb", False)
    collation = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
    return {"mysql_charset": "utf8mb4", "mysql_collate": collation}


def upgrade() -> None:
    for name in HISTORY:
        op.add_column(name, sa.Column("chain_seq", sa.BigInteger(), nullable=True))
        op.add_column(name, sa.Column("prev_sha256", sa.String(length=64), nullable=True))
        op.add_column(name, sa.Column("row_sha256", sa.String(length=64), nullable=True))
    op.add_column("jobs", sa.Column("chain_seq", sa.BigInteger(), nullable=True))
    op.add_column("jobs", sa.Column("chain_sha256", sa.String(length=64), nullable=True))
    # the digest of the latest body as received (a poll's fast path); NULL until the next one
    op.add_column("jobs", sa.Column("body_sha256", sa.String(length=64), nullable=True))
    _chain_existing_rows()
    for name in HISTORY:
        op.create_index(
            op.f(f"ix_{name}_workflow_id_job_id_chain_seq"),
            name,
            ["workflow_id", "job_id", "chain_seq"],
            unique=True,
        )
    _create_period_tables()
    _create_anchor_table()
    op.execute(f"CREATE VIEW v_cost_ledger AS {V_COST_LEDGER}")


def downgrade() -> None:
    op.execute("DROP VIEW v_cost_ledger")
    op.drop_table("chain_anchors")
    op.drop_table("period_events")
    op.drop_table("period_statement_lines")
    op.drop_table("period_statements")
    for name in HISTORY:
        op.drop_index(op.f(f"ix_{name}_workflow_id_job_id_chain_seq"), table_name=name)
        for column in ("row_sha256", "prev_sha256", "chain_seq"):
            op.drop_column(name, column)
    op.drop_column("jobs", "body_sha256")
    op.drop_column("jobs", "chain_sha256")
    op.drop_column("jobs", "chain_seq")


def _create_period_tables() -> None:
    op.create_table(
        "period_statements",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("period_month", sa.String(length=7), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=False),
        sa.Column("closed_by", sa.String(length=255), nullable=False),
        sa.Column("jobs", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Numeric(38, 0), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("reopened_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_period_statements")),
        **table_options(),
    )
    op.create_index(
        op.f("ix_period_statements_period_month"), "period_statements", ["period_month"]
    )
    op.create_table(
        "period_statement_lines",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("statement_id", BigIntPK, nullable=False),
        sa.Column("dimension", sa.String(length=16), nullable=False),
        sa.Column("dim_key", sa.String(length=600), nullable=False),
        sa.Column("jobs", sa.BigInteger(), nullable=False),
        sa.Column("jobs_without_cost", sa.BigInteger(), nullable=False),
        sa.Column("cost", sa.Numeric(38, 0), nullable=False),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["period_statements.id"],
            name=op.f("fk_period_statement_lines_statement_id_period_statements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_period_statement_lines")),
        sa.UniqueConstraint(
            "statement_id",
            "dimension",
            "dim_key",
            name=op.f("uq_period_statement_lines_statement_id_dimension_dim_key"),
        ),
        **table_options(),
    )
    op.create_table(
        "period_events",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("period_month", sa.String(length=7), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("statement_id", BigIntPK, nullable=True),
        sa.Column("statement_sha256", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["statement_id"],
            ["period_statements.id"],
            name=op.f("fk_period_events_statement_id_period_statements"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_period_events")),
        **table_options(),
    )
    op.create_index(
        op.f("ix_period_events_period_month_occurred_at"),
        "period_events",
        ["period_month", "occurred_at"],
    )


def _create_anchor_table() -> None:
    op.create_table(
        "chain_anchors",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("jobs", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("heads", LongText, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chain_anchors")),
        **table_options(),
    )
    op.create_index(op.f("ix_chain_anchors_digest"), "chain_anchors", ["digest"])


def _chain_existing_rows() -> None:
    """Chain what earlier versions archived, one job (one transaction's worth) at a time."""
    from archiver.archive.chain import V1, Chain
    from archiver.models import (
        CHANGES,
        JOB_VERSIONS,
        JOBS,
        SNAPSHOTS,
        TASK_VERSIONS,
    )

    tables = {
        "job_snapshots": SNAPSHOTS,
        "job_versions": JOB_VERSIONS,
        "task_versions": TASK_VERSIONS,
        "job_changes": CHANGES,
    }
    bind = op.get_bind()
    jobs = bind.execute(sa.select(JOBS.c.workflow_id, JOBS.c.job_id)).all()
    for wf, job_id in jobs:
        per_table: list[list[tuple[Any, int, int, str, dict[str, Any]]]] = []
        for name, t in tables.items():
            time_column, rank = WRITTEN_AT[name]
            columns = [t.c.id, *(t.c[c] for c in V1[name])]
            query = (
                sa.select(*columns)
                .where(t.c.workflow_id == wf, t.c.job_id == job_id)
                .order_by(t.c.id)
            )
            per_table.append(
                [
                    (r[time_column], rank, r["id"], name, dict(r))
                    for r in bind.execute(query).mappings()
                ]
            )
        # each table stays in id (write) order; the tables interleave by time, then rank
        rows = heapq.merge(*per_table, key=lambda r: (r[0], r[1]))
        chain = Chain(version=1)
        updates: dict[str, list[dict[str, Any]]] = {name: [] for name in tables}
        for _, _, row_id, name, row in rows:
            chain.link(name, row)
            updates[name].append(
                {
                    "b_id": row_id,
                    "b_seq": row["chain_seq"],
                    "b_prev": row["prev_sha256"],
                    "b_hash": row["row_sha256"],
                }
            )
        for name, params in updates.items():
            if params:
                t = tables[name]
                bind.execute(
                    sa.update(t)
                    .where(t.c.id == sa.bindparam("b_id"))
                    .values(
                        chain_seq=sa.bindparam("b_seq"),
                        # hex text, as this revision stores it (today's models bind bytes: 0012)
                        prev_sha256=sa.bindparam("b_prev", type_=sa.String(64)),
                        row_sha256=sa.bindparam("b_hash", type_=sa.String(64)),
                    ),
                    params,
                )
        bind.execute(
            sa.update(JOBS)
            .where(JOBS.c.workflow_id == wf, JOBS.c.job_id == job_id)
            .values(chain_seq=chain.seq or None, chain_sha256=chain.head if chain.seq else None)
        )
