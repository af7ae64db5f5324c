"""Database fixtures: every database test runs on SQLite, and on PostgreSQL and MariaDB when
``ARCHIVER_TEST_POSTGRES_URL`` / ``ARCHIVER_TEST_MYSQL_URL`` are set (``.ci/run`` sets both).

Each test gets its own database: a file on SQLite, a schema on PostgreSQL (selected through the
connection's ``search_path``), a database on MariaDB, migrated by the real migrations, and
dropped afterwards. Tests never share data.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker

sys.path.insert(0, str(Path(__file__).parent))

from archiver import db

POSTGRES_URL = os.environ.get("ARCHIVER_TEST_POSTGRES_URL")
MYSQL_URL = os.environ.get("ARCHIVER_TEST_MYSQL_URL")
# CI sets this so that a missing URL fails the run instead of quietly skipping a database.
REQUIRE_ALL = os.environ.get("ARCHIVER_REQUIRE_ALL_DATABASES") == "1"
BACKENDS = ("sqlite", "postgresql", "mariadb")


def _fresh_postgres(name: str) -> tuple[str, callable]:
    assert POSTGRES_URL
    admin = db.make_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    url = db.normalize_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={name}"})

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


def _fresh_mysql(name: str) -> tuple[str, callable]:
    assert MYSQL_URL
    admin = db.make_engine(MYSQL_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    url = db.normalize_url(MYSQL_URL).set(database=name)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE `{name}`"))
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """URL of an empty, isolated database on ``backend``, dropped afterwards (or a skip)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'archive.db'}"
        return
    missing = {"postgresql": not POSTGRES_URL, "mariadb": not MYSQL_URL}[backend]
    if missing:
        var = "ARCHIVER_TEST_POSTGRES_URL" if backend == "postgresql" else "ARCHIVER_TEST_MYSQL_URL"
        reason = f"{backend} tests need {var} (bash .ci/run sets it)"
        if REQUIRE_ALL:
            pytest.fail(reason)
        pytest.skip(reason)
    url, drop = (_fresh_postgres if backend == "postgresql" else _fresh_mysql)(name)
    try:
        yield url
    finally:
        drop()


@pytest.fixture(params=BACKENDS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of an empty, isolated database on each configured backend."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """URL of an isolated database migrated to head by the real migrations."""
    db.upgrade(empty_db_url)
    return empty_db_url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = db.make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return db.session_factory(engine)


def backend_of(url: str) -> str:
    return make_url(url).get_backend_name()


@pytest.fixture(scope="module", params=BACKENDS)
def report_archive_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database holding the scripted archive of ``report_archive.py``, built once per module.

    Building it once keeps the reporting tests fast on three databases; they only read it.
    """
    import report_archive

    with fresh_database(request.param, tmp_path_factory.mktemp("reports")) as url:
        db.upgrade(url)
        report_archive.build(url)
        yield url


# --- the integration marker ----------------------------------------------------------------------

# requesting one of these means a real database (a file, a schema, a database on a server)
DATABASE_FIXTURES = frozenset(
    {"db_url", "empty_db_url", "engine", "sessions", "report_archive_url", "fresh_database"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``integration`` every test that needs a database: one that requests a database
    fixture, directly or through another fixture, or whose module opens databases itself with
    ``fresh_database``. Tests that drive a real server or a subprocess carry the mark in their
    module (``pytestmark``), as their use of it cannot be seen from here."""
    for item in items:
        uses = set(getattr(item, "fixturenames", ()))
        module = getattr(item, "module", None)
        if uses & DATABASE_FIXTURES or getattr(module, "fresh_database", None) is fresh_database:
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per skip reason with its count: a machine without the database URLs skips a
    third of the suite, and a line per skipped test drowned everything else."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        reasons[reason.removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("skips by reason", sep="-")
        for reason, count in reasons.most_common():
            terminalreporter.write_line(f"SKIPPED {count}: {reason}")
