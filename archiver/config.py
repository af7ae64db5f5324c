"""Settings: one frozen object built once (by the CLI) from flags, environment and defaults.

Every setting has an environment variable; the CLI adds a flag for each. The API key is kept out
of ``repr`` and every rendering of the settings, so it cannot leak through a log line or a dump.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from sqlalchemy.engine import make_url

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


@dataclass(frozen=True)
class Settings:
    api_key: str | None = field(default=None, repr=False)
    api_url: str = DEFAULT_API_URL
    auth_scheme: str = ""
    database_url: str = DEFAULT_DATABASE_URL
    # HTTP
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    request_deadline: float = 60.0
    max_body_bytes: int = 32 * 1024 * 1024
    max_retries: int = 4
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 120.0
    # sync and polling
    concurrency: int = 8
    rate_limit: float = 20.0
    poll_interval: float = 300.0
    poll_jitter: float = 0.1
    settle_window: float = 24 * 3600.0
    settle_interval: float = 3600.0
    failure_backoff_max: float = 6 * 3600.0
    pause_after: int = 3
    # the daemon
    run_interval: float = 60.0
    lease_seconds: float = 0.0  # 0: derived from the request timeouts (see lease_duration)
    # payload interpretation
    status_map: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if _password_taken_for_host(self.database_url):
            # the driver would name the "host" (the password's tail) in its connection error
            raise ConfigError(
                "the database URL has an unescaped '@' in its user name or password: write it as "
                "%40 (the URL is not shown: it holds the password)"
            )
        for name in ("connect_timeout", "read_timeout", "request_deadline", "poll_interval"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.concurrency < 1:
            raise ConfigError(f"concurrency must be at least 1, got {self.concurrency}")

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
    try:
        host = make_url(url).host
    except Exception:  # an unparsable URL is reported where it is used
        return False
    return host is not None and "@" in host


def mask_url(url: str) -> str:
    """The URL with any password replaced, for messages and logs."""
    try:
        parsed = make_url(url)
        if _password_taken_for_host(url):
            host = (parsed.host or "").rpartition("@")[2]
            parsed = parsed.set(host=host, password="***")  # noqa: S106 -- the mask itself
        return parsed.render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is reported elsewhere; never echo it raw
        return "<unparsable database URL>"


def _float(text: str) -> float:
    return float(text)


# setting name -> (environment variable, parser)
ENVIRONMENT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "api_key": ("PIXXEL_API_KEY", str),
    "api_url": ("PIXXEL_API_URL", str),
    "auth_scheme": ("PIXXEL_AUTH_SCHEME", str),
    "database_url": ("ARCHIVER_DATABASE_URL", str),
    "connect_timeout": ("ARCHIVER_CONNECT_TIMEOUT", _float),
    "read_timeout": ("ARCHIVER_READ_TIMEOUT", _float),
    "request_deadline": ("ARCHIVER_REQUEST_DEADLINE", _float),
    "max_retries": ("ARCHIVER_MAX_RETRIES", int),
    "concurrency": ("ARCHIVER_CONCURRENCY", int),
    "rate_limit": ("ARCHIVER_RATE_LIMIT", _float),
    "poll_interval": ("ARCHIVER_POLL_INTERVAL", _float),
    "settle_window": ("ARCHIVER_SETTLE_WINDOW", _float),
    "settle_interval": ("ARCHIVER_SETTLE_INTERVAL", _float),
    "status_map": ("ARCHIVER_STATUS_MAP", parse_status_map),
    "run_interval": ("ARCHIVER_RUN_INTERVAL", _float),
    "lease_seconds": ("ARCHIVER_LEASE_SECONDS", _float),
}


def settings_from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults overridden by the environment; a malformed value is a ConfigError naming it."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    known = {f.name for f in fields(Settings)}
    for name, (var, parse) in ENVIRONMENT.items():
        assert name in known
        raw = environ.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[name] = parse(raw)
        except ConfigError:
            raise
        except ValueError:
            shown = "<hidden>" if name == "api_key" else repr(raw)
            raise ConfigError(f"{var}={shown} is not a valid value") from None
    return Settings(**values)
