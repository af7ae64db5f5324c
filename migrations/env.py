"""Alembic environment: the URL comes from the archiver's settings, never from alembic.ini.

Order of precedence: a URL handed over by ``archiver db upgrade`` (``config.attributes``), then
``sqlalchemy.url`` if someone set one in alembic.ini, then ``ARCHIVER_DATABASE_URL`` / the default,
exactly as the archiver itself resolves it. SQLite gets batch mode, since it cannot ALTER.

Run by ``alembic`` from a checkout, logging is configured from alembic.ini, as Alembic's own
template does, so ``alembic upgrade`` says what it runs; ``archiver db upgrade`` has no ini file
and leaves the archiver's logging alone.
"""

from __future__ import annotations

import logging.config

from alembic import context

from archiver.config import settings_from_env
from archiver.db import make_engine, normalize_url
from archiver.models import Base

config = context.config
if config.config_file_name is not None:
    logging.config.fileConfig(config.config_file_name)
target_metadata = Base.metadata


def _url():
    given = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return normalize_url(given or settings_from_env().database_url)


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    _configure(url=_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(_url())
    try:
        with engine.connect() as connection:
            _configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
