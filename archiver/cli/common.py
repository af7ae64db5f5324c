"""What every command shares: the group, settings from flags, one-line errors, the archive."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from archiver import __version__
from archiver import db as dbmod
from archiver.config import Settings, mask_url, parse_status_map, settings_from_env
from archiver.errors import ArchiverError

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


@contextmanager
def open_archive(settings: Settings) -> Iterator[sessionmaker[Session]]:
    """Sessions on a reachable archive at the code's schema; errors become one line."""
    with reported_errors(settings):
        engine = dbmod.make_engine(settings.database_url)
        try:
            dbmod.check_schema(engine)
            yield dbmod.session_factory(engine)
        finally:
            engine.dispose()


def database_option(func: F) -> F:
    return click.option(
        "--database-url",
        default=None,
        help="SQLAlchemy URL of the archive [env ARCHIVER_DATABASE_URL; "
        "default: sqlite:///archiver.db].",
    )(func)


def format_option(*choices: str) -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


def _status_map(_ctx: Any, _param: Any, value: str | None) -> dict[str, str] | None:
    if value is None:
        return None
    try:
        return parse_status_map(value)
    except ArchiverError as exc:
        raise click.BadParameter(str(exc)) from None


status_map_option = click.option(
    "--status-map",
    callback=_status_map,
    help="Extra status classes, e.g. archived=succeeded,rejected=failed [env ARCHIVER_STATUS_MAP].",
)


def build_settings(**flags: Any) -> Settings:
    """Defaults, then the environment, then flags (a flag left out is None and ignored)."""
    try:
        return settings_from_env().with_overrides(**flags)
    except ArchiverError as exc:
        raise Abort(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archiver")
def cli() -> None:
    """Archive Pixxel workflow jobs into SQL with a complete change history."""
