"""``archiver db``: create, migrate and check the archive's schema."""

from __future__ import annotations

import click

from archiver.cli.common import (
    Abort,
    build_settings,
    cli,
    open_archive,
    reported_errors,
    settings_options,
)


@cli.group()
def db() -> None:
    """Create and migrate the archive's database."""


@db.command("upgrade")
@settings_options("db upgrade")
@click.option("--revision", default="head", show_default=True, help="Alembic revision to reach.")
def db_upgrade(database_url: str | None, revision: str) -> None:
    """Create or migrate the database to the latest schema (never to an older one)."""
    from archiver import db as dbmod

    settings = build_settings(database_url=database_url)
    with reported_errors(settings):
        reached = dbmod.upgrade(settings.database_url, revision)
    click.echo(f"database {settings.masked_database_url()} is at revision {reached or 'base'}")


@db.command("check")
@settings_options("db check")
def db_check(database_url: str | None) -> None:
    """Exit 0 when the database is reachable and at the code's schema, else say why."""
    settings = build_settings(database_url=database_url)
    with open_archive(settings, read_only=True):
        pass
    click.echo(f"database {settings.masked_database_url()} is up to date")


@db.command("grant-reader")
@click.argument("role")
@settings_options("db grant-reader")
def db_grant_reader(role: str, database_url: str | None) -> None:
    """Let ROLE read every table and view of the archive, and nothing more (PostgreSQL).

    Run it as the user that runs the migrations: later tables and views become readable too.
    On MariaDB/MySQL it prints the GRANT for an administrator to run.
    """
    from archiver.reporting import grants

    settings = build_settings(database_url=database_url)
    with open_archive(settings) as sessions:
        try:
            statements = grants.grant_reader(sessions.kw["bind"], role)
        except grants.NotPostgresError as exc:
            if exc.statement:
                click.echo(exc.statement)
            raise Abort(str(exc)) from None
    for statement in statements:
        click.echo(f"{statement};")
    click.echo(f"role {role} can now read {settings.masked_database_url()}", err=True)
