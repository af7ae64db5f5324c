"""Fresh, isolated databases for one benchmark run, and bare driver connections to them.

Each run gets empty databases migrated by the real migrations (``archiver.db.upgrade``): a file
per database on SQLite, a schema per database on PostgreSQL (selected through ``search_path``,
dropped afterwards). The bare connections are configured the way the archiver configures its own
(same pragmas on SQLite, same server on PostgreSQL), so that the floor pays what the database
imposes and nothing the driver setup adds or saves.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from archiver import db

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def add_output_options(parser: argparse.ArgumentParser, figures: str) -> None:
    """``--postgres-url`` (default ``BENCH_POSTGRES_URL``) and ``--json``, as every harness
    spells them."""
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL),
        help=f"server for the PostgreSQL {figures} (a schema per run is made and dropped)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON here")


_names = itertools.count()


@dataclass(frozen=True)
class Database:
    """One empty, migrated database: its SQLAlchemy URL and how to open a bare connection."""

    backend: str  # "sqlite" | "postgresql"
    url: str
    path: Path | None = None  # SQLite file
    schema: str | None = None  # PostgreSQL schema
    server: str | None = None  # PostgreSQL URL without the schema

    def connect(self) -> Any:
        """A bare DB-API connection (stdlib ``sqlite3`` / psycopg), set up like the archiver's."""
        if self.backend == "sqlite":
            assert self.path is not None
            con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            for pragma in (
                "journal_mode=WAL",
                "synchronous=NORMAL",
                "busy_timeout=30000",
                "foreign_keys=ON",
            ):
                con.execute(f"PRAGMA {pragma}")
            return con
        import psycopg
        from psycopg.types.string import TextLoader

        assert self.server is not None
        con = psycopg.connect(self.server, options=f"-csearch_path={self.schema}")
        # JSON values stay the text the archiver wrote: read and written back byte for byte
        for name in ("json", "jsonb"):
            con.adapters.register_loader(name, TextLoader)
        return con


def postgres_reachable(url: str) -> str | None:
    """None if the server answers, else why not (shown in the table instead of the rows)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'job-archiver[postgres]')"
    try:
        with psycopg.connect(url, connect_timeout=5) as con:
            con.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {url} is not reachable: {str(exc).strip().splitlines()[0]}"
    return None


@contextmanager
def fresh(backend: str, names: tuple[str, ...], postgres_url: str) -> Iterator[dict[str, Database]]:
    """Empty migrated databases, one per name, dropped (or deleted) on exit."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            out = {}
            for name in names:
                path = Path(tmp) / f"{name}.db"
                out[name] = Database("sqlite", f"sqlite:///{path}", path=path)
                db.upgrade(out[name].url)
            yield out
        return
    import psycopg

    run = f"bench_{os.getpid()}_{next(_names)}"
    schemas = {name: f"{run}_{name}" for name in names}
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        try:
            out = {}
            for name, schema in schemas.items():
                admin.execute(f'CREATE SCHEMA "{schema}"')
                url = db.normalize_url(postgres_url).update_query_dict(
                    {"options": f"-csearch_path={schema}"}
                )
                out[name] = Database(
                    "postgresql",
                    url.render_as_string(hide_password=False),
                    schema=schema,
                    server=postgres_url,
                )
                db.upgrade(out[name].url)
            yield out
        finally:
            for schema in schemas.values():
                admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def server_version(backend: str, postgres_url: str) -> str:
    """The database's version, for the machine description."""
    if backend == "sqlite":
        return sqlite3.sqlite_version
    import psycopg

    with psycopg.connect(postgres_url) as con:
        row = con.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"
