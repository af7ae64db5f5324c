"""Name the hash-chain encoding of every history row (chain_version)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 07:30:00.000000

Every chained row gets ``chain_version``, the encoding its ``row_sha256`` was computed with
(``archiver.archive.chain``), so a later encoding can cover a new field while the rows written
before it keep verifying with theirs. Every row already archived was written with encoding 1.

The column is added NOT NULL with a server default of 1, which fills the existing rows without
rewriting the table; the archiver stamps every row it writes, so the default is then dropped,
except on SQLite, which can only drop a default by rebuilding the table, and a rebuild is refused
while the reporting views read it. There the default stays (the models do not declare one; a row
the archiver did not write is caught by its hash either way).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHAINED = ("job_snapshots", "job_versions", "task_versions", "job_changes")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for name in CHAINED:
        op.add_column(
            name,
            sa.Column("chain_version", sa.SmallInteger(), nullable=False, server_default="1"),
        )
        if not sqlite:
            op.alter_column(
                name, "chain_version", existing_type=sa.SmallInteger(), server_default=None
            )


def downgrade() -> None:
    for name in CHAINED:
        op.drop_column(name, "chain_version")
