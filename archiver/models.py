"""The archive's tables as SQLAlchemy 2.x typed declarative models.

Natural keys are declared once, as named unique constraints; ``archiver.archive.statements`` uses
those columns as the upsert conflict targets on every dialect (``archiver.db.upsert_statement``).
Names avoid SQL reserved words so BI users never quote. The state columns of jobs, tasks and
validation errors are typed out here for mypy; ``archiver.fields`` declares them, and
``tests/test_fields.py`` proves the two agree. The schema itself is created by the Alembic
migrations; ``tests/test_migrations.py`` proves these models and the migrations agree.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from archiver.fields import ID_MAX
from archiver.sqltypes import BigIntPK, Digest, LongText, UTCDateTime

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(ID_MAX)
SHA = String(64)
Pct = Numeric(9, 4)
Seconds = Numeric(20, 3)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        int: BigInteger(),
        bool: Boolean(),
        dict[str, Any]: JSON(),
        Any: JSON(),
    }


def _id() -> Mapped[int]:
    return mapped_column(BigIntPK, primary_key=True, autoincrement=True)


class JobState:
    """Typed columns of a job's state, shared by ``jobs`` (current) and ``job_versions``."""

    status: Mapped[str | None] = mapped_column(String(64))
    status_class: Mapped[str | None] = mapped_column(String(16))
    is_terminal: Mapped[bool | None]
    progress: Mapped[str | None] = mapped_column(String(255))
    progress_pct: Mapped[Decimal | None] = mapped_column(Pct)
    cost: Mapped[int | None]
    time_taken: Mapped[str | None] = mapped_column(String(255))
    time_taken_s: Mapped[Decimal | None] = mapped_column(Seconds)
    estimated_duration: Mapped[int | None]
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    exec_created_at: Mapped[datetime | None]
    exec_updated_at: Mapped[datetime | None]
    spec: Mapped[Any | None]
    extra: Mapped[Any | None]


class TaskState:
    """Typed columns of a task's state, shared by ``tasks`` and ``task_versions``."""

    name: Mapped[str | None] = mapped_column(LongText)
    status: Mapped[str | None] = mapped_column(String(64))
    status_class: Mapped[str | None] = mapped_column(String(16))
    is_terminal: Mapped[bool | None]
    progress: Mapped[Decimal | None] = mapped_column(Pct)
    estimated_time_duration: Mapped[int | None]
    time_taken: Mapped[str | None] = mapped_column(String(255))
    time_taken_s: Mapped[Decimal | None] = mapped_column(Seconds)
    state_msg: Mapped[str | None] = mapped_column(LongText)
    err_msg: Mapped[str | None] = mapped_column(LongText)
    failure_type: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    recv_time: Mapped[datetime | None]
    send_time: Mapped[datetime | None]
    block_inf_start_time: Mapped[datetime | None]
    block_inf_end_time: Mapped[datetime | None]
    block_id: Mapped[str | None] = mapped_column(String(255))
    block_name: Mapped[str | None] = mapped_column(String(255))
    block_version: Mapped[str | None] = mapped_column(String(255))
    depends_on: Mapped[Any | None]
    info_logs: Mapped[Any | None]
    inputs: Mapped[Any | None]
    result: Mapped[Any | None]
    disclaimer: Mapped[Any | None]
    extra: Mapped[Any | None]


class Chained:
    """Hash-chain columns of a history row (``archiver.archive.chain``); NULL only on a row that the
    archiver did not write, which ``archiver verify`` reports. ``chain_version`` names the encoding
    the row's hash was computed with (1 for every row written before it existed)."""

    chain_version: Mapped[int] = mapped_column(SmallInteger)
    chain_seq: Mapped[int | None]
    # 32 bytes each, read and written as hex (``archiver.sqltypes.Digest``, migration 0012)
    prev_sha256: Mapped[str | None] = mapped_column(Digest)
    row_sha256: Mapped[str | None] = mapped_column(Digest)


class TrackedJob(Base):
    __tablename__ = "tracked_jobs"
    __table_args__ = (
        UniqueConstraint("workflow_id", "job_id"),
        Index(None, "state", "next_poll_at"),
    )

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    job_id: Mapped[str] = mapped_column(ID)
    added_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))
    next_poll_at: Mapped[datetime | None]
    last_polled_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(64))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    # first poll that saw a terminal status: the settle window is counted from here
    terminal_since: Mapped[datetime | None]
    # scale-out: a worker claims a job by stamping itself and an expiry (from the database
    # clock) and bumping the token; its writes for the job are conditional on that token
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    claim_token: Mapped[int] = mapped_column(default=0)
    # digest of the job's summary in its workflow's listJobs answer when the listing last made
    # it due (``archiver.polling.discovery``): a summary that keeps differing from the archive in
    # a way a fetch does not change makes the job due once, not on every pass
    summary_sha256: Mapped[str | None] = mapped_column(SHA)


