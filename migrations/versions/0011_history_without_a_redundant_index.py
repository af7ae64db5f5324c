"""Drop job_changes' (workflow_id, job_id, observed_at) index: the chain index serves its queries

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 13:00:00.000000

Every query the product runs or documents on ``job_changes`` that names one job (``archiver
history``, the README's cost history of one job, ``archiver verify`` walking a chain, looking a
row up by its hash) is served by the unique ``(workflow_id, job_id, chain_seq)`` index as well:
it finds the job's rows, and ``archiver history``'s order (``observed_at, id``) sorts one job's
rows after (PostgreSQL already sorted them: it read the index as a bitmap). Checked with SQLite's
EXPLAIN QUERY PLAN and PostgreSQL's EXPLAIN on an archive of a polled lifecycle (``python -m
bench.size``). Queries by field (``v_cost_movements``, the finance views) keep ``(entity,
field)``; queries by time keep ``(observed_at)``. The dropped index was the largest of the four:
about 0.13x the raw bytes of the payloads held on SQLite.

No row changes and no hash is involved, so ``archiver verify`` reads the same before and after.
The downgrade builds the index again.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_job_changes_workflow_id_job_id_observed_at"


def upgrade() -> None:
    with op.batch_alter_table("job_changes", schema=None) as batch_op:
        batch_op.drop_index(INDEX)


def downgrade() -> None:
    with op.batch_alter_table("job_changes", schema=None) as batch_op:
        batch_op.create_index(INDEX, ["workflow_id", "job_id", "observed_at"], unique=False)
