"""Store SQLite times in the form the tool prints (YYYY-MM-DDTHH:MM:SS.ffffffZ)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 08:00:00.000000

SQLite has no time type: a time is text, and ``valid_from <= '…'`` compares text. The archive
stored ``2026-10-01 10:00:00.000000`` while the tool prints ``2026-10-01T10:00:00.000000Z``
(JSON, CSV, change-log values), so a time copied from the tool's output compared a ``T`` with
a space and silently answered with the current state instead of the state at that time. From
this revision on SQLite stores the printed form (``archiver.sqltypes.SQLITE_FORMAT``): fixed
width, so text order is still time order, and the reporting views' ``substr`` day and month
labels, ``strftime('%s', …)`` and six-digit fraction at position 21 read it unchanged.

Every ``UTCDateTime`` column is rewritten in place, one UPDATE per table. The columns are
listed here, frozen as of this revision, not read from today's models. PostgreSQL and MariaDB
store real timestamp types, so this is a no-op there. The downgrade writes the old form back.
A time without fraction digits (never written by the archiver, but possible by hand) gets six.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every UTCDateTime column at this revision, by table.
TIME_COLUMNS: dict[str, tuple[str, ...]] = {
    "chain_anchors": ("created_at",),
    "ingest_problems": ("observed_at",),
    "job_changes": ("observed_at",),
    "job_snapshots": ("fetched_at",),
    "job_versions": (
        "valid_from",
        "valid_to",
        "created_at",
        "updated_at",
        "finished_at",
        "exec_created_at",
        "exec_updated_at",
    ),
    "jobs": (
        "first_seen_at",
        "last_seen_at",
        "last_changed_at",
        "created_at",
        "updated_at",
        "finished_at",
        "exec_created_at",
        "exec_updated_at",
    ),
    "period_statements": ("closed_at", "reopened_at"),
    "sync_runs": ("started_at", "finished_at"),
    "task_versions": (
        "valid_from",
        "valid_to",
        "created_at",
        "updated_at",
        "finished_at",
        "recv_time",
        "send_time",
        "block_inf_start_time",
        "block_inf_end_time",
    ),
    "tasks": (
        "first_seen_at",
        "last_seen_at",
        "removed_at",
        "created_at",
        "updated_at",
        "finished_at",
        "recv_time",
        "send_time",
        "block_inf_start_time",
        "block_inf_end_time",
    ),
    "tracked_jobs": (
        "added_at",
        "next_poll_at",
        "last_polled_at",
        "last_error_at",
        "terminal_since",
        "lease_expires_at",
    ),
    "val_errors": ("first_seen_at", "last_seen_at", "resolved_at"),
    "period_events": ("occurred_at",),
    "sync_errors": ("occurred_at",),
}

# LIKE patterns: ``_`` is any one character, enough to tell the fixed-width forms apart.
OLD = "'____-__-__ __:__:__.______'"
OLD_WHOLE_SECONDS = "'____-__-__ __:__:__'"
NEW = "'____-__-__T__:__:__.______Z'"


def _to_new(c: str) -> str:
    return (
        f"CASE WHEN {c} LIKE {OLD} THEN substr({c}, 1, 10) || 'T' || substr({c}, 12) || 'Z'"
        f" WHEN {c} LIKE {OLD_WHOLE_SECONDS}"
        f" THEN substr({c}, 1, 10) || 'T' || substr({c}, 12) || '.000000Z'"
        f" ELSE {c} END"
    )


def _to_old(c: str) -> str:
    return (
        f"CASE WHEN {c} LIKE {NEW} THEN substr({c}, 1, 10) || ' ' || substr({c}, 12, 15)"
        f" ELSE {c} END"
    )


def _rewrite(spell: dict[str, str], patterns: tuple[str, ...]) -> None:
    """One UPDATE per table touching only the rows that hold a time in the other form."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, columns in TIME_COLUMNS.items():
        sets = ", ".join(f"{c} = {spell[c]}" for c in columns)
        where = " OR ".join(f"{c} LIKE {p}" for c in columns for p in patterns)
        op.execute(f"UPDATE {table} SET {sets} WHERE {where}")


def upgrade() -> None:
    columns = {c for cs in TIME_COLUMNS.values() for c in cs}
    _rewrite({c: _to_new(c) for c in columns}, (OLD, OLD_WHOLE_SECONDS))


def downgrade() -> None:
    columns = {c for cs in TIME_COLUMNS.values() for c in cs}
    _rewrite({c: _to_old(c) for c in columns}, (NEW,))
