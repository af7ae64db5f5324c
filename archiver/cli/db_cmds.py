"""``archiver db``: create, migrate and check the archive's schema."""

from __future__ import annotations

import click

from archiver import db as dbmod
from archiver.cli.common import build_settings, cli, database_option, open_archive, reported_errors


@cli.group()
def db() -> None:
    """Create and migrate the archive's database."""


@db.command("upgrade")
@database_option
@click.option("--revision", default="head", show_default=True, help="Alembic revision to reach.")
def db_upgrade(database_url: str | None, revision: str) -> None:
    """Create or migrate the database to the latest schema."""
    settings = build_settings(database_url=database_url)
    with reported_errors(settings):
        dbmod.upgrade(settings.database_url, revision)
    click.echo(f"database {settings.masked_database_url()} is at revision {revision}")


@db.command("check")
@database_option
def db_check(database_url: str | None) -> None:
    """Exit 0 when the database is reachable and at the code's schema, else say why."""
    settings = build_settings(database_url=database_url)
    with open_archive(settings):
        pass
    click.echo(f"database {settings.masked_database_url()} is up to date")
