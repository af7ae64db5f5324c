"""Migration 0007 rewrites every SQLite time to the printed form, keeping every instant and the
hash chain; the downgrade writes the old form back. A no-op on PostgreSQL and MariaDB.

The archive is built at head, then every stored time is rewritten by hand to the form SQLite held
before 0007 (``YYYY-MM-DD HH:MM:SS.ffffff``) and the revision stamped back to 0006: an archive as
the code before this change left it, written independently of the migration under test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import factories
import pytest
import report_archive
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from archiver import db
from archiver.archive.batches import archive_one
from archiver.audit import periods
from archiver.audit.verify import check_anchor, take_anchor, verify
from archiver.models import ANCHORS, Base
from archiver.polling import tracking
from archiver.sqltypes import UTCDateTime

pytestmark = pytest.mark.integration  # every test here opens a database

# the tables 0007 rewrote: those created later store the new form from the start
LATER_TABLES = {"workflows", "workflow_versions", "workflow_changes", "watch_rules"}
TIME_COLUMNS = {
    table.name: [c.name for c in table.columns if isinstance(c.type, UTCDateTime)]
    for table in Base.metadata.sorted_tables
    if table.name not in LATER_TABLES
}
TIME_COLUMNS = {name: columns for name, columns in TIME_COLUMNS.items() if columns}
NEW_FORM = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"
OLD_FORM = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}$"
# The columns the archive below leaves NULL: the payloads never give them, nothing was polled.
EMPTY = [
    ("task_versions", "block_inf_end_time"),
    ("task_versions", "finished_at"),
    ("tasks", "block_inf_end_time"),
    ("tasks", "finished_at"),
    ("tasks", "removed_at"),
    ("tracked_jobs", "last_error_at"),
    ("tracked_jobs", "last_polled_at"),
    ("tracked_jobs", "lease_expires_at"),
    ("tracked_jobs", "terminal_since"),
]
NOW = datetime(2026, 11, 2, tzinfo=UTC)

Stored = dict[tuple[str, str], list[Any]]


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    report_archive.build(db_url)
    engine = db.make_engine(db_url)
    sessions = db.session_factory(engine)
    odd = factories.job("job-odd", "wf-z", tasks=1, val_errors=0, created_at="not a time")
    archive_one(sessions, odd, NOW)  # an ingest problem
    with sessions.begin() as session:
        tracking.track(session, [("wf-a", "job-1")], NOW)
        periods.close_period(session, "2026-10", "auditor", now=NOW)
        periods.reopen_period(session, "2026-10", "auditor", "a late re-pricing", now=NOW)
        take_anchor(session, verify(session))
    yield engine
    engine.dispose()


def instants(engine: Engine) -> Stored:
    """Every time column's values read through the model type, in id/key order."""
    out: Stored = {}
    with Session(engine) as session:
        for name, columns in TIME_COLUMNS.items():
            table = Base.metadata.tables[name]
            order = list(table.primary_key.columns)
            for column in columns:
                out[name, column] = list(session.scalars(select(table.c[column]).order_by(*order)))
    return out


def raw(engine: Engine) -> Stored:
    """The same values as the driver returns them (text on SQLite)."""
    out: Stored = {}
    with engine.connect() as conn:
        for name, columns in TIME_COLUMNS.items():
            order = ", ".join(c.name for c in Base.metadata.tables[name].primary_key.columns)
            for column in columns:
                query = f"SELECT {column} FROM {name} ORDER BY {order}"
                out[name, column] = [row[0] for row in conn.exec_driver_sql(query)]
    return out


def breaks(engine: Engine) -> list[Any]:
    """The chain's breaks, and the stored anchor's (its heads are row hashes, not times)."""
    with Session(engine) as session:
        digest = session.scalars(select(ANCHORS.c.digest)).one()
        return [*verify(session).breaks, *check_anchor(session, digest)[1]]


def to_old_form(engine: Engine) -> None:
    """Rewrite every stored time the way the pre-0007 code wrote it (the schema stays at head)."""
    with engine.begin() as conn:
        for name, columns in TIME_COLUMNS.items():
            for column in columns:
                conn.execute(
                    text(
                        f"UPDATE {name} SET {column} = "
                        f"replace(replace({column}, 'T', ' '), 'Z', '')"
                        f" WHERE {column} IS NOT NULL"
                    )
                )


def stamp_0006(engine: Engine) -> None:
    """Take the revisions after 0007 down (they do not know the old form), then stamp 0006: an
    archive as the pre-0007 code left it."""
    db.downgrade(engine.url.render_as_string(hide_password=False), "0007")
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0006'"))


def to_old_form_at_0006(engine: Engine) -> None:
    to_old_form(engine)
    stamp_0006(engine)


def filled(stored: Stored) -> list[str]:
    return [v for values in stored.values() for v in values if v is not None]


def test_every_time_column_is_covered_and_has_values(engine: Engine) -> None:
    """The archive under test holds a time in every table that has one and in all but the
    columns named in EMPTY, so the rewrite below is exercised on each."""
    empty = sorted(key for key, values in instants(engine).items() if not any(values))
    assert empty == EMPTY


def test_migration_0007_keeps_every_instant_and_the_chain(engine: Engine, db_url: str) -> None:
    before, raw_head = instants(engine), raw(engine)
    assert breaks(engine) == []
    sqlite = engine.dialect.name == "sqlite"
    if sqlite:
        assert all(re.match(NEW_FORM, v) for v in filled(raw_head))
        to_old_form(engine)
        # the old form reads as the same instants and verifies: the chain hashes as_text, not
        # storage (checked at head: today's verify reads columns later revisions added)
        assert instants(engine) == before
        assert breaks(engine) == []
        stamp_0006(engine)
        old = raw(engine)
        assert all(re.match(OLD_FORM, v) for v in filled(old))
    else:
        db.downgrade(db_url, "0006")
        old = raw(engine)
        assert old == raw_head  # real timestamp types: nothing to rewrite
    assert instants(engine) == before

    db.upgrade(db_url)
    assert db.current_revision(db_url) == db.head_revision()
    assert raw(engine) == raw_head
    assert instants(engine) == before
    assert breaks(engine) == []

    db.downgrade(db_url, "0006")
    assert raw(engine) == old
    db.upgrade(db_url)
    assert raw(engine) == raw_head


def test_a_time_without_fraction_digits_gets_six(tmp_path: Path) -> None:
    """Never written by the archiver, but a hand-made row may hold ``YYYY-MM-DD HH:MM:SS``
    (SQLite only: the other databases store timestamp types)."""
    url = f"sqlite:///{tmp_path / 'archive.db'}"
    db.upgrade(url)
    report_archive.build(url)
    engine = db.make_engine(url)
    try:
        to_old_form_at_0006(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE sync_runs SET finished_at = '2026-10-01 10:00:05'"))
        db.upgrade(url)
        with engine.connect() as conn:
            values = conn.exec_driver_sql("SELECT DISTINCT finished_at FROM sync_runs").all()
        assert values == [("2026-10-01T10:00:05.000000Z",)]
    finally:
        engine.dispose()
