"""Index jobs by the digest of their latest body

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 18:00:00.000000

Archiving now recognizes a body byte-identical to the one archived for its job by looking its
SHA-256 up in ``jobs.body_sha256``, for a whole batch of bodies in one query, before decoding any
of them: a file ingest does not know a body's job until it is decoded, so the lookup is by
digest, and without this index it would read every job once per batch.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_jobs_body_sha256"), "jobs", ["body_sha256"])


def downgrade() -> None:
    op.drop_index(op.f("ix_jobs_body_sha256"), table_name="jobs")
