"""Engines, sessions, the dialect's own upsert, and the migration helper.

Users write the URLs they know (``postgresql://``, ``mysql://``, ``mariadb://``); they are mapped
onto the drivers the extras install (psycopg 3, PyMySQL) so nobody needs to know driver names.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Table, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import Session, sessionmaker

from archiver.config import mask_url
from archiver.errors import ConfigError, DatabaseError

_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}
_EXTRAS = {"psycopg": "postgres", "pymysql": "mysql"}
_BACKENDS = ("sqlite", "postgresql", "mysql", "mariadb")
SUPPORTED = "sqlite, postgresql, mysql/mariadb"


def normalize_url(url: str | URL) -> URL:
    """The SQLAlchemy URL with our drivers and, for MySQL, full-Unicode connections."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(_not_a_url(str(url))) from None
    if parsed.drivername in _DRIVERS:
        parsed = parsed.set(drivername=_DRIVERS[parsed.drivername])
    if parsed.get_backend_name() not in _BACKENDS:
        raise ConfigError(
            f"unsupported database {parsed.get_backend_name()!r} in {mask_url(str(url))}: "
            f"the archiver supports {SUPPORTED}"
        )
    if parsed.get_backend_name() in ("mysql", "mariadb") and "charset" not in parsed.query:
        parsed = parsed.update_query_dict({"charset": "utf8mb4"})
    return parsed


def _not_a_url(text: str) -> str:
    """The user's text back (a password-like part masked), and the URL of the file they likely
    meant."""
    shown = re.sub(r":[^:@/]*@", ":***@", text)
    hint = "" if "://" in text else f" (a SQLite file is written sqlite:///{shown})"
    return f"not a database URL: {shown}{hint}; the archiver supports {SUPPORTED}"


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is switched off so that _sqlite_begin decides.
    dbapi_connection.isolation_level = None
    # WAL lets readers (reports, BI tools) run while the archiver writes; NORMAL is durable at
    # every checkpoint and loses at most the last commits on power loss, never corrupts.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A deferred transaction that reads and then writes cannot wait for a concurrent writer in
    # WAL mode (SQLITE_BUSY at once); taking the write lock up front makes threads queue on the
    # busy timeout instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_connect_read_only(dbapi_connection: Any, _record: Any) -> None:
    # No journal_mode: a read-only connection cannot set it, and the writer already did.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA query_only=ON")
    cursor.close()


