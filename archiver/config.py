"""Settings: every setting declared once, and one frozen ``Settings`` built from them per command.

Each field of ``Settings`` is declared with ``setting()``: its name, type and default, and beside
them (``Declared``) its environment variable, flag, help text and the commands that take it. The
dataclass defaults, ``settings_from_env`` and the CLI's options (``archiver.cli.common``) are all
built from that one declaration, and a test holds the README's settings table to it. A command
takes each of its settings from the flag, else the environment variable, else the default.

The API key is kept out of ``repr`` and every rendering of the settings (its help shows no value,
its default is none), so it cannot leak through a log line, a dump or ``-h``; the database URL is
shown with its password masked.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from typing import Any

from archiver.errors import ConfigError
from archiver.retry import RetryPolicy

DEFAULT_API_URL = "https://api.pixxel.space"
DEFAULT_DATABASE_URL = "sqlite:///archiver.db"


def parse_status_map(text: str) -> dict[str, str]:
    """``"archived=succeeded, rejected=failed"`` -> mapping of raw status to class."""
    mapping: dict[str, str] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        raw, sep, cls = part.partition("=")
        if not sep or not raw.strip() or not cls.strip():
            raise ConfigError(f"status map entry {part!r} is not of the form status=class")
        mapping[raw.strip()] = cls.strip()
    return mapping


# Which commands take a setting: the names of their ``archiver`` commands ("report cost"); ARCHIVE
# is every command that opens the archive.
ARCHIVE = frozenset({"*"})
PASSES = frozenset({"sync", "run"})  # the commands that run sync passes
DAEMON = frozenset({"run"})
CLASSIFYING = PASSES | {"ingest", "rebuild"}  # the commands that classify statuses


@dataclass(frozen=True)
class Declared:
    """One setting as users give and see it; its name and default are its ``Settings`` field's."""

    env: str
    flag: str
    help: str  # also the setting's description in the README's table
    commands: frozenset[str]
    parse: Callable[[str], Any]  # the environment variable's text (and a flag's) to the value
    shown: str | None = None  # the default as -h and the README say it, where the value misleads
    low: int | None = None  # bounds the flag enforces (Settings checks its own invariants)
    high: int | None = None
    name: str = ""  # from the field
    default: Any = None  # from the field

    def takes(self, command: str) -> bool:
        return "*" in self.commands or command in self.commands

    @property
    def shown_default(self) -> str:
        if self.shown is not None:
            return self.shown
        value = self.default
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)


