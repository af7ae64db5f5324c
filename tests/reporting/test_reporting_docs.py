"""Every SQL block of docs/reporting.md runs, on every database, against the scripted archive.

Blocks fenced ```sql are portable: each runs on all three databases with the documented
parameters bound (``:t``, ``:t1``, ``:t2``, ``:workflow_id``, ``:job_id``) and must answer
something. Blocks fenced ```sql postgresql / mariadb / sqlite run on that database only; the
role and database names in the grant examples are swapped for the test's own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from report_archive import at
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from archiver import db
from archiver.reporting import grants
from archiver.sqltypes import UTCDateTime

DOC = (Path(__file__).parents[2] / "docs" / "reporting.md").read_text()
BLOCK = re.compile(r"^```sql([^\n]*)\n(.*?)^```", re.M | re.S)
PARAMETER = re.compile(r"(?<![:\w]):(\w+)")
FLAVORS = {"": "portable", "postgresql": "postgresql", "mariadb": "mariadb", "sqlite": "sqlite"}
PARAMETERS: dict[str, Any] = {
    "t": at("10-01 10:30"),
    "t1": at("10-01 10:00"),
    "t2": at("10-01 13:00"),
    "workflow_id": "wf-a",
    "job_id": "job-1",
}


def blocks(flavor: str) -> list[str]:
    return [sql for info, sql in BLOCK.findall(DOC) if FLAVORS.get(info.strip()) == flavor]


def statements(sql: str) -> list[str]:
    return [s.strip() for s in sql.split(";") if s.strip()]


def run(conn: Connection, sql: str) -> list[tuple]:
    statement = text(sql)
    for name in set(PARAMETER.findall(sql)):
        value = PARAMETERS[name]
        kind = UTCDateTime() if isinstance(value, datetime) else None
        statement = statement.bindparams(bindparam(name, value, type_=kind))
    return [tuple(row) for row in conn.execute(statement)]


@pytest.fixture(scope="module")
def archive(report_archive_url: str) -> Iterator[Engine]:
    engine = db.make_engine(report_archive_url)
    yield engine
    engine.dispose()


def test_every_block_has_a_known_flavor_and_every_question_its_sql() -> None:
    assert [info for info, _ in BLOCK.findall(DOC) if info.strip() not in FLAVORS] == []
    sections = re.split(r"^## ", DOC, flags=re.M)
    for number in range(1, 9):
        (section,) = [s for s in sections if s.startswith(f"{number}. ")]
        assert "```sql\n" in section, f"question {number} has no portable SQL"


@pytest.mark.parametrize("index", range(len(blocks("portable"))))
def test_portable_block_answers(archive: Engine, index: int) -> None:
    sql = blocks("portable")[index]
    with archive.connect() as conn:
        for statement in statements(sql):
            assert run(conn, statement) != [], statement


def test_point_in_time_and_health_queries_give_the_expected_answers(archive: Engine) -> None:
    (as_of,) = [sql for sql in blocks("portable") if "from job_versions" in sql and ":t" in sql]
    (health,) = [sql for sql in blocks("portable") if "as passes" in sql]
    with archive.connect() as conn:
        states = run(conn, statements(as_of)[0])
        assert [(r[1], r[2], r[3], r[5]) for r in states] == [
            ("job-1", 3, "completed", 300),
            ("job-2", 1, "running", 200),
        ]
        ((passes, unfinished, payloads, errors, before, last_seen),) = run(conn, health)
    assert (passes, unfinished, payloads, errors, before) == (2, 0, 3, 1, None)
    assert last_seen is not None


def test_database_specific_blocks(archive: Engine) -> None:
    backend = archive.dialect.name
    if backend == "sqlite":
        check_sqlite_literals(archive)
    elif backend == "postgresql":
        check_postgres_reader(archive)
    else:
        check_mariadb_reader(archive)


AT_10_30 = [("wf-a", "job-1", "completed", 300), ("wf-a", "job-2", "running", 200)]
# the session time zones the literals must not depend on
SESSION_ZONE = {"postgresql": "SET TIME ZONE 'Asia/Kolkata'", "mariadb": "SET time_zone = '+05:00'"}


def literal_blocks(flavor: str) -> list[str]:
    """The as-of blocks of *Time literals* and question 4: a time written in the SQL."""
    return [sql for sql in blocks(flavor) if "from job_versions" in sql and ":t" not in sql]


@pytest.mark.parametrize("flavor", ["portable", "own"])
def test_time_literals_give_the_state_at_that_time(archive: Engine, flavor: str) -> None:
    """The documented literals answer like the bound ``:t`` = 10:30, in any session time zone."""
    backend = "mariadb" if archive.dialect.name == "mysql" else archive.dialect.name
    (sql,) = literal_blocks("portable" if flavor == "portable" else backend)
    with archive.connect() as conn:
        try:
            if backend in SESSION_ZONE:
                conn.exec_driver_sql(SESSION_ZONE[backend])
            for statement in statements(sql):
                assert sorted(run(conn, statement)) == AT_10_30, statement
        finally:
            conn.invalidate()  # the session's time zone goes with it, not back to the pool


def check_sqlite_literals(engine: Engine) -> None:
    """What the docs say of other spellings on SQLite, on job-3's version at 00:15:00.25."""
    (sql,) = literal_blocks("sqlite")
    full = statements(sql)[0].replace("2026-10-01T10:30", "2026-10-03T00:15")
    short = full.replace("00:15:00.000000Z", "00:15:00Z")
    spaced = statements(sql)[0].replace("2026-10-01T10:30:00.000000Z", "2026-10-01 10:30:00")
    with engine.connect() as conn:
        assert ("wf-b", "job-3", "running", 40) in run(conn, full)
        # the short form means the end of its second: 00:15:00.25 counts as before it
        assert ("wf-b", "job-3", "running", 90) in run(conn, short)
        # a space sorts before every time of that day: jobs first seen at 10:00 are absent
        assert run(conn, spaced) == []


