"""A read-only login for BI tools: the grants it needs, run on PostgreSQL, spelled for MariaDB.

PostgreSQL gets USAGE on the archive's schema, SELECT on every table and view in it, and
default privileges so the tables and views of later migrations are readable too (they apply to
objects created by the user running this, so run it as the user that runs the migrations); and
the role's sessions start read-only (``default_transaction_read_only``), a second guard should a
write privilege be granted to it by mistake later, as the manual SQL in docs/reporting.md does.
MariaDB/MySQL users and grants are usually an administrator's business, so for them the
statement is only spelled out; SQLite has no users at all.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import text
from sqlalchemy.engine import Engine

from archiver.errors import ArchiverError


class GrantError(ArchiverError):
    """The grants cannot be made here (wrong database, unknown role)."""


class NotPostgresError(GrantError):
    """Not PostgreSQL; ``statement`` is what an administrator runs instead, if anything."""

    def __init__(self, message: str, statement: str | None = None) -> None:
        super().__init__(message)
        self.statement = statement


def postgres_reader_grants(schema: str, role: str, quote: Callable[[str], str]) -> list[str]:
    s, r = quote(schema), quote(role)
    return [
        f"ALTER ROLE {r} SET default_transaction_read_only = on",
        f"GRANT USAGE ON SCHEMA {s} TO {r}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {r}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {s} GRANT SELECT ON TABLES TO {r}",
    ]


def mariadb_reader_grant(database: str, role: str) -> str:
    """``ROLE`` is a MariaDB role or a user, ``name`` or ``name@host`` (host ``%`` if left out)."""
    name, _, host = role.partition("@")

    def literal(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"

    grantee = literal(name) + (f"@{literal(host)}" if host else "")
    return f"GRANT SELECT ON `{database.replace('`', '``')}`.* TO {grantee};"


def grant_reader(engine: Engine, role: str) -> list[str]:
    """Grant ``role`` read-only access to the archive on PostgreSQL; returns what was run."""
    dialect = engine.dialect.name
    if dialect in ("mysql", "mariadb"):
        database = engine.url.database or "archive"
        raise NotPostgresError(
            "not granted: grant-reader runs on PostgreSQL only; "
            "on MariaDB/MySQL an administrator runs the GRANT above",
            mariadb_reader_grant(database, role),
        )
    if dialect != "postgresql":
        raise NotPostgresError(
            f"grant-reader runs on PostgreSQL only; {dialect} has no users: give BI tools a "
            "read-only copy or open the file read-only (sqlite:///file:archiver.db?mode=ro&uri=true)"
        )
    with engine.begin() as conn:
        if conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}) is None:
            raise GrantError(
                f"role {role!r} does not exist: create it first, e.g. "
                f"CREATE ROLE {engine.dialect.identifier_preparer.quote(role)} LOGIN PASSWORD '…'"
            )
        schema = conn.scalar(text("SELECT current_schema()"))
        statements = postgres_reader_grants(schema, role, engine.dialect.identifier_preparer.quote)
        for statement in statements:
            conn.exec_driver_sql(statement)
    return statements
