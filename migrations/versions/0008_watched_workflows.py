"""Watched workflows: the workflows table, its history, watch rules, discovery counters

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 09:25:01.426285

``workflows`` holds every workflow the listing endpoints described and whether each pass lists its
jobs; ``workflow_versions`` and ``workflow_changes`` keep its history (a rename, a new estimate)
the way ``job_versions`` and ``job_changes`` keep a job's. ``watch_rules`` are the
``--all-workflows [--project-id P]`` rules. ``tracked_jobs.summary_sha256`` remembers the listed
summary that last made a job due; ``sync_runs`` counts the listings of a pass.

New columns on existing tables are added in place (no table rebuild: SQLite refuses one while the
reporting views read the table); the counters get a server default of 0 for the rows already there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from archiver.sqltypes import BigIntPK, LongText, UTCDateTime

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=191)
COUNTERS = ("workflows_listed", "jobs_discovered", "list_failed")


def table_options() -> dict[str, Any]:
    """utf8mb4 with a binary, NO PAD collation on MySQL/MariaDB (as in 0001: ids are exact)."""
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return {}
    mariadb = bind.dialect.name == "mariadb" or getattr(bind.dialect, "is_mariadb", False)
    collation = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
    return {"mysql_charset": "utf8mb4", "mysql_collate": collation}


def _time(name: str, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, UTCDateTime(), nullable=nullable)


def _lease_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _time("last_error_at"),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        _time("lease_expires_at"),
        sa.Column("claim_token", sa.BigInteger(), nullable=False),
    ]


def _described() -> list[sa.Column[Any]]:
    """What the listing endpoints say about a workflow, kept current and versioned alike."""
    return [
        sa.Column("project_id", sa.String(length=255), nullable=True),
        sa.Column("name", LongText, nullable=True),
        sa.Column("description", LongText, nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        _time("created_at"),
        _time("updated_at"),
        sa.Column("estimated_cost", sa.BigInteger(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "watch_rules",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(length=255), nullable=False),
        _time("added_at", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        _time("last_listed_at"),
        sa.Column("workflows_listed", sa.Integer(), nullable=True),
        *_lease_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_watch_rules")),
        sa.UniqueConstraint("project_id", name=op.f("uq_watch_rules_project_id")),
        **table_options(),
    )
    op.create_table(
        "workflows",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", ID, nullable=False),
        *_described(),
        sa.Column("legacy_project_id", sa.String(length=255), nullable=True),
        _time("estimated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        _time("first_seen_at", nullable=False),
        _time("last_seen_at", nullable=False),
        _time("last_listed_at"),
        sa.Column("jobs_listed", sa.Integer(), nullable=True),
        sa.Column("watched", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("watch_source", sa.String(length=16), nullable=True),
        _time("watched_at"),
        *_lease_columns(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflows")),
        sa.UniqueConstraint("workflow_id", name=op.f("uq_workflows_workflow_id")),
        **table_options(),
    )
    op.create_index(op.f("ix_workflows_state"), "workflows", ["state"])
    op.create_table(
        "workflow_versions",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        *_described(),
        _time("valid_from", nullable=False),
        _time("valid_to"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_versions")),
        sa.UniqueConstraint(
            "workflow_id", "version", name=op.f("uq_workflow_versions_workflow_id_version")
        ),
        **table_options(),
    )
    op.create_index(op.f("ix_workflow_versions_valid_from"), "workflow_versions", ["valid_from"])
    op.create_table(
        "workflow_changes",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", ID, nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("old_value", LongText, nullable=True),
        sa.Column("new_value", LongText, nullable=True),
        _time("observed_at", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workflow_changes")),
        **table_options(),
    )
    op.create_index(
        op.f("ix_workflow_changes_workflow_id_observed_at"),
        "workflow_changes",
        ["workflow_id", "observed_at"],
    )
    op.create_index(op.f("ix_workflow_changes_observed_at"), "workflow_changes", ["observed_at"])

    sqlite = op.get_bind().dialect.name == "sqlite"
    for name in COUNTERS:
        op.add_column(
            "sync_runs", sa.Column(name, sa.Integer(), nullable=False, server_default="0")
        )
        if not sqlite:  # the archiver writes every counter; SQLite keeps the default (see 0006)
            op.alter_column("sync_runs", name, existing_type=sa.Integer(), server_default=None)
    op.add_column("tracked_jobs", sa.Column("summary_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("tracked_jobs", "summary_sha256")
    for name in reversed(COUNTERS):
        op.drop_column("sync_runs", name)
    op.drop_table("workflow_changes")
    op.drop_table("workflow_versions")
    op.drop_table("workflows")
    op.drop_table("watch_rules")