class Workflow(Base):
    """One workflow, as the listing endpoints describe it, and whether each pass lists its jobs.

    ``state``: ``watched`` (listed every pass), ``paused`` (its listJobs kept answering 403/404;
    ``archiver track --workflow`` resumes it), ``unwatched`` (the user stopped watching it; an
    ``--all-workflows`` rule does not bring it back), ``known`` (seen, never watched).
    ``watched`` is true in the first two states, for SQL that only asks that.
    """

    __tablename__ = "workflows"
    __table_args__ = (UniqueConstraint("workflow_id"), Index(None, "state"))

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    project_id: Mapped[str | None] = mapped_column(String(255))
    legacy_project_id: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(LongText)
    description: Mapped[str | None] = mapped_column(LongText)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    estimated_cost: Mapped[int | None]
    estimated_at: Mapped[datetime | None]  # when the estimate was last asked for
    version: Mapped[int] = mapped_column(Integer)  # its current workflow_versions row
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    last_listed_at: Mapped[datetime | None]  # its jobs' last successful listing
    jobs_listed: Mapped[int | None] = mapped_column(Integer)  # jobs in that listing
    watched: Mapped[bool]
    state: Mapped[str] = mapped_column(String(16))
    watch_source: Mapped[str | None] = mapped_column(String(16))  # "workflow" or "all"
    watched_at: Mapped[datetime | None]
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    claim_token: Mapped[int] = mapped_column(default=0)


class WorkflowVersion(Base):
    """A workflow's described state over time (SCD type 2, like ``job_versions``)."""

    __tablename__ = "workflow_versions"
    __table_args__ = (
        UniqueConstraint("workflow_id", "version"),
        Index(None, "valid_from"),
    )

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    version: Mapped[int] = mapped_column(Integer)
    project_id: Mapped[str | None] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(LongText)
    description: Mapped[str | None] = mapped_column(LongText)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime | None]
    updated_at: Mapped[datetime | None]
    estimated_cost: Mapped[int | None]
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]


class WorkflowChange(Base):
    """Append-only log of a workflow's field changes (a rename, a new estimate), like
    ``job_changes``."""

    __tablename__ = "workflow_changes"
    __table_args__ = (
        Index(None, "workflow_id", "observed_at"),
        Index(None, "observed_at"),
    )

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    field: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(LongText)
    new_value: Mapped[str | None] = mapped_column(LongText)
    observed_at: Mapped[datetime]


class WatchRule(Base):
    """``archiver track --all-workflows [--project-id P]``: list every workflow the key can see
    (``project_id`` empty) or those of one project, each pass, and watch each one found."""

    __tablename__ = "watch_rules"
    __table_args__ = (UniqueConstraint("project_id"),)

    id: Mapped[int] = _id()
    project_id: Mapped[str] = mapped_column(String(255))  # "" for every project
    added_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16))  # "active" or "untracked"
    last_listed_at: Mapped[datetime | None]
    workflows_listed: Mapped[int | None] = mapped_column(Integer)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None]
    claim_token: Mapped[int] = mapped_column(default=0)


class Job(JobState, Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("workflow_id", "job_id"),
        Index(None, "status_class"),
        Index(None, "created_at"),
        Index(None, "created_by"),
        Index(None, "body_sha256"),  # recognizing a repeated body before decoding it
    )

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    job_id: Mapped[str] = mapped_column(ID)
    version: Mapped[int] = mapped_column(Integer)
    payload_sha256: Mapped[str] = mapped_column(SHA)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    last_changed_at: Mapped[datetime]
    # SHA-256 of the latest body as received, byte for byte: a poll returning the same bytes is
    # recognized without decoding them (payload_sha256 is of the decoded, canonical JSON)
    body_sha256: Mapped[str | None] = mapped_column(SHA)
    # digest of the val_errors member its open validation errors were last read from, when
    # reading it found no problem; NULL: unknown (``archiver.archive.digests``)
    val_errors_sha256: Mapped[str | None] = mapped_column(SHA)
    # head of the job's hash chain: its last history row's chain_seq and row_sha256
    chain_seq: Mapped[int | None]
    chain_sha256: Mapped[str | None] = mapped_column(SHA)


class Task(TaskState, Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("workflow_id", "job_id", "task_id"),
        Index(None, "block_name", "block_version"),
        Index(None, "status_class"),
    )

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    job_id: Mapped[str] = mapped_column(ID)
    task_id: Mapped[str] = mapped_column(ID)
    version: Mapped[int] = mapped_column(Integer)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    removed_at: Mapped[datetime | None]
    # digest of what its state was last read from, when reading it found no problem: a payload
    # whose task has this digest is not read again; NULL: unknown (``archiver.archive.digests``)
    state_sha256: Mapped[str | None] = mapped_column(SHA)


