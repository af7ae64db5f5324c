"""A field joins the chain in a new encoding; rows of the old one keep verifying.

The scenario of ``docs/audit.md``: an archive holds v1 rows, the API gains a field, a migration
adds its column, the declaration says it joined at encoding 2, and from then on rows are v2. The
field is added here for the test only: a scratch Alembic revision on top of the real ones, and the
declaration, the encoding registry and the names derived from them at import patched to what they
would be had the field been declared in ``archiver.fields``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import factories
import pytest
from alembic import command
from sqlalchemy import BigInteger, Column, Select, Table, select, update
from sqlalchemy.orm import Session, sessionmaker

from archiver import db
from archiver import fields as declared
from archiver.archive import chain, load, payload, plan
from archiver.archive.batches import archive_one
from archiver.audit import current
from archiver.audit.verify import verify
from archiver.fields import Field, Kind
from archiver.models import CHANGES, JOB_VERSIONS, JOBS, SNAPSHOTS, TASK_VERSIONS

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)
HISTORY = (SNAPSHOTS, JOB_VERSIONS, TASK_VERSIONS, CHANGES)
NEW = "priority"  # the field the API gains

SCRATCH_REVISION = '''\
"""Add jobs.priority (a test's scratch revision)"""

import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = {head!r}
branch_labels = None
depends_on = None


def upgrade():
    for name in ("jobs", "job_versions"):
        op.add_column(name, sa.Column("priority", sa.BigInteger(), nullable=True))


def downgrade():
    for name in ("jobs", "job_versions"):
        op.drop_column(name, "priority")
'''


@contextmanager
def _engine(url: str) -> Iterator[sessionmaker[Session]]:
    """A fresh engine each time: SQLAlchemy caches compiled statements per engine, and a cached
    ``SELECT jobs.*`` from before the column was added would not read it."""
    engine = db.make_engine(url)
    try:
        yield db.session_factory(engine)
    finally:
        engine.dispose()


@contextmanager
def _session(url: str) -> Iterator[Session]:
    with _engine(url) as sessions, sessions() as session:
        yield session


def _versions(url: str, table: Table) -> set[int]:
    with _session(url) as session:
        return set(session.scalars(select(table.c.chain_version).distinct()))


def _breaks(url: str) -> list[tuple[str, int | None, str]]:
    with _session(url) as session:
        return [(b.table, b.row_id, b.kind) for b in verify(session).breaks]


def _execute(url: str, statement: Any) -> None:
    with _session(url) as session:
        session.execute(statement)
        session.commit()


def _archive(url: str, *payloads: dict[str, Any], start: int) -> None:
    with _engine(url) as sessions:
        for i, body in enumerate(payloads):
            archive_one(sessions, body, T0 + timedelta(hours=start + i))


def _apply_scratch_revision(url: str, folder: Path) -> None:
    folder.mkdir()
    (folder / "9001_priority.py").write_text(SCRATCH_REVISION.format(head=db.head_revision()))
    config = db.alembic_config(url)
    config.set_main_option("path_separator", "os")
    config.set_main_option(
        "version_locations", os.pathsep.join([str(db.migrations_path() / "versions"), str(folder)])
    )
    command.upgrade(config, "9001")


@pytest.fixture
def field_added(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """What declaring ``priority`` with ``since=2`` in archiver.fields would make of the code."""
    job = (*declared.JOB, Field(NEW, Kind.INTEGER, NEW, since=2))
    monkeypatch.setattr(declared, "JOB", job)
    monkeypatch.setattr(chain, "ENCODINGS", chain.encodings(job, declared.TASK))
    monkeypatch.setattr(chain, "CURRENT", 2)
    # the names derived from the declaration when these modules were imported
    for module in (payload, plan, current):
        monkeypatch.setattr(module, "JOB_FIELDS", declared.names(job))
    columns = [(t, Column(NEW, BigInteger())) for t in (JOBS, JOB_VERSIONS)]  # the model columns
    for table, column in columns:
        table.append_column(column)
    _forget_selected_columns()
    try:
        yield
    finally:
        for table, column in columns:
            table._columns.remove(column)
        _forget_selected_columns()


def _forget_selected_columns() -> None:
    """A SELECT built at import (``load``'s ``SELECT jobs.*``) remembers the columns it selects
    once it has run; a release with the new column builds it anew, here it is told to forget."""
    for value in (*vars(load).values(), *vars(plan).values()):
        if isinstance(value, Select):
            value._reset_memoizations()


def test_v2_is_v1_plus_the_new_field() -> None:
    job = (*declared.JOB, Field(NEW, Kind.INTEGER, NEW, since=2))
    registry = chain.encodings(job, declared.TASK)
    assert sorted(registry) == [1, 2]
    assert registry[1] is chain.V1
    assert registry[2]["job_versions"] == (*chain.V1["job_versions"], NEW)
    for table in ("job_snapshots", "task_versions", "job_changes"):
        assert registry[2][table] == chain.V1[table]


def test_an_archive_of_two_encodings_verifies_and_names_edits_in_both(
    empty_db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = empty_db_url
    db.upgrade(url)
    a = factories.job("job-a", tasks=2, val_errors=0, cost=100)
    _archive(url, a, factories.evolve(a, cost=150, updated_at="2026-10-05T09:00:00Z"), start=0)
    assert all(_versions(url, t) == {1} for t in HISTORY)

    _apply_scratch_revision(url, tmp_path / "scratch")
    request.getfixturevalue("field_added")
    assert chain.Chain().version == 2
    later = factories.evolve(a, cost=160, updated_at="2026-10-05T10:00:00Z", priority=5)
    _archive(url, later, factories.job("job-b", tasks=1, val_errors=0, priority=7), start=2)

    assert all(_versions(url, t) == {1, 2} for t in HISTORY)
    with _session(url) as session:
        v2, stored = session.execute(
            select(JOB_VERSIONS.c.id, JOB_VERSIONS.c[NEW]).where(
                JOB_VERSIONS.c.job_id == "job-a", JOB_VERSIONS.c.chain_version == 2
            )
        ).one()
        v1 = session.scalars(
            select(JOB_VERSIONS.c.id)
            .where(JOB_VERSIONS.c.job_id == "job-a", JOB_VERSIONS.c.chain_version == 1)
            .order_by(JOB_VERSIONS.c.id)
        ).first()
        logged = session.scalars(select(CHANGES.c.new_value).where(CHANGES.c.field == NEW)).all()
    assert stored == 5 and v1 is not None
    assert sorted(logged) == ["5", "7"]  # the change log follows the declaration
    assert _breaks(url) == []

    # the new field is covered by v2: editing it in a v2 row breaks that row's hash
    _execute(url, update(JOB_VERSIONS).where(JOB_VERSIONS.c.id == v2).values({NEW: 6}))
    assert ("job_versions", v2, "edited") in _breaks(url)
    _execute(url, update(JOB_VERSIONS).where(JOB_VERSIONS.c.id == v2).values({NEW: 5}))
    assert _breaks(url) == []

    # and a v1 row is still checked with v1
    _execute(url, update(JOB_VERSIONS).where(JOB_VERSIONS.c.id == v1).values(cost=1))
    assert _breaks(url) == [("job_versions", v1, "edited")]


def test_a_row_of_an_unknown_encoding_is_a_break(db_url: str) -> None:
    _archive(db_url, factories.job("job-a", tasks=1, val_errors=0), start=0)
    with _session(db_url) as session:
        row_id = session.scalars(select(CHANGES.c.id).order_by(CHANGES.c.id)).first()
    _execute(db_url, update(CHANGES).where(CHANGES.c.id == row_id).values(chain_version=7))
    with _session(db_url) as session:
        breaks = verify(session).breaks
    assert [(b.table, b.row_id, b.kind) for b in breaks] == [("job_changes", row_id, "edited")]
    assert "chain_version 7 is no known encoding" in breaks[0].detail


def test_rows_archived_before_chain_version_are_v1(db_url: str) -> None:
    """Migration 0006 on an archive that has rows: every one is v1 and still verifies."""
    a = factories.job("job-a", tasks=2, val_errors=1)
    _archive(db_url, a, factories.evolve(a, cost=7, updated_at="2026-10-05T09:00:00Z"), start=0)
    db.downgrade(db_url, "0005")
    db.upgrade(db_url)
    assert all(_versions(db_url, t) == {1} for t in HISTORY)
    assert _breaks(db_url) == []
