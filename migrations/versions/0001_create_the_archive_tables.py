"""Create the archive tables

Revision ID: 0001
Revises:
Create Date: 2026-11-29 12:21:09.375220
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from archiver.sqltypes import BigIntPK, LongText, UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def table_options() -> dict[str, Any]:
    """utf8mb4 with a binary, NO PAD collation on MySQL/MariaDB.

    Ids are case-sensitive and trailing spaces matter: the default collations would make job
    ``A`` collide with ``a`` (and ``a `` with ``a``) in the unique keys.
    """
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return {}
    mariadb = bind.dialect.name == "mariadb" or getattr(bind.dialect, "is_mariadb", False)
    collation = "utf8mb4_nopad_bin" if mariadb else "utf8mb4_0900_bin"
    return {"mysql_charset": "utf8mb4", "mysql_collate": collation}


def upgrade() -> None:
    op.create_table(
        "ingest_problems",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=191), nullable=False),
        sa.Column("job_id", sa.String(length=191), nullable=False),
        sa.Column("task_id", sa.String(length=191), nullable=True),
        sa.Column("field", sa.String(length=255), nullable=False),
        sa.Column("raw_value", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ingest_problems")),
        **table_options(),
    )
    with op.batch_alter_table("ingest_problems", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ingest_problems_workflow_id_job_id_observed_at"),
            ["workflow_id", "job_id", "observed_at"],
            unique=False,
        )

    op.create_table(
        "job_changes",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=191), nullable=False),
        sa.Column("job_id", sa.String(length=191), nullable=False),
        sa.Column("task_id", sa.String(length=191), nullable=True),
        sa.Column("entity", sa.String(length=16), nullable=False),
        sa.Column("entity_key", sa.String(length=191), nullable=True),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("old_value", LongText, nullable=True),
        sa.Column("new_value", LongText, nullable=True),
        sa.Column("observed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_changes")),
        **table_options(),
    )
    with op.batch_alter_table("job_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_changes_entity_field"), ["entity", "field"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_job_changes_observed_at"), ["observed_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_job_changes_workflow_id_job_id_observed_at"),
            ["workflow_id", "job_id", "observed_at"],
            unique=False,
        )

    op.create_table(
        "job_snapshots",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=191), nullable=False),
        sa.Column("job_id", sa.String(length=191), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.Column("applied", sa.Boolean(), nullable=False),
        sa.Column("body", LongText, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_snapshots")),
        **table_options(),
    )
    with op.batch_alter_table("job_snapshots", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_snapshots_workflow_id_job_id_fetched_at"),
            ["workflow_id", "job_id", "fetched_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_job_snapshots_workflow_id_job_id_sha256"),
            ["workflow_id", "job_id", "sha256"],
            unique=False,
        )

    op.create_table(
        "job_versions",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=191), nullable=False),
        sa.Column("job_id", sa.String(length=191), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("valid_to", UTCDateTime(), nullable=True),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=True),
        sa.Column("status_class", sa.String(length=16), nullable=True),
        sa.Column("is_terminal", sa.Boolean(), nullable=True),
        sa.Column("progress", sa.String(length=255), nullable=True),
        sa.Column("progress_pct", sa.Numeric(precision=9, scale=4), nullable=True),
        sa.Column("cost", sa.BigInteger(), nullable=True),
        sa.Column("time_taken", sa.String(length=255), nullable=True),
        sa.Column("time_taken_s", sa.Numeric(precision=20, scale=3), nullable=True),
        sa.Column("estimated_duration", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("exec_created_at", UTCDateTime(), nullable=True),
        sa.Column("exec_updated_at", UTCDateTime(), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_versions")),
        sa.UniqueConstraint(
            "workflow_id",
            "job_id",
            "version",
            name=op.f("uq_job_versions_workflow_id_job_id_version"),
        ),
        **table_options(),
    )
    with op.batch_alter_table("job_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_job_versions_valid_from"), ["valid_from"], unique=False
        )

    op.create_table(
        "jobs",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=191), nullable=False),
        sa.Column("job_id", sa.String(length=191), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("payload_sha256", sa.String(length=64), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_changed_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=True),
        sa.Column("status_class", sa.String(length=16), nullable=True),
        sa.Column("is_terminal", sa.Boolean(), nullable=True),
        sa.Column("progress", sa.String(length=255), nullable=True),
        sa.Column("progress_pct", sa.Numeric(precision=9, scale=4), nullable=True),
        sa.Column("cost", sa.BigInteger(), nullable=True),
        sa.Column("time_taken", sa.String(length=255), nullable=True),
        sa.Column("time_taken_s", sa.Numeric(precision=20, scale=3), nullable=True),
        sa.Column("estimated_duration", sa.BigInteger(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("exec_created_at", UTCDateTime(), nullable=True),
        sa.Column("exec_updated_at", UTCDateTime(), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("workflow_id", "job_id", name=op.f("uq_jobs_workflow_id_job_id")),
        **table_options(),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_created_by"), ["created_by"], unique=False)
        batch_op.create_index(batch_op.f("ix_jobs_status_class"), ["status_class"], unique=False)

    op.create_table(
        "sync_runs",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("jobs_total", sa.Integer(), nullable=False),
        sa.Column("archived", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("stale", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Integer(), nullable=False),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
        **table_options(),
    )
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sync_runs_started_at"), ["started_at"], unique=False)

    op.create_table(
        "task_dependencies",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=191), nullable=False),
        sa.Column("job_id", sa.String(length=191), nullable=False),
        sa.Column("task_id", sa.String(length=191), nullable=False),
        sa.Column("depends_on_task_id", sa.String(length=191), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_dependencies")),
        sa.UniqueConstraint(
            "workflow_id",
            "job_id",
            "task_id",
            "depends_on_task_id",
            name="uq_task_dependencies_edge",
        ),
        **table_options(),
    )
    op.create_table(
        "task_versions",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=191), nullable=False),
        sa.Column("job_id", sa.String(length=191), nullable=False),
        sa.Column("task_id", sa.String(length=191), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("valid_from", UTCDateTime(), nullable=False),
        sa.Column("valid_to", UTCDateTime(), nullable=True),
        sa.Column("name", LongText, nullable=True),
        sa.Column("status", sa.String(length=64), nullable=True),
        sa.Column("status_class", sa.String(length=16), nullable=True),
        sa.Column("is_terminal", sa.Boolean(), nullable=True),
        sa.Column("progress", sa.Numeric(precision=9, scale=4), nullable=True),
        sa.Column("estimated_time_duration", sa.BigInteger(), nullable=True),
        sa.Column("time_taken", sa.String(length=255), nullable=True),
        sa.Column("time_taken_s", sa.Numeric(precision=20, scale=3), nullable=True),
        sa.Column("state_msg", LongText, nullable=True),
        sa.Column("err_msg", LongText, nullable=True),
        sa.Column("failure_type", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("recv_time", UTCDateTime(), nullable=True),
        sa.Column("send_time", UTCDateTime(), nullable=True),
        sa.Column("block_inf_start_time", UTCDateTime(), nullable=True),
        sa.Column("block_inf_end_time", UTCDateTime(), nullable=True),
        sa.Column("block_id", sa.String(length=255), nullable=True),
        sa.Column("block_name", sa.String(length=255), nullable=True),
        sa.Column("block_version", sa.String(length=255), nullable=True),
        sa.Column("depends_on", sa.JSON(), nullable=True),
        sa.Column("info_logs", sa.JSON(), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("disclaimer", sa.JSON(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_versions")),
        sa.UniqueConstraint(
            "workflow_id",
            "job_id",
            "task_id",
            "version",
            name=op.f("uq_task_versions_workflow_id_job_id_task_id_version"),
        ),
        **table_options(),
    )
    with op.batch_alter_table("task_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_task_versions_valid_from"), ["valid_from"], unique=False
        )

    op.create_table(
        "tasks",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=191), nullable=False),
        sa.Column("job_id", sa.String(length=191), nullable=False),
        sa.Column("task_id", sa.String(length=191), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("removed_at", UTCDateTime(), nullable=True),
        sa.Column("name", LongText, nullable=True),
        sa.Column("status", sa.String(length=64), nullable=True),
        sa.Column("status_class", sa.String(length=16), nullable=True),
        sa.Column("is_terminal", sa.Boolean(), nullable=True),
        sa.Column("progress", sa.Numeric(precision=9, scale=4), nullable=True),
        sa.Column("estimated_time_duration", sa.BigInteger(), nullable=True),
        sa.Column("time_taken", sa.String(length=255), nullable=True),
        sa.Column("time_taken_s", sa.Numeric(precision=20, scale=3), nullable=True),
        sa.Column("state_msg", LongText, nullable=True),
        sa.Column("err_msg", LongText, nullable=True),
        sa.Column("failure_type", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("recv_time", UTCDateTime(), nullable=True),
        sa.Column("send_time", UTCDateTime(), nullable=True),
        sa.Column("block_inf_start_time", UTCDateTime(), nullable=True),
        sa.Column("block_inf_end_time", UTCDateTime(), nullable=True),
        sa.Column("block_id", sa.String(length=255), nullable=True),
        sa.Column("block_name", sa.String(length=255), nullable=True),
        sa.Column("block_version", sa.String(length=255), nullable=True),
        sa.Column("depends_on", sa.JSON(), nullable=True),
        sa.Column("info_logs", sa.JSON(), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("disclaimer", sa.JSON(), nullable=True),
        sa.Column("extra", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint(
            "workflow_id", "job_id", "task_id", name=op.f("uq_tasks_workflow_id_job_id_task_id")
        ),
        **table_options(),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tasks_block_name_block_version"),
            ["block_name", "block_version"],
            unique=False,
        )
        batch_op.create_index(batch_op.f("ix_tasks_status_class"), ["status_class"], unique=False)

    op.create_table(
        "tracked_jobs",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=191), nullable=False),
        sa.Column("job_id", sa.String(length=191), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("next_poll_at", UTCDateTime(), nullable=True),
        sa.Column("last_polled_at", UTCDateTime(), nullable=True),
        sa.Column("last_status", sa.String(length=64), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", UTCDateTime(), nullable=True),
        sa.Column("terminal_since", UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
        sa.Column("claim_token", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tracked_jobs")),
        sa.UniqueConstraint(
            "workflow_id", "job_id", name=op.f("uq_tracked_jobs_workflow_id_job_id")
        ),
        **table_options(),
    )
    with op.batch_alter_table("tracked_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_tracked_jobs_state_next_poll_at"),
            ["state", "next_poll_at"],
            unique=False,
        )

    op.create_table(
        "val_errors",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("workflow_id", sa.String(length=191), nullable=False),
        sa.Column("job_id", sa.String(length=191), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("source_component", LongText, nullable=True),
        sa.Column("target_component", LongText, nullable=True),
        sa.Column("err", LongText, nullable=True),
        sa.Column("reason", LongText, nullable=True),
        sa.Column("component_name", LongText, nullable=True),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_val_errors")),
        sa.UniqueConstraint(
            "workflow_id",
            "job_id",
            "fingerprint",
            name=op.f("uq_val_errors_workflow_id_job_id_fingerprint"),
        ),
        **table_options(),
    )
    with op.batch_alter_table("val_errors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_val_errors_resolved_at"), ["resolved_at"], unique=False
        )

    op.create_table(
        "sync_errors",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("sync_run_id", BigIntPK, nullable=True),
        sa.Column("workflow_id", sa.String(length=191), nullable=True),
        sa.Column("job_id", sa.String(length=191), nullable=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error_code", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sync_run_id"], ["sync_runs.id"], name=op.f("fk_sync_errors_sync_run_id_sync_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_errors")),
        **table_options(),
    )
    with op.batch_alter_table("sync_errors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sync_errors_workflow_id_job_id_occurred_at"),
            ["workflow_id", "job_id", "occurred_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_errors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_errors_workflow_id_job_id_occurred_at"))

    op.drop_table("sync_errors")
    with op.batch_alter_table("val_errors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_val_errors_resolved_at"))

    op.drop_table("val_errors")
    with op.batch_alter_table("tracked_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracked_jobs_state_next_poll_at"))

    op.drop_table("tracked_jobs")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tasks_status_class"))
        batch_op.drop_index(batch_op.f("ix_tasks_block_name_block_version"))

    op.drop_table("tasks")
    with op.batch_alter_table("task_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_task_versions_valid_from"))

    op.drop_table("task_versions")
    op.drop_table("task_dependencies")
    with op.batch_alter_table("sync_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sync_runs_started_at"))

    op.drop_table("sync_runs")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_status_class"))
        batch_op.drop_index(batch_op.f("ix_jobs_created_by"))
        batch_op.drop_index(batch_op.f("ix_jobs_created_at"))

    op.drop_table("jobs")
    with op.batch_alter_table("job_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_versions_valid_from"))

    op.drop_table("job_versions")
    with op.batch_alter_table("job_snapshots", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_snapshots_workflow_id_job_id_sha256"))
        batch_op.drop_index(batch_op.f("ix_job_snapshots_workflow_id_job_id_fetched_at"))

    op.drop_table("job_snapshots")
    with op.batch_alter_table("job_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_changes_workflow_id_job_id_observed_at"))
        batch_op.drop_index(batch_op.f("ix_job_changes_observed_at"))
        batch_op.drop_index(batch_op.f("ix_job_changes_entity_field"))

    op.drop_table("job_changes")
    with op.batch_alter_table("ingest_problems", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ingest_problems_workflow_id_job_id_observed_at"))

    op.drop_table("ingest_problems")