class TaskDependency(Base):
    __tablename__ = "task_dependencies"
    __table_args__ = (
        UniqueConstraint(
            "workflow_id",
            "job_id",
            "task_id",
            "depends_on_task_id",
            name="uq_task_dependencies_edge",
        ),
    )

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    job_id: Mapped[str] = mapped_column(ID)
    task_id: Mapped[str] = mapped_column(ID)
    depends_on_task_id: Mapped[str] = mapped_column(ID)


class ValError(Base):
    __tablename__ = "val_errors"
    __table_args__ = (
        UniqueConstraint("workflow_id", "job_id", "fingerprint"),
        Index(None, "resolved_at"),
    )

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    job_id: Mapped[str] = mapped_column(ID)
    fingerprint: Mapped[str] = mapped_column(SHA)
    source_component: Mapped[str | None] = mapped_column(LongText)
    target_component: Mapped[str | None] = mapped_column(LongText)
    err: Mapped[str | None] = mapped_column(LongText)
    reason: Mapped[str | None] = mapped_column(LongText)
    component_name: Mapped[str | None] = mapped_column(LongText)
    occurrences: Mapped[int] = mapped_column(Integer)
    first_seen_at: Mapped[datetime]
    last_seen_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]


class JobSnapshot(Chained, Base):
    """Every distinct payload as received; ``applied`` is false for stale ones kept as evidence."""

    __tablename__ = "job_snapshots"
    __table_args__ = (
        Index(None, "workflow_id", "job_id", "fetched_at"),
        Index(None, "workflow_id", "job_id", "sha256"),
        Index(None, "workflow_id", "job_id", "chain_seq", unique=True),
    )

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    job_id: Mapped[str] = mapped_column(ID)
    sha256: Mapped[str] = mapped_column(SHA)
    fetched_at: Mapped[datetime]
    applied: Mapped[bool]
    body: Mapped[str] = mapped_column(LongText)


class JobVersion(JobState, Chained, Base):
    __tablename__ = "job_versions"
    __table_args__ = (
        UniqueConstraint("workflow_id", "job_id", "version"),
        Index(None, "valid_from"),
        Index(None, "workflow_id", "job_id", "chain_seq", unique=True),
    )

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    job_id: Mapped[str] = mapped_column(ID)
    version: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]
    payload_sha256: Mapped[str] = mapped_column(SHA)


class TaskVersion(TaskState, Chained, Base):
    __tablename__ = "task_versions"
    __table_args__ = (
        UniqueConstraint("workflow_id", "job_id", "task_id", "version"),
        Index(None, "valid_from"),
        Index(None, "workflow_id", "job_id", "chain_seq", unique=True),
    )

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    job_id: Mapped[str] = mapped_column(ID)
    task_id: Mapped[str] = mapped_column(ID)
    version: Mapped[int] = mapped_column(Integer)
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]


class JobChange(Chained, Base):
    """Append-only field-level audit log; ``entity_key`` is a task id or an error fingerprint.

    One job's rows are found through the chain index (migration 0011 dropped a second per-job
    index by time); by field through ``(entity, field)``; by time through ``observed_at``."""

    __tablename__ = "job_changes"
    __table_args__ = (
        Index(None, "observed_at"),
        Index(None, "entity", "field"),
        Index(None, "workflow_id", "job_id", "chain_seq", unique=True),
    )

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    job_id: Mapped[str] = mapped_column(ID)
    task_id: Mapped[str | None] = mapped_column(ID)
    entity: Mapped[str] = mapped_column(String(16))
    entity_key: Mapped[str | None] = mapped_column(ID)
    field: Mapped[str] = mapped_column(String(64))
    old_value: Mapped[str | None] = mapped_column(LongText)
    new_value: Mapped[str | None] = mapped_column(LongText)
    observed_at: Mapped[datetime]


class IngestProblem(Base):
    """A value of a payload that could not be taken as is (the snapshot keeps the original)."""

    __tablename__ = "ingest_problems"
    __table_args__ = (Index(None, "workflow_id", "job_id", "observed_at"),)

    id: Mapped[int] = _id()
    workflow_id: Mapped[str] = mapped_column(ID)
    job_id: Mapped[str] = mapped_column(ID)
    task_id: Mapped[str | None] = mapped_column(ID)
    field: Mapped[str] = mapped_column(String(255))
    raw_value: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)
    payload_sha256: Mapped[str] = mapped_column(SHA)
    observed_at: Mapped[datetime]


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[int] = _id()
    kind: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(index=True)
    finished_at: Mapped[datetime | None]
    jobs_total: Mapped[int] = mapped_column(Integer, default=0)
    archived: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, default=0)
    stale: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    problems: Mapped[int] = mapped_column(Integer, default=0)
    host: Mapped[str | None] = mapped_column(String(255))
    # discovery (``archiver.polling.discovery``): listJobs answers read, jobs found that were
    # not tracked, and listings that failed or carried items that could not be used
    workflows_listed: Mapped[int] = mapped_column(Integer, default=0)
    jobs_discovered: Mapped[int] = mapped_column(Integer, default=0)
    list_failed: Mapped[int] = mapped_column(Integer, default=0)