def setting(
    default: Any = MISSING,
    *,
    env: str,
    flag: str,
    help: str,
    commands: Iterable[str],
    parse: Callable[[str], Any] | None = None,
    factory: Callable[[], Any] | None = None,
    shown: str | None = None,
    low: int | None = None,
    high: int | None = None,
    secret: bool = False,
) -> Any:
    """A ``Settings`` field carrying its declaration; ``parse`` defaults to the default's type."""
    if parse is None and default is MISSING:
        raise TypeError(f"setting {flag}: a default factory needs an explicit parse")
    declared = Declared(
        env, flag, help, frozenset(commands), parse or type(default), shown, low, high
    )
    metadata = {"declared": declared}
    if factory is not None:
        return field(default_factory=factory, repr=not secret, metadata=metadata)
    return field(default=default, repr=not secret, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """Every setting of the archiver, each field its one declaration (see the module docstring)."""

    api_key: str | None = setting(
        None,
        env="PIXXEL_API_KEY",
        flag="--api-key",
        help="API key (prefer the variable: flags show in `ps`)",
        commands=PASSES,
        parse=str,
        shown="none (`sync` and `run` fail with a clear message)",
        secret=True,
    )
    api_url: str = setting(
        DEFAULT_API_URL,
        env="PIXXEL_API_URL",
        flag="--api-url",
        help="API base URL",
        commands=PASSES,
    )
    auth_scheme: str = setting(
        "",
        env="PIXXEL_AUTH_SCHEME",
        flag="--auth-scheme",
        help="Prefix for the key, e.g. Bearer",
        commands=PASSES,
        shown="none: the raw key",
    )
    database_url: str = setting(
        DEFAULT_DATABASE_URL,
        env="ARCHIVER_DATABASE_URL",
        flag="--database-url",
        help="SQLAlchemy URL of the archive",
        commands=ARCHIVE,
    )
    # HTTP
    connect_timeout: float = setting(
        5.0,
        env="ARCHIVER_CONNECT_TIMEOUT",
        flag="--connect-timeout",
        help="Seconds to connect",
        commands=PASSES,
    )
    read_timeout: float = setting(
        30.0,
        env="ARCHIVER_READ_TIMEOUT",
        flag="--read-timeout",
        help="Seconds to wait for data",
        commands=PASSES,
    )
    request_deadline: float = setting(
        60.0,
        env="ARCHIVER_REQUEST_DEADLINE",
        flag="--request-deadline",
        help="Overall seconds per request",
        commands=PASSES,
    )
    max_body_bytes: int = setting(
        32 * 1024 * 1024,
        env="ARCHIVER_MAX_BODY_BYTES",
        flag="--max-body-bytes",
        help="Largest response body accepted, in bytes",
        commands=PASSES,
        low=1,
    )
    max_retries: int = setting(
        4,
        env="ARCHIVER_MAX_RETRIES",
        flag="--max-retries",
        help="Retries per request",
        commands=PASSES,
        low=0,
        high=20,
    )
    backoff_base: float = setting(
        0.5,
        env="ARCHIVER_BACKOFF_BASE",
        flag="--backoff-base",
        help="Back-off before the first retry, in seconds (doubling each retry, fully jittered)",
        commands=PASSES,
        low=0,
    )
    backoff_max: float = setting(
        30.0,
        env="ARCHIVER_BACKOFF_MAX",
        flag="--backoff-max",
        help="Longest back-off between retries, in seconds",
        commands=PASSES,
        low=0,
    )
    retry_after_cap: float = setting(
        120.0,
        env="ARCHIVER_RETRY_AFTER_CAP",
        flag="--retry-after-cap",
        help="Longest wait a server's Retry-After can impose, in seconds",
        commands=PASSES,
        low=0,
    )
    # sync and polling
    concurrency: int = setting(
        8,
        env="ARCHIVER_CONCURRENCY",
        flag="--concurrency",
        help="Parallel fetches",
        commands=PASSES,
        low=1,
        high=256,
    )
    rate_limit: float = setting(
        20.0,
        env="ARCHIVER_RATE_LIMIT",
        flag="--rate-limit",
        help="Requests per second, 0 = unlimited",
        commands=PASSES,
    )
    poll_interval: float = setting(
        300.0,
        env="ARCHIVER_POLL_INTERVAL",
        flag="--poll-interval",
        help="Seconds between polls of a job",
        commands=PASSES,
    )
    poll_jitter: float = setting(
        0.1,
        env="ARCHIVER_POLL_JITTER",
        flag="--poll-jitter",
        help="Spread of each job's next poll, as a fraction (±) of its interval",
        commands=PASSES,
        low=0,
        high=1,
    )
    settle_window: float = setting(
        24 * 3600.0,
        env="ARCHIVER_SETTLE_WINDOW",
        flag="--settle-window",
        help="Seconds terminal jobs are re-checked",
        commands=PASSES,
    )
    settle_interval: float = setting(
        3600.0,
        env="ARCHIVER_SETTLE_INTERVAL",
        flag="--settle-interval",
        help="Seconds between re-checks of a terminal job",
        commands=PASSES,
    )
    failure_backoff_max: float = setting(
        6 * 3600.0,
        env="ARCHIVER_FAILURE_BACKOFF_MAX",
        flag="--failure-backoff-max",
        help="Longest wait before polling a failing job again, in seconds",
        commands=PASSES,
        low=0,
    )
    pause_after: int = setting(
        3,
        env="ARCHIVER_PAUSE_AFTER",
        flag="--pause-after",
        help="Consecutive 403/404 answers that pause a job or a watched workflow",
        commands=PASSES,
        low=1,
    )
    workflow_refresh: float = setting(
        3600.0,
        env="ARCHIVER_WORKFLOW_REFRESH",
        flag="--workflow-refresh",
        help="Seconds between re-reads of a watched workflow's description and cost estimate",
        commands=PASSES,
    )
    # the daemon
    run_interval: float = setting(
        60.0,
        env="ARCHIVER_RUN_INTERVAL",
        flag="--interval",
        help="Seconds between daemon passes",
        commands=DAEMON,
    )
    lease_seconds: float = setting(
        0.0,
        env="ARCHIVER_LEASE_SECONDS",
        flag="--lease-seconds",
        help="Lease on a claimed job, in seconds",
        commands=DAEMON,
        shown="0: (retries + 1) * deadline + retries * backoff max + 60",
    )
    # payload interpretation
    status_map: Mapping[str, str] = setting(
        env="ARCHIVER_STATUS_MAP",
        flag="--status-map",
        help="Extra status classes, e.g. archived=succeeded,rejected=failed (adds or overrides)",
        commands=CLASSIFYING,
        parse=parse_status_map,
        factory=dict,
        shown="built in",
    )

    def __post_init__(self) -> None:
        if _password_taken_for_host(self.database_url):
            # the driver would name the "host" (the password's tail) in its connection error
            raise ConfigError(
                "the database URL has an unescaped '@' in its user name or password: write it as "
                "%40 (the URL is not shown: it holds the password)"
            )
        for name in (
            "connect_timeout",
            "read_timeout",
            "request_deadline",
            "poll_interval",
            "workflow_refresh",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")
        # the retry policies refuse these too, but only once a client or a pass is built
        for name in ("backoff_base", "backoff_max", "retry_after_cap", "failure_backoff_max"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0.0 <= self.poll_jitter <= 1.0:
            raise ConfigError(f"poll_jitter must be between 0 and 1, got {self.poll_jitter}")

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with the given settings changed; ``None`` means "not given" and is ignored."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def lease_duration(self) -> float:
        """Long enough for one job's fetch with every retry, plus archiving it, with a margin."""
        if self.lease_seconds > 0:
            return self.lease_seconds
        fetch = (self.max_retries + 1) * self.request_deadline + self.max_retries * self.backoff_max
        return fetch + 60.0

    def http_retry(self) -> RetryPolicy:
        """An API request: full jitter, the server's Retry-After (capped) as the floor."""
        return RetryPolicy(
            base=self.backoff_base,
            cap=self.backoff_max,
            max_attempts=max(0, self.max_retries) + 1,
            full_jitter=True,
            retry_after_cap=self.retry_after_cap,
        )

    def polling_retry(self, interval: float) -> RetryPolicy:
        """A job's own schedule after failures: from its interval up to ``failure_backoff_max``,
        ±``poll_jitter``, never bounded (repeated 403/404 pause a job instead)."""
        return RetryPolicy(
            base=interval,
            cap=self.failure_backoff_max,
            jitter=self.poll_jitter,
            retry_after_cap=self.failure_backoff_max,
        )

    def masked_database_url(self) -> str:
        return mask_url(self.database_url)

    def __repr__(self) -> str:
        """Every setting but the key, the database URL with its password masked: a repr ends up
        in logs and tracebacks."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        values["database_url"] = mask_url(self.database_url)
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in values.items())})"


def _password_taken_for_host(url: str) -> bool:
    """``user:p@ss@host``: URL parsers end the password at its first '@' and read the rest, a
    part of the password, as the host name."""
    from sqlalchemy.engine import make_url  # here: `archiver -h` builds settings, not URLs

    try:
        host = make_url(url).host
    except Exception:  # an unparsable URL is reported where it is used
        return False
    return host is not None and "@" in host


def mask_url(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
        if _password_taken_for_host(url):
            host = (parsed.host or "").rpartition("@")[2]
            parsed = parsed.set(host=host, password="***")  # noqa: S106 -- the mask itself
        return parsed.render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported elsewhere; never echo it raw
        return "<unparsable database URL>"


# every setting's declaration, in the order of the fields
DECLARED: tuple[Declared, ...] = tuple(
    replace(
        f.metadata["declared"],
        name=f.name,
        default=f.default if f.default_factory is MISSING else f.default_factory(),
    )
    for f in fields(Settings)
)


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults overridden by the environment; a malformed value is a ConfigError naming it."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for declared in DECLARED:
        raw = environ.get(declared.env)
        if raw is None or raw == "":
            continue
        try:
            values[declared.name] = declared.parse(raw)
        except ConfigError:
            raise
        except ValueError:
            shown = "<hidden>" if declared.name == "api_key" else repr(raw)
            raise ConfigError(f"{declared.env}={shown} is not a valid value") from None
    return Settings(**values)