def check_postgres_reader(engine: Engine) -> None:
    (sql,) = [sql for sql in blocks("postgresql") if "GRANT" in sql]
    for grant in grants.postgres_reader_grants("public", "bi_reader", lambda name: name):
        assert grant in sql  # the docs show what `archiver db grant-reader` runs
    role = f"bi_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        schema = conn.scalar(text("SELECT current_schema()"))
        for statement in statements(sql):
            statement = statement.replace("bi_reader", role)
            conn.exec_driver_sql(statement.replace("SCHEMA public", f'SCHEMA "{schema}"'))
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SET ROLE {role}")
            assert len(conn.exec_driver_sql("SELECT * FROM v_cost_by_day").all()) == 4
            with pytest.raises(DBAPIError, match="permission denied"):
                conn.exec_driver_sql("DELETE FROM jobs")
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")


def check_mariadb_reader(engine: Engine) -> None:
    (sql,) = [sql for sql in blocks("mariadb") if "GRANT" in sql]
    database = engine.url.database
    assert grants.mariadb_reader_grant("archive", "bi_reader@%") in sql
    user = f"bi_{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        for statement in statements(sql):
            statement = statement.replace("`archive`", f"`{database}`")
            conn.execute(text(statement.replace("'bi_reader'", f"'{user}'")))  # % is escaped
    reader = db.make_engine(engine.url.set(username=user, password="change-me"))
    try:
        with reader.connect() as conn:
            assert len(conn.exec_driver_sql("SELECT * FROM v_cost_by_day").all()) == 4
            with pytest.raises(DBAPIError, match="command denied"):
                conn.exec_driver_sql("DELETE FROM jobs")
    finally:
        reader.dispose()
        with engine.begin() as conn:
            conn.execute(text(f"DROP USER '{user}'@'%'"))