class SyncError(Base):
    __tablename__ = "sync_errors"
    __table_args__ = (Index(None, "workflow_id", "job_id", "occurred_at"),)

    id: Mapped[int] = _id()
    sync_run_id: Mapped[int | None] = mapped_column(BigIntPK, ForeignKey("sync_runs.id"))
    workflow_id: Mapped[str | None] = mapped_column(ID)
    job_id: Mapped[str | None] = mapped_column(ID)
    occurred_at: Mapped[datetime]
    http_status: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)


class PeriodStatement(Base):
    """A month's frozen cost statement (``archiver close-period``); in force until reopened.

    ``sha256`` covers the statement and its lines (``archiver.audit.periods``), so an edit to a
    closed figure is caught by ``archiver verify``.
    """

    __tablename__ = "period_statements"
    __table_args__ = (Index(None, "period_month"),)

    id: Mapped[int] = _id()
    period_month: Mapped[str] = mapped_column(String(7))
    closed_at: Mapped[datetime]
    closed_by: Mapped[str] = mapped_column(String(255))
    jobs: Mapped[int]
    cost: Mapped[Decimal] = mapped_column(Numeric(38, 0))
    sha256: Mapped[str] = mapped_column(SHA)
    reopened_at: Mapped[datetime | None]


class PeriodStatementLine(Base):
    """One figure of a statement: the cost of one workflow, user or block in that month."""

    __tablename__ = "period_statement_lines"
    __table_args__ = (UniqueConstraint("statement_id", "dimension", "dim_key"),)

    id: Mapped[int] = _id()
    statement_id: Mapped[int] = mapped_column(BigIntPK, ForeignKey("period_statements.id"))
    dimension: Mapped[str] = mapped_column(String(16))
    dim_key: Mapped[str] = mapped_column(String(600))
    jobs: Mapped[int]
    jobs_without_cost: Mapped[int]
    cost: Mapped[Decimal] = mapped_column(Numeric(38, 0))


class PeriodEvent(Base):
    """Append-only log of closing and reopening periods: who, when, why."""

    __tablename__ = "period_events"
    __table_args__ = (Index(None, "period_month", "occurred_at"),)

    id: Mapped[int] = _id()
    period_month: Mapped[str] = mapped_column(String(7))
    action: Mapped[str] = mapped_column(String(16))
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str | None] = mapped_column(Text)
    statement_id: Mapped[int | None] = mapped_column(BigIntPK, ForeignKey("period_statements.id"))
    statement_sha256: Mapped[str | None] = mapped_column(SHA)


class ChainAnchor(Base):
    """The chain heads of every job at one moment (``archiver verify --anchor``).

    Its ``digest`` is what a team stores elsewhere; ``archiver verify --against DIGEST`` checks
    that this record still hashes to it and that every head in it is still in the archive.
    """

    __tablename__ = "chain_anchors"
    __table_args__ = (Index(None, "digest"),)

    id: Mapped[int] = _id()
    created_at: Mapped[datetime]
    jobs: Mapped[int]
    digest: Mapped[str] = mapped_column(SHA)
    heads: Mapped[str] = mapped_column(LongText)


def table(model: type[Base]) -> Table:
    """The model's Core table, typed as one (``__table__`` is typed as a generic FromClause)."""
    return cast(Table, model.__table__)


# Core handles for the hot paths, which write with Core statements rather than the ORM
TRACKED = table(TrackedJob)
WORKFLOWS = table(Workflow)
WORKFLOW_VERSIONS = table(WorkflowVersion)
WORKFLOW_CHANGES = table(WorkflowChange)
WATCH_RULES = table(WatchRule)
JOBS = table(Job)
TASKS = table(Task)
DEPS = table(TaskDependency)
VAL_ERRORS = table(ValError)
SNAPSHOTS = table(JobSnapshot)
JOB_VERSIONS = table(JobVersion)
TASK_VERSIONS = table(TaskVersion)
CHANGES = table(JobChange)
PROBLEMS = table(IngestProblem)
RUNS = table(SyncRun)
ERRORS = table(SyncError)
STATEMENTS = table(PeriodStatement)
STATEMENT_LINES = table(PeriodStatementLine)
PERIOD_EVENTS = table(PeriodEvent)
ANCHORS = table(ChainAnchor)
