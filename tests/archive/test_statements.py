"""The fast executemany of ``archiver.archive.statements`` writes what SQLAlchemy itself writes.

``Writes.execute`` compiles each statement itself and runs the bind processors it picked on every
value before the driver's ``executemany`` sees it; ``session.execute(statement, rows)`` is
SQLAlchemy's own way to run the same statement with the same parameter sets. Why a test: a bind
processor skipped or swapped (a time zone, a microsecond, a JSON document, a decimal) would write
a different archive on one database only, and nothing else would notice until a report is wrong.

A sequence of payloads that uses every kind of statement of the catalogue is planned step by step
against one database; each step's ``Writes`` goes into that database through the fast path and
into a second, fresh database through ``session.execute``, and after every step both hold the same
rows in every table: read back through the models' types, and as the driver returns them. On
PostgreSQL the append-only kinds take ``COPY`` (``statements.APPENDED``): compared the same way.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import factories
import pytest
from archive_dump import SURROGATE_COLUMNS, dump, first_difference
from conftest import BACKENDS, fresh_database
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from archiver import db
from archiver.archive import statements
from archiver.archive.payload import identify
from archiver.archive.plan import plan
from archiver.archive.statements import KINDS, Writes, statement
from archiver.models import Base
from archiver.sim import jobgen
from archiver.sim.payloads import job_payload

BIG = 2**63 - 1  # the top of a BIGINT column
# aware, not UTC, with microseconds: what the time processor must turn into the stored UTC instant
KOLKATA = timezone(timedelta(hours=5, minutes=30))
T0 = datetime(2026, 10, 2, 15, 36, 7, 123456, tzinfo=KOLKATA)
MINUTE = timedelta(minutes=1, microseconds=1)


def stressed_job() -> dict[str, Any]:
    """A job whose values exercise every bind processor: times in zones with microseconds, JSON
    documents (nested, unicode, empty list, null), NULLs, decimals, integers at the BIGINT top."""
    payload = factories.job("job-stress", "wf-ü", tasks=4, val_errors=3)
    payload.update(
        cost=BIG,
        estimated_duration=BIG - 1,
        progress="33.3333%",
        time_taken="1h2m3.456s",
        created_at="2026-10-01T09:59:00.000001+05:30",
        updated_at="2026-10-01T10:05:00.999999-07:00",
        exec_updated_at=None,
        spec={"nested": [1, {"ключ": "値", "emoji": "🛰"}, []], "empty": {}, "none": None},
        unknown_field={"kept in": ["extra"], "n": -BIG},  # an unknown key: the extra document
    )
    tasks = payload["tasks"]
    tasks[0].update(result=[], inputs=None, info_logs=[[], {}], disclaimer=["ünïcödé ✓"])
    tasks[1].update(result=None, estimated_time_duration=BIG, progress="abc")  # a problem row
    tasks[2].update(updated_at="2026-10-01T10:05:00.000001+14:00", state_msg=None)
    return payload


def changed(payload: dict[str, Any]) -> dict[str, Any]:
    """The next state: a task gone, a task changed, edges rewired, an error resolved."""
    new = copy.deepcopy(payload)
    new.update(status="failed", progress="100%", updated_at="2026-10-01T19:05:00.5+01:00")
    new["tasks"] = new["tasks"][1:]  # t00 removed (and its edges)
    new["tasks"][0].update(status="failed", result={"err": ["ö", None]}, depends_on=["t03"])
    new["val_errors"] = new["val_errors"][1:]
    return new


def simulated(seed: int) -> list[dict[str, Any]]:
    """A few realistic jobs of the simulator, at two moments of their lives."""
    plans = jobgen.population(seed, 3, tasks=(3, 8))
    return [job_payload(p, p.end * share) for p in plans for share in (0.3, 1.0)]


def steps() -> Iterator[list[tuple[str | bytes, datetime]]]:
    """Batches of (body, fetch time) that between them use every kind of statement."""
    first = stressed_job()
    sims = simulated(7)
    yield [(json.dumps(first, ensure_ascii=False), T0)] + [
        (json.dumps(p), T0 + i * MINUTE) for i, p in enumerate(sims[::2])
    ]
    second = changed(first)
    yield [(json.dumps(second), T0 + 10 * MINUTE)] + [
        (json.dumps(p).encode(), T0 + 10 * MINUTE) for p in sims[1::2]
    ]
    # the same data spelled differently (job_body), seen later: only last-seen times move
    yield [(json.dumps(second, indent=1), (T0 + 20 * MINUTE).astimezone(UTC))]
    # a state older by updated_at, never seen: kept as a stale snapshot (job_head)
    yield [(json.dumps({**first, "cost": -BIG}), T0 + 30 * MINUTE)]


def write_plainly(session: Session, writes: Writes) -> None:
    """Each kind through SQLAlchemy's own executemany, in the catalogue's order."""
    dialect = session.get_bind().dialect.name
    for kind in KINDS:
        rows = writes.params.get(kind)
        if rows:
            session.execute(statement(kind, dialect, tuple(rows[0])), rows)


def stored(engine: Engine) -> dict[str, list[str]]:
    """Every table's rows as the driver returns them, no type processing: what the database holds
    (a time stored as naive UTC text, or as text with its offset, reads back the same through the
    models' types, not here). Sorted; surrogate ids left out, as auto-increment gaps may differ."""
    out: dict[str, list[str]] = {}
    with engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            names = ", ".join(c.name for c in table.columns if c.name not in SURROGATE_COLUMNS)
            rows = connection.exec_driver_sql(f"SELECT {names} FROM {table.name}")
            out[table.name] = sorted(repr(tuple(row)) for row in rows)
    return out


def difference(fast: dict[str, list[str]], plain: dict[str, list[str]]) -> str:
    for table in fast:
        if fast[table] != plain[table]:
            only_fast = [r for r in fast[table] if r not in plain[table]][:2]
            only_plain = [r for r in plain[table] if r not in fast[table]][:2]
            return f"{table}: only fast {only_fast}; only plain {only_plain}"
    return "no difference"


def open_sessions(url: str) -> tuple[Engine, sessionmaker[Session]]:
    db.upgrade(url)
    engine = db.make_engine(url)
    return engine, db.session_factory(engine)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_fast_executemany_writes_what_sqlalchemy_writes(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copied: set[str] = set()  # the tables written by COPY
    real_copy = statements._copy

    def copy_and_note(connection: Any, prepared: Any, rows: Any, serialized: Any) -> None:
        copied.add(prepared.sql.split()[1].strip('"'))
        real_copy(connection, prepared, rows, serialized)

    monkeypatch.setattr(statements, "_copy", copy_and_note)
    fast_dir, plain_dir = tmp_path / "fast", tmp_path / "plain"
    fast_dir.mkdir()
    plain_dir.mkdir()
    used: set[str] = set()
    with (
        fresh_database(backend, fast_dir) as fast_url,
        fresh_database(backend, plain_dir) as plain_url,
    ):
        fast_engine, fast = open_sessions(fast_url)
        plain_engine, plain = open_sessions(plain_url)
        try:
            for number, batch in enumerate(steps(), 1):
                writes = Writes()
                with fast.begin() as session:
                    payloads = [(identify(body), at) for body, at in batch]
                    results = plan(session, payloads, writes)
                    assert not [r for r in results if isinstance(r, Exception)]
                    writes.execute(session)
                with plain.begin() as session:
                    write_plainly(session, writes)
                used |= {kind for kind, rows in writes.params.items() if rows}
                left, right = dump(fast_engine), dump(plain_engine)
                assert left == right, f"step {number}: " + first_difference(
                    left, right, ("fast", "plain")
                )
                raw_fast, raw_plain = stored(fast_engine), stored(plain_engine)
                assert raw_fast == raw_plain, f"step {number}: " + difference(raw_fast, raw_plain)
        finally:
            fast_engine.dispose()
            plain_engine.dispose()
    assert used == set(KINDS), f"kinds never written: {sorted(set(KINDS) - used)}"
    by_copy = {t.name for t in statements.APPENDED.values()} if backend == "postgresql" else set()
    assert copied == by_copy