def _sqlite_begin_read_only(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")  # a reader takes no write lock: it waits for nobody


def _sqlite_file(parsed: URL) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database."""
    database = parsed.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def _sqlite_read_only_engine(parsed: URL, **kwargs: Any) -> Engine:
    """An engine that opens the file read-only, so a mistyped path is an error, not a new empty
    archive left behind (SQLite creates any file it is asked to open for writing)."""
    path = _sqlite_file(parsed)
    if path is None:
        return _sqlite_engine(parsed, **kwargs)
    if not path.is_file():
        raise DatabaseError(
            f"database file {path} does not exist ({mask_url(str(parsed))}): check the URL; "
            "`archiver db upgrade` creates an archive"
        )
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False)

    engine = create_engine(parsed, creator=connect, **kwargs)
    event.listen(engine, "connect", _sqlite_connect_read_only)
    event.listen(engine, "begin", _sqlite_begin_read_only)
    return engine


def _sqlite_engine(parsed: URL, **kwargs: Any) -> Engine:
    engine = create_engine(parsed, **kwargs)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def make_engine(url: str | URL, *, read_only: bool = False, **kwargs: Any) -> Engine:
    """An engine for the URL; a missing driver is a ConfigError naming the extra to install.

    ``read_only`` is for the commands that only read: on SQLite the file is opened read-only and
    must exist (a DatabaseError says it does not, before anything is created).
    """
    parsed = normalize_url(url)
    try:
        if parsed.get_backend_name() == "sqlite":
            if read_only:
                return _sqlite_read_only_engine(parsed, **kwargs)
            return _sqlite_engine(parsed, **kwargs)
        else:
            kwargs.setdefault("pool_pre_ping", True)
            # a database behind a dead network path must fail a pass, not hang it
            kwargs.setdefault("connect_args", {}).setdefault("connect_timeout", 10)
            if parsed.get_backend_name() in ("mysql", "mariadb"):
                # REPEATABLE READ takes gap locks on every unique-key probe, so two workers
                # archiving two new jobs deadlock on the shared gap. Each job is locked row by
                # row anyway; READ COMMITTED is what the archive needs.
                kwargs.setdefault("isolation_level", "READ COMMITTED")
            engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        driver = parsed.get_driver_name()
        extra = _EXTRAS.get(driver)
        hint = f": pip install 'job-archiver[{extra}]'" if extra else ""
        raise ConfigError(f"no database driver {driver!r} installed{hint}") from exc
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


# --- upsert --------------------------------------------------------------------------------------


def upsert(
    session: Session,
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    key: Sequence[str],
    update: Iterable[str] | None = None,
) -> None:
    """Insert rows, or update ``update`` columns of rows whose natural ``key`` exists.

    One statement executed with many parameter sets. ``update=()`` means insert-or-ignore. Callers
    de-duplicate ``rows`` on ``key`` first: PostgreSQL refuses the same key twice in one statement.
    """
    if not rows:
        return
    columns = tuple(rows[0])
    targets = tuple(c for c in (columns if update is None else update) if c not in key)
    dialect = session.get_bind().dialect.name
    stmt = upsert_statement(dialect, table, tuple(key), targets)
    session.execute(stmt, list(rows))


@functools.lru_cache(maxsize=256)
def upsert_statement(dialect: str, table: Table, key: tuple[str, ...], update: tuple[str, ...]):
    """Built once per shape: constructing ``excluded`` proxies costs more than running it."""
    stmt: Any
    if dialect in ("sqlite", "postgresql"):
        from sqlalchemy.dialects import postgresql, sqlite

        dialect_insert: Any = sqlite.insert if dialect == "sqlite" else postgresql.insert
        stmt = dialect_insert(table)
        if update:
            return stmt.on_conflict_do_update(
                index_elements=list(key), set_={c: stmt.excluded[c] for c in update}
            )
        return stmt.on_conflict_do_nothing(index_elements=list(key))
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        stmt = mysql_insert(table)
        # MySQL has no DO NOTHING: re-assigning a key column to itself is the idiom
        targets = update or key[:1]
        return stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in targets})
    raise DatabaseError(f"unsupported database dialect {dialect!r}")


# --- migrations ----------------------------------------------------------------------------------


def migrations_path() -> Path:
    """Where the Alembic scripts are.

    An installed package carries them as ``archiver/migrations`` (mapped from the checkout's
    top-level ``migrations/`` by pyproject.toml). Running from a checkout's source tree (an
    editable install, or ``python -m pytest``, which puts the checkout before site-packages) there
    is no such folder inside the package: the top-level one beside it is the same set of scripts.
    """
    package = Path(str(resources.files("archiver")))
    installed = package / "migrations"
    return installed if installed.is_dir() else package.parent / "migrations"


def alembic_config(url: str | URL) -> Config:
    """An Alembic config that needs no alembic.ini: works from any folder after a plain install."""
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    config.attributes["database_url"] = normalize_url(url)
    return config


def upgrade(url: str | URL, revision: str = "head") -> str | None:
    """Migrate the database forward to ``revision``; return the revision it is then at.

    Alembic's upgrade to a revision older than the database's does nothing and says nothing, so a
    caller would report a revision the database is not at: that, and a revision nobody knows, is
    a ``DatabaseError`` saying so, before anything is touched. ``+N`` (N steps on) is passed on.
    """
    config = alembic_config(url)
    try:
        if not _RELATIVE_FORWARD.fullmatch(revision):
            _check_forward(ScriptDirectory.from_config(config), url, revision)
        command.upgrade(config, revision)
        return current_revision(url)
    except OperationalError as exc:
        raise DatabaseError(f"cannot migrate {mask_url(str(url))}: {_first_line(exc)}") from None
    except CommandError as exc:  # e.g. "+9" past the head
        raise DatabaseError(f"cannot migrate {mask_url(str(url))}: {_first_line(exc)}") from None


_RELATIVE_FORWARD = re.compile(r"\+\d+")


def _check_forward(script: ScriptDirectory, url: str | URL, revision: str) -> None:
    """Raise DatabaseError unless ``revision`` is known and not behind the database's revision."""
    known = ", ".join(reversed([s.revision for s in script.walk_revisions()]))
    try:
        target = script.get_revision(revision)
    except CommandError:
        raise DatabaseError(
            f"unknown revision {revision!r}: the migrations are {known} (or head)"
        ) from None
    current = current_revision(url)
    if current is None:
        return
    try:
        script.get_revision(current)
    except CommandError:
        raise DatabaseError(
            f"database {mask_url(str(url))} is at revision {current}, which this archiver does "
            f"not know (its migrations are {known}): upgrade does not downgrade"
        ) from None
    older = {s.revision for s in script.iterate_revisions(current, "base")} - {current}
    if target is None or target.revision in older:
        asked = revision if target is None or target.revision == revision else target.revision
        raise DatabaseError(
            f"database {mask_url(str(url))} is at revision {current}, newer than the revision "
            f"asked for, {asked}: upgrade does not downgrade; nothing was changed"
        )


def current_revision(url: str | URL) -> str | None:
    """The database's Alembic revision (None before the first migration)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def downgrade(url: str | URL, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


@functools.cache
def head_revision() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(migrations_path()))
    return ScriptDirectory.from_config(config).get_current_head()


def check_schema(engine: Engine, url: str | None = None) -> None:
    """Raise DatabaseError unless the database is reachable and at the code's schema revision.

    ``url`` is the URL as the user wrote it, for the messages (the engine's carries our driver
    and options).
    """
    shown = mask_url(url if url is not None else str(engine.url))
    try:
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    except OperationalError as exc:
        raise DatabaseError(f"cannot connect to {shown}: {_first_line(exc)}") from None
    head = head_revision()
    if current is None:
        raise DatabaseError(f"{shown} has no archive schema yet: run `archiver db upgrade`")
    if current != head:
        raise DatabaseError(
            f"database schema is at {current}, the code expects {head}: run `archiver db upgrade`"
        )


_RETRYABLE_MYSQL = {1205, 1213}  # lock wait timeout, deadlock
_RETRYABLE_SQLSTATE = {"40001", "40P01"}  # serialization failure, deadlock detected


def is_retryable(exc: DBAPIError) -> bool:
    """A conflict with a concurrent transaction that succeeds when simply run again."""
    orig = exc.orig
    if isinstance(exc, IntegrityError):
        return True  # a concurrent first insert of the same natural key
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _RETRYABLE_MYSQL:
        return True
    if getattr(orig, "sqlstate", None) in _RETRYABLE_SQLSTATE:
        return True
    return "database is locked" in str(orig)


def describe_error(exc: BaseException) -> str:
    """One line about a database failure, without the URL's password."""
    return f"{type(exc).__name__}: {_first_line(exc)}"[:500]


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__
