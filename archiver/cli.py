"""The ``archiver`` command: parse options, build settings, call one function, print the result.

Logic lives below this module. Here the project's own errors become one line on stderr and a
non-zero exit status; a traceback only ever reaches the screen for a genuine bug.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from archiver import __version__
from archiver import db as dbmod
from archiver.config import Settings, mask_url, settings_from_env
from archiver.demo import run_sample_demo
from archiver.errors import ArchiverError
from archiver.ingest import Item, read_items
from archiver.ingest import ingest as run_ingest
from archiver.queries import job_history
from archiver.render import history_json, history_table
from archiver.statuses import StatusClassifier
from archiver.values import parse_timestamp

F = TypeVar("F", bound=Callable[..., Any])


class Abort(click.ClickException):
    """A failed command: one line on stderr, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"archiver: error: {self.format_message()}", err=True)


@contextmanager
def reported_errors(settings: Settings | None = None) -> Iterator[None]:
    """Turn our errors and database failures into one line; never echo a secret."""
    try:
        yield
    except ArchiverError as exc:
        raise Abort(str(exc)) from None
    except OperationalError as exc:
        where = mask_url(settings.database_url) if settings else "the database"
        first = str(exc.orig).strip().splitlines()[:1] if exc.orig else []
        raise Abort(f"database error on {where}: {first[0] if first else exc}") from None
    except SQLAlchemyError as exc:
        raise Abort(f"database error: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None


def database_option(func: F) -> F:
    return click.option(
        "--database-url",
        envvar="ARCHIVER_DATABASE_URL",
        show_envvar=True,
        default=None,
        help="SQLAlchemy URL of the archive [default: sqlite:///archiver.db].",
    )(func)


def build_settings(**flags: Any) -> Settings:
    try:
        return settings_from_env().with_overrides(**flags)
    except ArchiverError as exc:
        raise Abort(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archiver")
def cli() -> None:
    """Archive Pixxel workflow jobs into SQL with a complete change history."""


# --- db ------------------------------------------------------------------------------------------


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
    with reported_errors(settings):
        engine = dbmod.make_engine(settings.database_url)
        try:
            dbmod.check_schema(engine)
        finally:
            engine.dispose()
    click.echo(f"database {settings.masked_database_url()} is up to date")


# --- ingest --------------------------------------------------------------------------------------


def _parse_when(_ctx: Any, _param: Any, value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = parse_timestamp(value)
    if parsed.value is None:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 timestamp")
    return parsed.value


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option(
    "--fetched-at",
    callback=_parse_when,
    help="When these payloads were fetched (ISO-8601) [default: now]; envelopes override it.",
)
@click.option("--quiet", "-q", is_flag=True, help="Only the summary line.")
@database_option
def ingest(
    files: tuple[str, ...], fetched_at: datetime | None, quiet: bool, database_url: str | None
) -> None:
    """Archive job payloads from JSON files (or - for stdin) without calling the API.

    Each file holds one JSON object, a JSON array of objects, or JSON lines. An object
    {"fetched_at": T, "payload": {...}} carries its own fetch time.
    """
    settings = build_settings(database_url=database_url)

    def items() -> Iterator[Item]:
        for name in files:
            try:
                if name == "-":
                    data = sys.stdin.buffer.read()
                    label = "<stdin>"
                else:
                    data = Path(name).read_bytes()
                    label = name
            except OSError as exc:
                yield Item(name, None, error=f"cannot read: {exc.strerror}")
                continue
            yield from read_items(label, data, fetched_at)

    def report(item: Item, result: Any, error: str | None) -> None:
        if error is not None:
            click.echo(f"failed    {item.source}: {error}", err=True)
        elif not quiet:
            click.echo(
                f"{result.outcome:9} {result.workflow_id}/{result.job_id} "
                f"v{result.version} {result.status or '-'} ({result.changes} changes)"
            )

    with reported_errors(settings):
        classifier = StatusClassifier.with_overrides(settings.status_map)
        engine = dbmod.make_engine(settings.database_url)
        try:
            dbmod.check_schema(engine)
            summary = run_ingest(
                dbmod.session_factory(engine), items(), classifier=classifier, on_result=report
            )
        finally:
            engine.dispose()
    click.echo(summary.line())
    if summary.failed:
        raise SystemExit(1)


@cli.command()
@click.argument("workflow_id")
@click.argument("job_id")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@database_option
def history(workflow_id: str, job_id: str, fmt: str, database_url: str | None) -> None:
    """The job's change history (job, tasks, validation errors), oldest first."""
    settings = build_settings(database_url=database_url)
    with reported_errors(settings):
        engine = dbmod.make_engine(settings.database_url)
        try:
            dbmod.check_schema(engine)
            with dbmod.session_factory(engine)() as session:
                rows = job_history(session, workflow_id, job_id)
        finally:
            engine.dispose()
    if not rows:
        raise Abort(
            f"no history for job {workflow_id}/{job_id} in {settings.masked_database_url()}"
        )
    if fmt == "json":
        click.echo(history_json(rows))
    else:
        Console(soft_wrap=False).print(history_table(rows, f"history of {workflow_id}/{job_id}"))


@cli.command()
@database_option
def demo(database_url: str | None) -> None:
    """Show the whole product on the embedded default (SQLite), with no setup."""
    settings = build_settings(database_url=database_url)
    with reported_errors(settings):
        failed = run_sample_demo(settings.database_url, Console())
    if failed:
        raise SystemExit(1)


def main() -> None:
    cli.main(prog_name="archiver")
