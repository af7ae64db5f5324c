"""Store the history rows' chain hashes as 32 bytes instead of 64 hex characters

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 13:30:00.000000

``prev_sha256`` and ``row_sha256`` of ``job_snapshots``, ``job_versions``, ``task_versions`` and
``job_changes`` are SHA-256 digests written as lowercase hex: 128 bytes of every history row,
about a tenth of the archive's size (``python -m bench.size``). They become the digests' 32
bytes (BLOB on SQLite, ``bytea`` on PostgreSQL, ``VARBINARY(64)`` on MySQL/MariaDB); the archiver
reads and writes them as the same hex (``archiver.sqltypes.Digest``), so what a hash covers, how
it is computed and what ``archiver verify`` compares do not change, and no row is re-hashed: the
chains an archive had, and every anchor taken of them, stay valid. In SQL the hex is
``lower(hex(row_sha256))`` on SQLite and MariaDB and ``encode(row_sha256, 'hex')`` on PostgreSQL.

Only a value that is exactly 64 lowercase hex characters is converted; anything else (a row
someone wrote by hand) is kept as its own bytes, which never read back as the hash computed for
the row, so ``verify`` reports such a row after the migration as it did before. The job's head
(``jobs.chain_sha256``) and anchors keep their hex: one value per job, not per row. The downgrade
writes every 32-byte value back as hex (so a hand-written value of exactly 32 characters comes
back as the hex of its bytes: still not the row's hash, still reported).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHAINED = ("job_snapshots", "job_versions", "task_versions", "job_changes")
COLUMNS = ("prev_sha256", "row_sha256")
HEX = re.compile(r"[0-9a-f]{64}")


def _unhex(value: Any) -> Any:
    """SQLite has no unhex() before 3.41: the migration's own, for hash text only."""
    return bytes.fromhex(value) if isinstance(value, str) and HEX.fullmatch(value) else value


def upgrade() -> None:
    bind = op.get_bind()
    name = bind.dialect.name
    if name == "sqlite":
        bind.connection.driver_connection.create_function(  # type: ignore[union-attr]
            "archiver_unhex", 1, _unhex, deterministic=True
        )
        _views_unbound(True)
    try:
        _upgrade(name)
    finally:  # the connection may be the caller's: never hand it back in the legacy mode
        if name == "sqlite":
            _views_unbound(False)


def _upgrade(name: str) -> None:
    for table in CHAINED:
        if name == "sqlite":
            sets = ", ".join(f"{c} = archiver_unhex({c})" for c in COLUMNS)
            op.execute(f"UPDATE {table} SET {sets}")
            with op.batch_alter_table(table) as batch:
                for column in COLUMNS:
                    batch.alter_column(column, type_=sa.LargeBinary(), existing_type=sa.String(64))
        elif name == "postgresql":  # one ALTER: the table is rewritten once, not per column
            changes = ", ".join(
                f"ALTER COLUMN {c} TYPE bytea USING CASE WHEN {c} ~ '^[0-9a-f]{{64}}$' "
                f"THEN decode({c}, 'hex') ELSE convert_to({c}, 'UTF8') END"
                for c in COLUMNS
            )
            op.execute(f"ALTER TABLE {table} {changes}")
        else:  # MySQL / MariaDB: the text's bytes first (one table copy), then hex decoded
            changes = ", ".join(f"MODIFY {c} VARBINARY(64) NULL" for c in COLUMNS)
            op.execute(f"ALTER TABLE {table} {changes}")
            sets = ", ".join(
                # matched as ASCII text: MySQL 8.0.22+ refuses REGEXP on a binary string
                f"{c} = IF(CONVERT({c} USING ascii) COLLATE ascii_bin REGEXP '^[0-9a-f]{{64}}$', "
                f"UNHEX({c}), {c})"
                for c in COLUMNS
            )
            op.execute(f"UPDATE {table} SET {sets}")


def _views_unbound(on: bool) -> None:
    """SQLite: a batch copy renames the new table into place, which re-reads every view that
    names it and fails while a view names a table of the copy under way; the legacy rename
    leaves the views as they are (they name the table, which is there again after)."""
    op.execute(f"PRAGMA legacy_alter_table = {'ON' if on else 'OFF'}")


def downgrade() -> None:
    name = op.get_bind().dialect.name
    if name == "sqlite":
        _views_unbound(True)
    try:
        _downgrade(name)
    finally:
        if name == "sqlite":
            _views_unbound(False)


def _downgrade(name: str) -> None:
    for table in CHAINED:
        if name == "sqlite":  # hex first: the copy casts the values to the column's new type
            sets = ", ".join(
                f"{c} = CASE WHEN typeof({c}) = 'blob' AND length({c}) = 32 "
                f"THEN lower(hex({c})) ELSE {c} END"
                for c in COLUMNS
            )
            op.execute(f"UPDATE {table} SET {sets}")
            with op.batch_alter_table(table) as batch:
                for column in COLUMNS:
                    batch.alter_column(column, type_=sa.String(64), existing_type=sa.LargeBinary())
        elif name == "postgresql":
            changes = ", ".join(
                f"ALTER COLUMN {c} TYPE varchar(64) USING CASE WHEN octet_length({c}) = 32 "
                f"THEN encode({c}, 'hex') ELSE convert_from({c}, 'UTF8') END"
                for c in COLUMNS
            )
            op.execute(f"ALTER TABLE {table} {changes}")
        else:
            sets = ", ".join(f"{c} = IF(LENGTH({c}) = 32, LOWER(HEX({c})), {c})" for c in COLUMNS)
            op.execute(f"UPDATE {table} SET {sets}")
            changes = ", ".join(f"MODIFY {c} VARCHAR(64) NULL" for c in COLUMNS)
            op.execute(f"ALTER TABLE {table} {changes}")
