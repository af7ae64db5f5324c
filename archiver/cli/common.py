"""What every command shares: the group, the settings' flags, one-line errors, the archive.

Kept light, as are the command modules: every ``archiver`` command, ``-h`` included, imports the
whole CLI to build it, so SQLAlchemy, Alembic, requests and the rest are imported inside the
functions that use them (tests/cli/test_startup.py holds ``-h`` to that).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from archiver import __version__
from archiver.config import DECLARED, Declared, Settings, mask_url, settings_from_env
from archiver.errors import ArchiverError
from archiver.ids import escape
from archiver.polling import logs

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

F = TypeVar("F", bound=Callable[..., Any])


class Abort(click.ClickException):
    """A failed command: one line on stderr, exit status 1 (an id or value in the message cannot
    break the line: control characters are escaped)."""

    def show(self, file: Any = None) -> None:
        click.echo(escape(f"archiver: error: {self.format_message()}"), err=True)


def echo_line(text: str, *, err: bool = False) -> None:
    """One line of a command's output, with control characters in ids and values escaped."""
    click.echo(escape(text), err=err)


@contextmanager
def reported_errors(settings: Settings | None = None) -> Iterator[None]:
    """Turn our errors and database failures into one line; never echo a secret."""
    # here, not at the top: `archiver -h` must not pay for SQLAlchemy (see the module docstring)
    from sqlalchemy.exc import OperationalError, SQLAlchemyError

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
def open_archive(settings: Settings, *, read_only: bool = False) -> Iterator[sessionmaker[Session]]:
    """Sessions on a reachable archive at the code's schema; errors become one line.

    The commands that only read pass ``read_only``: a mistyped SQLite path then says the file does
    not exist instead of leaving an empty one behind.
    """
    from archiver import db as dbmod

    with reported_errors(settings):
        engine = dbmod.make_engine(settings.database_url, read_only=read_only)
        try:
            dbmod.check_schema(engine, settings.database_url)
            yield dbmod.session_factory(engine)
        finally:
            engine.dispose()


def format_option(*choices: str) -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help="Output format.",
    )


def settings_options(command: str) -> Callable[[F], F]:
    """The flags of the settings ``command`` takes, from their declarations (``config.DECLARED``).

    A flag left out is None, so the environment variable and then the default apply; the help
    shows the declared default, never a value taken from the environment (it may be the key).
    """
    chosen = [declared for declared in DECLARED if declared.takes(command)]

    def decorate(func: F) -> F:
        for declared in reversed(chosen):
            func = _setting_option(declared)(func)
        return func

    return decorate


def _setting_option(declared: Declared) -> Callable[[F], F]:
    extra = f"[env var: {declared.env}; default: {declared.shown_default}]"
    kwargs: dict[str, Any] = {"default": None, "help": f"{declared.help}.  {extra}"}
    low, high = declared.low, declared.high
    bounded = low is not None or high is not None
    if declared.parse is int:
        kwargs["type"] = click.IntRange(low, high) if bounded else click.INT
    elif declared.parse is float:
        kwargs["type"] = click.FloatRange(low, high) if bounded else click.FLOAT
    elif declared.parse is not str:
        kwargs["callback"] = _parsed_with(declared.parse)
    return click.option(declared.flag, declared.name, **kwargs)


def _parsed_with(parse: Callable[[str], Any]) -> Callable[[Any, Any, str | None], Any]:
    """A click callback: the declared parser, its errors as click's usage errors."""

    def callback(_ctx: Any, _param: Any, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except (ArchiverError, ValueError) as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


GROUP_DATABASE_URL = "archiver.database_url"  # ctx.meta key: `archiver --database-url URL cmd`


def group_database_url() -> str | None:
    """The ``--database-url`` given before the command's name, if any."""
    ctx = click.get_current_context(silent=True)
    return ctx.meta.get(GROUP_DATABASE_URL) if ctx is not None else None


def build_settings(**flags: Any) -> Settings:
    """Defaults, then the environment, then flags (a flag left out is None and ignored).

    ``--database-url`` may come before the command's name too; the command's own flag wins.
    """
    if "database_url" in flags and flags["database_url"] is None:
        flags["database_url"] = group_database_url()
    try:
        return settings_from_env().with_overrides(**flags)
    except ArchiverError as exc:
        raise Abort(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="archiver")
@click.option(
    "--database-url",
    metavar="URL",
    default=None,
    help="The archive's database for the command that follows, as if given after its name "
    "(where both are given, the command's own flag wins).  "
    "[env var: ARCHIVER_DATABASE_URL; default: sqlite:///archiver.db]",
)
@click.pass_context
def cli(ctx: click.Context, database_url: str | None) -> None:
    """Archive Pixxel workflow jobs into SQL with a complete change history."""
    ctx.meta[GROUP_DATABASE_URL] = database_url
    logs.escape_unconfigured()
