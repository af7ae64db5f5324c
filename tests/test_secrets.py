"""Secrets (issue 7): a sentinel API key and a sentinel database password appear nowhere, on every
database: not in DEBUG logs (root, urllib3, sqlalchemy.engine, archiver), exception texts and
tracebacks, metrics and /healthz, the archive's rows and files, or the CLI's output; database
URLs are shown with the password masked.

Why sentinels: a secret that leaks rarely leaks whole and on the happy path. Each one here is a
distinctive string whose fragments are searched for too, and every path that could carry it is
provoked on purpose: a server that echoes the key in 4xx/5xx bodies, in a 200's error envelope,
as a job id, in a redirect; a database that refuses the password or is unreachable. Each test
also asserts that the text it searched is the text it meant to search (SQL in the logs, the
masked URL in the error), so that an empty capture cannot pass for a clean one.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from archive_dump import dump
from click.testing import CliRunner
from conftest import BACKENDS, MYSQL_URL, fresh_database
from figures import record_figures
from http_helpers import Recorded, Reply, ScriptedServer, echo_job, error, job
from sqlalchemy import text
from sqlalchemy.engine import make_url

from archiver import db
from archiver.api.client import ApiClient
from archiver.cli import cli
from archiver.config import Settings, mask_url
from archiver.errors import ArchiverError
from archiver.polling import tracking
from archiver.polling.daemon import Daemon
from archiver.polling.metrics import MonitoringServer
from archiver.polling.sync import SyncPass

KEY = "SENTINEL-KEY-4f9a2c7e81d3"
PASSWORD = "SENTINEL-PW-7c31d9b2"
FRAGMENTS = (KEY, PASSWORD, "4f9a2c7e81d3", "7c31d9b2", "SENTINEL")
T0 = datetime(2026, 10, 1, 10, tzinfo=UTC)
LOGGERS = ("", "urllib3", "requests", "sqlalchemy.engine", "sqlalchemy.pool", "archiver", "alembic")


def leaks(*texts: str | bytes) -> list[str]:
    """Every fragment of a sentinel found in the texts (empty when clean)."""
    found = []
    for value in texts:
        haystack = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        found += [
            f"{f!r} in {haystack[max(0, haystack.find(f) - 80) :][:200]!r}"
            for f in FRAGMENTS
            if f in haystack
        ]
    return found


@dataclass(frozen=True)
class SecretDb:
    backend: str
    url: str  # carries PASSWORD where the backend has passwords (SQLite has none)
    wrong: str | None  # the same database with a refused password (or user), PASSWORD inside


def _mariadb_user(url: str) -> tuple[str, str, callable]:
    """A MariaDB user whose password is PASSWORD, allowed on the test's database only."""
    parsed = make_url(url)
    user = f"arch_{uuid.uuid4().hex[:8]}"
    admin = db.make_engine(MYSQL_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        for host in ("%", "localhost"):
            conn.execute(text(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{PASSWORD}'"))
            conn.execute(text(f"GRANT ALL ON `{parsed.database}`.* TO '{user}'@'{host}'"))

    def drop() -> None:
        with admin.connect() as conn:
            for host in ("%", "localhost"):
                conn.execute(text(f"DROP USER '{user}'@'{host}'"))
        admin.dispose()

    good = parsed.set(username=user, password=PASSWORD)
    wrong = parsed.set(username=user, password=PASSWORD + "-wrong")
    return good.render_as_string(False), wrong.render_as_string(False), drop


@contextmanager
def secret_database(backend: str, tmp_path: Path) -> Iterator[SecretDb]:
    with fresh_database(backend, tmp_path) as url:
        if backend == "sqlite":
            yield SecretDb("sqlite", url, None)
        elif backend == "postgresql":
            # the test server trusts 127.0.0.1, so the password is carried but not checked; the
            # refused URL names a role that does not exist
            parsed = make_url(url)
            good = parsed.set(password=PASSWORD).render_as_string(False)
            wrong = parsed.set(username="archiver_nobody", password=PASSWORD)
            yield SecretDb("postgresql", good, wrong.render_as_string(False))
        else:
            good, wrong, drop = _mariadb_user(url)
            try:
                yield SecretDb("mariadb", good, wrong)
            finally:
                drop()


@pytest.fixture(params=BACKENDS)
def secret_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SecretDb]:
    with secret_database(request.param, tmp_path) as opened:
        yield opened


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """Everything logged at DEBUG by every library involved, exceptions included."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    saved = {name: logging.getLogger(name).level for name in LOGGERS}
    logging.getLogger().addHandler(handler)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield stream
    logging.getLogger().removeHandler(handler)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def echoing_server(request: Recorded) -> Reply:
    """A server that puts the key it was sent everywhere it can, one way per job."""
    sent = request.headers.get("authorization", "")
    kind = request.segments()[5]
    replies = {
        "ok": echo_job(request),
        "forbidden": error(403, "forbidden", f"key {sent} may not read this job"),
        "server": Reply(500, f"internal error; Authorization: {sent}"),
        "envelope": Reply(200, {"error": {"code": sent, "message": f"bad key {sent}"}}),
        "as-id": Reply(200, job(sent, "w")),
        "as-workflow": Reply(200, job("as-workflow", sent)),
        "html": Reply(200, f"<html><body>{sent}</body></html>"),
        "redirect": Reply(302, b"", headers={"Location": f"http://evil.example/?key={sent}"}),
        "slow-down": error(429, "slow_down", f"too fast, {sent}", **{"Retry-After": "0"}),
    }
    return replies[kind]


KINDS = ("ok", "forbidden", "server", "envelope", "as-id", "as-workflow", "html", "redirect")


def settings_for(api_url: str, database_url: str, **overrides: object) -> Settings:
    values: dict = {
        "api_key": KEY,
        "api_url": api_url,
        "database_url": database_url,
        "max_retries": 1,
        "backoff_base": 0.0,
        "backoff_max": 0.0,
        "request_deadline": 5.0,
        "rate_limit": 0.0,
        "poll_interval": 60.0,
        "poll_jitter": 0.0,
    }
    values.update(overrides)
    return Settings(**values)


def exception_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def test_debug_logs_errors_and_the_archive_hold_no_secret(
    secret_db: SecretDb, debug_log: io.StringIO, tmp_path: Path
) -> None:
    texts: list[str] = []
    db.upgrade(secret_db.url)
    engine = db.make_engine(secret_db.url)
    sessions = db.session_factory(engine)
    with ScriptedServer() as server:
        server.always(echoing_server)
        settings = settings_for(server.url, secret_db.url)
        client = ApiClient(settings)
        with sessions.begin() as session:
            tracking.track(session, [("w", kind) for kind in (*KINDS, "slow-down")], T0)
        sync = SyncPass.from_settings(settings, sessions, client, now=lambda: T0)
        summary = sync.run(everything=True)
        texts += summary.errors
        for kind in KINDS[1:]:
            with pytest.raises(ArchiverError) as caught:
                client.fetch_job("w", kind)
            texts += exception_texts(caught.value)
        server.always(error(401, "invalid_api_key", f"the key {KEY} is not valid"))
        rejected = sync.run(everything=True)
        texts += [rejected.auth_error or "", *rejected.errors]
        texts += [repr(client), repr(settings), repr(engine), str(engine.url), repr(summary)]
        client.close()
    assert summary.counts["new"] == 1 and summary.failed == len(KINDS)
    assert rejected.auth_error and "401" in rejected.auth_error

    if secret_db.wrong is not None:  # the database refuses the password
        with pytest.raises(ArchiverError) as refused:
            db.upgrade(secret_db.wrong)
        texts += exception_texts(refused.value)
        assert ":***@" in str(refused.value), str(refused.value)  # shown, masked
        wrong_engine = db.make_engine(secret_db.wrong)
        with pytest.raises(ArchiverError) as unchecked:
            db.check_schema(wrong_engine)
        wrong_engine.dispose()
        texts += exception_texts(unchecked.value)

    rows = [value or "" for table in dump(engine).values() for row in table.rows for value in row]
    engine.dispose()
    log = debug_log.getvalue()
    # what was searched is what was meant: SQL, HTTP and the archiver all logged at DEBUG, and
    # the archive holds the failures the server's echoes caused
    # (PostgreSQL writes the history rows by COPY, logged as SQLAlchemy logs its statements)
    written = (
        "COPY job_snapshots" if engine.dialect.name == "postgresql" else "INSERT INTO job_snapshots"
    )
    assert written in log and "GET /v0/workflows/w/jobs/" in log
    assert any("403" in r for r in rows) and any("<redacted>" in t for t in texts)
    assert leaks(log, *texts, *rows) == []
    searched = len(log) + sum(map(len, texts)) + sum(map(len, rows))
    if secret_db.backend == "sqlite":
        files = list(Path(make_url(secret_db.url).database).parent.glob("archive.db*"))
        assert files and leaks(*(f.read_bytes() for f in files)) == []
        searched += sum(f.stat().st_size for f in files)
    record_figures("secrets", inputs=len(KINDS) + 1, faults=len(KINDS) + 2, searched=searched)


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=5)


def test_metrics_and_healthz_hold_no_secret(secret_db: SecretDb, debug_log: io.StringIO) -> None:
    db.upgrade(secret_db.url)
    with ScriptedServer() as server:
        server.always(error(401, "invalid_api_key", f"the key {KEY} is not valid"))
        daemon = Daemon(settings_for(server.url, secret_db.url, run_interval=60.0))
        with daemon.sessions.begin() as session:
            tracking.track(session, [("w", "a"), ("w", "b")], T0)
        daemon.pass_once()
        broken = None
        if secret_db.wrong is not None:
            broken = Daemon(settings_for(server.url, secret_db.wrong, run_interval=60.0))
            broken.pass_once()
        bodies: list[str] = []
        for watched in [d for d in (daemon, broken) if d is not None]:
            monitor = MonitoringServer(watched.metrics, watched.health, "127.0.0.1", 0).start()
            try:
                base = f"http://127.0.0.1:{monitor.port}"
                bodies += [get(f"{base}/metrics").text, get(f"{base}/healthz").text]
            finally:
                monitor.stop()
            watched.client.close()
            watched.engine.dispose()
    assert "archiver_api_key_rejected 1.0" in bodies[0]
    assert "API key rejected" in bodies[1] and "<redacted>" in bodies[1]
    if broken is not None:
        assert "database:" in bodies[3] and ":***@" in bodies[3], bodies[3]
    assert leaks(*bodies, debug_log.getvalue()) == []
    record_figures("secrets", inputs=2, faults=2, searched=sum(map(len, bodies)))


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a command in-process; the output is stdout and stderr together."""
    result = CliRunner().invoke(cli, list(args), env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout + result.stderr


def test_cli_output_holds_no_secret_and_masks_database_urls(secret_db: SecretDb) -> None:
    outputs: list[str] = []
    env = {"PIXXEL_API_KEY": KEY, "ARCHIVER_DATABASE_URL": secret_db.url}

    def run(*args: str, expect: int = 0) -> str:
        code, output = invoke(*args, env=env)
        assert code == expect, output
        outputs.append(output)
        return output

    shown = mask_url(secret_db.url)
    assert run("db", "upgrade").strip() == f"database {shown} is at revision {db.head_revision()}"
    assert shown in run("db", "check")
    run("track", "w", "ok")
    run("track", "w", "forbidden")
    with ScriptedServer() as server:
        server.always(echoing_server)
        failed = run("sync", "--api-url", server.url, "--max-retries", "0", expect=1)
    assert "403 Forbidden" in failed and "<redacted>" in failed
    assert "forbidden" in run("tracked", "--format", "json")
    run("report", "cost")
    credentials = run("sync", "--all", "--api-url", f"http://user:{KEY}@127.0.0.1:9", expect=1)
    assert "must not contain credentials" in credentials
    broken_key = KEY[:9] + "\n" + KEY[9:]
    newline = run(
        "sync", "--all", "--api-key", broken_key, "--api-url", "http://127.0.0.1:9", expect=1
    )
    assert "cannot hold" in newline
    if secret_db.wrong is not None:
        masked = mask_url(secret_db.wrong)
        for args in (("db", "upgrade"), ("db", "check"), ("tracked",), ("report", "cost")):
            output = run(*args, "--database-url", secret_db.wrong, expect=1)
            assert output.startswith("archiver: error:") and masked in output, output
            assert "Traceback" not in output
    assert leaks(*outputs) == []
    record_figures("secrets", inputs=len(outputs), faults=3, searched=sum(map(len, outputs)))


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://archiver:pa@SENTINEL-PW-7c31d9b2@127.0.0.1:5432/test",
        "mysql://archiver:pa@SENTINEL-PW-7c31d9b2@127.0.0.1:3306/test",
    ],
    ids=["postgresql", "mysql"],
)
def test_a_password_with_an_unescaped_at_sign_is_never_shown(url: str) -> None:
    """Parsers take the tail of such a password for the host name ('SENTINEL…@127.0.0.1'), and
    the driver then names that host in its error; the URL is refused before any connection."""
    assert leaks(mask_url(url)) == []
    for args in (("db", "check"), ("db", "upgrade"), ("tracked",)):
        code, output = invoke(*args, "--database-url", url)
        assert code == 1 and output.startswith("archiver: error:"), output
        assert leaks(output) == [], output
        assert "%40" in output  # says how to write it
    record_figures("secrets", inputs=3, faults=3)


@pytest.fixture
def mariadb_secret_db(tmp_path: Path) -> Iterator[SecretDb]:
    with secret_database("mariadb", tmp_path) as opened:
        yield opened


def test_the_daemon_at_debug_level_holds_no_secret(mariadb_secret_db: SecretDb) -> None:
    """`archiver run --log-level debug` as a process: its log, /metrics and /healthz, and a
    clean exit on SIGTERM. On MariaDB only (a process start costs seconds): it is the database
    that checks the password, and the daemon's logging does not depend on the database."""
    secret_db = mariadb_secret_db
    db.upgrade(secret_db.url)
    with ScriptedServer() as server:
        server.always(echoing_server)
        engine = db.make_engine(secret_db.url)
        with db.session_factory(engine).begin() as session:
            tracking.track(session, [("w", kind) for kind in KINDS], T0)
        engine.dispose()
        env = {
            **os.environ,
            "PIXXEL_API_KEY": KEY,
            "PIXXEL_API_URL": server.url,
            "ARCHIVER_DATABASE_URL": secret_db.url,
            "ARCHIVER_MAX_RETRIES": "0",
            "PYTHONPATH": str(Path(__file__).parents[1]),
        }
        command = [sys.executable, "-m", "archiver", "run", "--log-level", "debug"]
        command += ["--metrics-port", "0", "--interval", "3600"]
        process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(
            target=lambda: [lines.put(x) for x in process.stderr], daemon=True
        )
        reader.start()
        log: list[str] = []
        port = None
        try:
            while not any("sync: " in line for line in log):  # the first pass is logged
                log.append(lines.get(timeout=30))
                found = re.search(r"http://127\.0\.0\.1:(\d+)/metrics", log[-1])
                port = int(found.group(1)) if found else port
            assert port is not None, "".join(log)
            bodies = [
                get(f"http://127.0.0.1:{port}/{path}").text for path in ("metrics", "healthz")
            ]
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
            reader.join(timeout=10)
    while not lines.empty():
        log.append(lines.get())
    output = "".join(log)
    assert code == 0, output[-3000:]
    assert "archiver_jobs_total" in bodies[0] and "stopped cleanly" in output
    assert "Traceback" not in output and "<redacted>" in output
    assert leaks(output, *bodies) == []
    record_figures("secrets", inputs=len(KINDS), faults=len(KINDS) - 1, searched=len(output))
