"""A normalized, database-independent dump of an archive, and shared helpers of the reliability
suites (hostile payloads, parity, replay, secrets).

Why: the same archive read back from SQLite, PostgreSQL and MariaDB differs in ways that do not
matter (surrogate ids, naive or aware datetimes, a Decimal's scale, JSON key order) and in ways
that do (a lost digit, a shifted time, a dropped or extra row). ``dump`` normalizes the first kind
away so that comparing two dumps with ``==`` shows only the second: the parity suite compares the
three databases, the hostile suite compares one database before and after a rejected payload.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table, UniqueConstraint, func, inspect, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from archiver import db
from archiver.archive.jsonload import canonical
from archiver.models import Base

SURROGATE_COLUMNS = frozenset({"id", "sync_run_id"})  # differ by insert order and rollbacks
# What the archiver writes about a job's data, as opposed to its bookkeeping of passes and polls.
ARCHIVE_TABLES = (
    "jobs",
    "tasks",
    "task_dependencies",
    "val_errors",
    "job_snapshots",
    "job_versions",
    "task_versions",
    "job_changes",
    "ingest_problems",
)
HISTORY_TABLES = ("job_versions", "task_versions", "job_changes", "job_snapshots")
# When the archiver saw something: differs between any two runs of the same sequence, whatever
# happened. The hash chains cover these times, so their hashes differ too; chain_seq does not
# (no row missing or extra), and the suites that drop these run ``archiver verify`` instead.
OBSERVATION_TIMES = frozenset(
    {
        "first_seen_at",
        "last_seen_at",
        "last_changed_at",
        "removed_at",
        "resolved_at",
        "valid_from",
        "valid_to",
        "observed_at",
        "fetched_at",
        "prev_sha256",
        "row_sha256",
        "chain_sha256",
    }
)

Row = tuple[str | None, ...]


@dataclass(frozen=True)
class TableDump:
    columns: tuple[str, ...]
    rows: tuple[Row, ...]


Dump = dict[str, TableDump]


def normalize(value: Any) -> str | None:
    """One spelling per value, whatever the database and driver returned."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    if isinstance(value, float):
        return normalize(Decimal(repr(value)))
    if isinstance(value, datetime):
        # every datetime column of the archive is aware UTC; a naive one here is itself a defect
        assert value.tzinfo is not None, f"naive datetime {value!r} read back"
        return value.astimezone(UTC).isoformat(timespec="microseconds")
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return canonical(value)
    raise TypeError(f"unexpected {type(value).__name__} read back: {value!r}")


def natural_key(table: Table) -> list[str]:
    """The columns of the table's unique constraint (its upsert key), if it has one."""
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint):
            return [column.name for column in constraint.columns]
    return []


def _columns(table: Table) -> list[str]:
    key = natural_key(table)
    rest = [c.name for c in table.columns if c.name not in key and c.name not in SURROGATE_COLUMNS]
    return key + rest


def _sort_key(row: Row) -> tuple[tuple[bool, str], ...]:
    return tuple((value is not None, value or "") for value in row)


def dump(
    engine: Engine,
    *,
    tables: Iterable[str] | None = None,
    workflow_id: str | None = None,
) -> Dump:
    """Every row of ``tables`` (default: every table of the models), normalized and sorted by
    natural key then every other column, surrogate ids dropped; only ``workflow_id``'s rows if
    given."""
    wanted = set(tables) if tables is not None else None
    out: Dump = {}
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            if wanted is not None and table.name not in wanted:
                continue
            names = _columns(table)
            query = select(*(table.c[name] for name in names))
            if workflow_id is not None:
                if "workflow_id" not in table.c:
                    continue
                query = query.where(table.c.workflow_id == workflow_id)
            rows = [tuple(normalize(v) for v in row) for row in connection.execute(query)]
            rows.sort(key=_sort_key)
            out[table.name] = TableDump(tuple(names), tuple(rows))
    return out


_NAIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?$")


def normalize_view_value(value: Any) -> str | None:
    """Like ``normalize``, for values read through views without the models' types: SQLite
    returns times as text and MariaDB naive datetimes (both UTC by the archive's convention), and
    numbers come back as int, float or Decimal depending on the database's arithmetic."""
    if isinstance(value, str) and _NAIVE_TIME.match(value):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if isinstance(value, float):
        return normalize(Decimal(repr(value)))
    return normalize(value)


def dump_views(engine: Engine) -> Dump:
    """Every row of every view (the reporting views of the migrations), normalized and sorted."""
    out: Dump = {}
    with engine.connect() as connection:
        for name in sorted(inspect(engine).get_view_names()):
            result = connection.execute(text(f"SELECT * FROM {name}"))
            rows = sorted(
                (tuple(normalize_view_value(v) for v in row) for row in result), key=_sort_key
            )
            out[name] = TableDump(tuple(result.keys()), tuple(rows))
    return out


def first_difference(left: Dump, right: Dump, names: tuple[str, str] = ("left", "right")) -> str:
    """A readable account of where two dumps differ first (for assertion messages)."""
    for table in sorted(set(left) | set(right)):
        a, b = left.get(table), right.get(table)
        if a == b:
            continue
        if a is None or b is None:
            return f"{table}: only in {names[0] if b is None else names[1]}"
        only_a = [r for r in a.rows if r not in b.rows]
        only_b = [r for r in b.rows if r not in a.rows]
        shown = []
        for label, rows in ((names[0], only_a), (names[1], only_b)):
            for row in rows[:3]:
                cells = {
                    c: (v if v is None or len(v) < 120 else v[:117] + "...")
                    for c, v in zip(a.columns, row, strict=True)
                }
                shown.append(f"  only in {label}: {cells}")
        counts = f"{len(a.rows)} rows vs {len(b.rows)} rows"
        return f"{table} ({counts}):\n" + "\n".join(shown)
    return "no difference"


def count(sessions: sessionmaker[Session], model: Any, *where: Any) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@dataclass
class Archive:
    """A migrated database shared by the tests of one module on one backend."""

    backend: str
    url: str
    engine: Engine
    sessions: sessionmaker[Session]


@contextmanager
def open_archive(backend: str, url: str) -> Iterator[Archive]:
    db.upgrade(url)
    engine = db.make_engine(url)
    try:
        yield Archive(backend, url, engine, db.session_factory(engine))
    finally:
        engine.dispose()
