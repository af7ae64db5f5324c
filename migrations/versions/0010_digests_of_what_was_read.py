"""Digests of what each task and each job's validation errors were last read from

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 11:00:00.000000

A changed payload usually changes a few of its job's tasks. ``tasks.state_sha256`` keeps the
digest of the canonical JSON a task's state was last read from (and ``jobs.val_errors_sha256``
that of the job's ``val_errors`` member), so that a task of a new payload with the same digest is
recognized as archived without being typed and compared field by field
(``archiver.archive.digests``). Both are a cache of the reading, not evidence: nothing in the hash
chains covers them, and ``archiver rebuild`` does not compare them.

Existing rows get NULL, which means "unknown": such a task is read and compared as before, and
its digest is stored then (also when it is found unchanged), so an archive fills them in as its
jobs change. A later migration that rewrites typed values in ``tasks`` or ``val_errors`` must set
them to NULL again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("state_sha256", sa.String(length=64), nullable=True))
    op.add_column("jobs", sa.Column("val_errors_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "val_errors_sha256")
    op.drop_column("tasks", "state_sha256")
