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
    (as_of,) = [sql for sql in blocks("portable") if "from job_versions" in sql]
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


def check_sqlite_literals(engine: Engine) -> None:
    (sql,) = blocks("sqlite")
    with engine.connect() as conn:
        assert sorted(run(conn, sql)) == [
            ("wf-a", "job-1", "completed", 300),
            ("wf-a", "job-2", "running", 200),
        ]
        # what the docs warn about: without the fraction digits, 10:30 sorts before itself
        short = sql.replace("10:30:00.000000", "10:30:00")
        assert ("wf-a", "job-1", "running", 100) in run(conn, short)


def check_postgres_reader(engine: Engine) -> None:
    (sql,) = blocks("postgresql")
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
    (sql,) = blocks("mariadb")
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
