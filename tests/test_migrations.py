"""The migrations are the schema: they must equal the models and go down and up with data."""

from __future__ import annotations

from datetime import UTC, datetime

import factories
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, inspect, select

from archiver import db
from archiver.archive.batches import archive_one
from archiver.models import Base, Job, JobChange

EXPECTED_TABLES = {
    "tracked_jobs",
    "jobs",
    "tasks",
    "task_dependencies",
    "val_errors",
    "job_snapshots",
    "job_versions",
    "task_versions",
    "job_changes",
    "ingest_problems",
    "sync_runs",
    "sync_errors",
    "period_statements",
    "period_statement_lines",
    "period_events",
    "chain_anchors",
    "workflows",
    "workflow_versions",
    "workflow_changes",
    "watch_rules",
    "alembic_version",
}


def test_models_equal_migrations(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
        assert set(inspect(engine).get_table_names()) == EXPECTED_TABLES
    finally:
        engine.dispose()


def test_every_identifier_fits_postgres_and_mysql_limits() -> None:
    names = [t.name for t in Base.metadata.tables.values()]
    for table in Base.metadata.tables.values():
        names += [c.name for c in table.columns]
        names += [str(i.name) for i in table.indexes]
        names += [str(c.name) for c in table.constraints]
    assert max(len(n) for n in names) <= 63


def test_upgrade_downgrade_upgrade_with_data(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        sessions = db.session_factory(engine)
        archive_one(sessions, factories.job(), datetime(2026, 10, 1, tzinfo=UTC))
        db.check_schema(engine)
        db.downgrade(db_url, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        db.upgrade(db_url)
        db.check_schema(engine)
        archive_one(sessions, factories.job(), datetime(2026, 10, 2, tzinfo=UTC))
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Job)) == 1
            assert session.scalar(select(func.count()).select_from(JobChange)) > 0
    finally:
        engine.dispose()


def test_check_schema_names_the_fix(empty_db_url: str) -> None:
    engine = db.make_engine(empty_db_url)
    try:
        try:
            db.check_schema(engine)
        except Exception as exc:
            assert "archiver db upgrade" in str(exc)
        else:
            raise AssertionError("an empty database passed the schema check")
    finally:
        engine.dispose()


def test_no_table_or_column_name_needs_quoting() -> None:
    """BI users write plain SQL: no reserved word on any of the three databases."""
    from sqlalchemy.dialects.mysql.reserved_words import RESERVED_WORDS_MARIADB
    from sqlalchemy.dialects.postgresql.base import RESERVED_WORDS as POSTGRES_RESERVED
    from sqlalchemy.dialects.sqlite.base import SQLiteIdentifierPreparer

    from archiver.models import Base

    reserved = (
        set(POSTGRES_RESERVED)
        | set(RESERVED_WORDS_MARIADB)
        | set(SQLiteIdentifierPreparer.reserved_words)
    )
    names = set(Base.metadata.tables)
    for table in Base.metadata.tables.values():
        names |= {c.name for c in table.columns}
    # job_snapshots.body (revision 0001) is reserved only by MariaDB's Oracle mode (packages)
    assert {n for n in names if n.lower() in reserved} == {"body"}
