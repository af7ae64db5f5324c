"""``archiver run``: sync passes on a schedule, for months, through outages, stopping cleanly.

APScheduler (BlockingScheduler, UTC) fires a pass at start and then every interval, with
``max_instances=1``, ``coalesce=True`` and a misfire grace of one interval, so a pass that overruns
neither overlaps the next nor causes a burst after it. Each pass claims its jobs through leases
(``archiver.polling.leases``) so several daemons can share one PostgreSQL or MySQL/MariaDB database;
on SQLite one daemon per file is enforced with a lock file.

A pass that fails (database unreachable, sessions killed) is logged and counted; the next one
simply tries again, and nothing is half-written because every job is written whole in one
transaction. Each pass first gives back leases a failed pass could not release, and the first pass
that works after failures closes the runs they interrupted and writes the outage (how long, how many
passes, why) into ``sync_errors``. A
rejected key pauses polling: passes then probe with one job at a time until the key works again.
An unreachable API or a wrong URL (``archiver.polling.failures``) is an outage: said once, no job
counted, and each pass stops after its first few requests until the API answers.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from archiver import db
from archiver.api.client import ApiClient
from archiver.archive import runs
from archiver.config import Settings, mask_url
from archiver.errors import ArchiverError, ConfigError, DatabaseError
from archiver.models import TrackedJob
from archiver.polling import leases, malloc
from archiver.polling.discovery import WorkflowLease
from archiver.polling.failures import unusable_message
from archiver.polling.metrics import Health, Metrics, MonitoringServer
from archiver.polling.stall import StallWatchdog
from archiver.polling.sync import SyncPass, SyncSummary

log = logging.getLogger("archiver.run")
DB_CHECK_CACHE_SECONDS = 5.0  # /healthz is polled; do not hit the database each time


@dataclass
class _Outage:
    """Passes failing in a row (the database away, mostly): written down once it is back."""

    since: datetime
    first_reason: str
    last_reason: str = ""
    failed_passes: int = 0
    database: bool = True  # every failure was the database's
    interrupted: list[tuple[int, datetime]] = field(default_factory=list)  # (run id, when)

    def message(self, now: datetime) -> str:
        seconds = (now - self.since).total_seconds()
        what = "database unreachable" if self.database else "passes failing"
        return (
            f"{what} for {seconds:.0f}s, from {self.since.isoformat(timespec='seconds')} to "
            f"{now.isoformat(timespec='seconds')}: {self.failed_passes} passes failed; "
            f"last error: {self.last_reason}"
        )


def _stall_bounds(settings: Settings) -> dict[str, Any]:
    """PyMySQL reads the server's greeting with no timeout once its TCP connect succeeded, so a
    path that goes silent during a handshake would hang the pass where the stall watchdog (which
    watches checked-out connections) cannot see it. Its read timeout bounds the handshake too;
    at twice the lease it cuts no statement the watchdog (at the lease) would have let run, and
    leaves the cutting of a stalled statement to the watchdog, which says so. (libpq's
    connect_timeout already covers PostgreSQL's whole handshake.)"""
    url = db.normalize_url(settings.database_url)
    if url.get_backend_name() not in ("mysql", "mariadb"):
        return {}
    limit = max(2, int(2 * settings.lease_duration()))
    return {"connect_args": {"connect_timeout": 10, "read_timeout": limit, "write_timeout": limit}}


class Daemon:
    def __init__(self, settings: Settings, *, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.owner = leases.worker_name()
        self.engine = db.make_engine(settings.database_url, **_stall_bounds(settings))
        self.sessions = db.session_factory(self.engine)
        self.client = ApiClient(settings, observer=self.metrics.observe_request)
        self.sync = SyncPass.from_settings(settings, self.sessions, self.client)
        self.health = Health(interval=settings.run_interval, check_database=self._database_problem)
        self.stopping = threading.Event()
        self.idle = threading.Event()
        self.idle.set()
        self._lock_file: IO[str] | None = None
        self._db_checked: tuple[float, str | None] = (-DB_CHECK_CACHE_SECONDS, None)
        self.db_check_cache_seconds = DB_CHECK_CACHE_SECONDS
        self.scheduler: BlockingScheduler | None = None
        self._outage: _Outage | None = None
        self._watchdog: StallWatchdog | None = None

    # --- one pass --------------------------------------------------------------------------

    def _claims(self, limit: int) -> Iterator[leases.Claim]:
        """Claims batch by batch, so other daemons get their share of a long pass.

        Only jobs due when the pass began: a job handled in this pass is never due again before
        its end, however short the poll interval, so a pass always ends.
        """
        due_before = datetime.now(UTC)
        while not self.sync.stop.is_set():
            with self.sessions.begin() as session:
                batch = leases.claim(
                    session, self.owner, due_before, limit, self.settings.lease_duration()
                )
            if not batch:
                return
            yield from batch

    def listing_lease(self) -> WorkflowLease:
        """Workflows and rules are listed by one worker per interval: those not listed within
        half of it, each claimed for as long as a job's lease."""
        return WorkflowLease(
            self.owner, self.settings.run_interval / 2, self.settings.lease_duration()
        )

    def pass_once(self) -> SyncSummary | None:
        """Run one pass; never raises (a failed pass is logged, counted, and tried again later)."""
        if self.stopping.is_set():
            return None
        self.idle.clear()
        started = time.monotonic()
        summary: SyncSummary | None = None
        try:
            # A pass the database failed could not give its leases back: a live lease of our
            # own would hide those jobs from this pass until it expired (minutes), not one
            # interval. Nothing of ours is in flight between passes, so they are all stale.
            with self.sessions.begin() as session:
                stale = leases.release(session, self.owner)
            if stale:
                log.info("released %d leases left by a failed pass", stale)
            if self.health.key_rejected is not None:
                # paused: one job tells whether the key works again; only then the full pass
                probe = self.sync.run(
                    claims=itertools.islice(self._claims(1), 1),
                    on_job=self.metrics.observe_job,
                    window=1,
                    discover=False,  # one request tells; the full pass lists
                )
                if probe.auth_error:
                    self._after_pass(probe, time.monotonic() - started)
                    return probe
                if probe.due:
                    self._key_accepted()
                # else no job to probe with (only watched workflows, say): the full pass's
                # listing tells, and stops at its first rejection
            concurrency = self.settings.concurrency
            summary = self.sync.run(
                claims=self._claims(concurrency),
                on_job=self.metrics.observe_job,
                window=concurrency,
                lease=self.listing_lease(),
            )
            self._after_pass(summary, time.monotonic() - started)
        except (SQLAlchemyError, ArchiverError, OSError) as exc:
            reason = str(exc) if isinstance(exc, ArchiverError) else db.describe_error(exc)
            self.health.database_error = reason
            self._note_failure(reason, database=isinstance(exc, SQLAlchemyError | DatabaseError))
            self.metrics.observe_pass(None, time.monotonic() - started)
            log.error(
                "pass failed after %.1fs: %s; the next pass in %.0fs tries again",
                time.monotonic() - started,
                reason,
                self.settings.run_interval,
                extra={"event": "pass_failed"},
            )
            summary = None
        finally:
            with contextlib.suppress(SQLAlchemyError), self.sessions.begin() as session:
                leases.release(session, self.owner)
            if not self.stopping.is_set():
                self.sync.stop.clear()
            self.idle.set()
        return summary

    def _note_failure(self, reason: str, *, database: bool) -> None:
        now = datetime.now(UTC)
        if self._outage is None:
            self._outage = _Outage(since=now, first_reason=reason)
        outage = self._outage
        outage.failed_passes += 1
        outage.last_reason = reason
        outage.database = outage.database and database
        if self.sync.open_run is not None:
            outage.interrupted.append((self.sync.open_run, now))
            self.sync.open_run = None

    def _record_outage(self, run_id: int | None) -> None:
        """Once passes work again: close the runs the failures interrupted and say, in
        ``sync_errors``, how long passes failed and why (a gap in the history is a known gap)."""
        outage = self._outage
        if outage is None:
            return
        now = datetime.now(UTC)
        reason = "database" if outage.database else "pass_failed"
        message = outage.message(now)
        try:
            with self.sessions.begin() as session:
                for interrupted, when in outage.interrupted:
                    runs.close_interrupted(session, interrupted, when)
                    runs.record_error(
                        session,
                        interrupted,
                        workflow_id=None,
                        job_id=None,
                        when=when,
                        reason=reason,
                        message=f"pass interrupted: {outage.first_reason}",
                    )
                runs.record_error(
                    session,
                    run_id,
                    workflow_id=None,
                    job_id=None,
                    when=now,
                    reason=reason,
                    message=message,
                )
        except SQLAlchemyError as exc:  # written at the next pass that works
            log.warning("could not record the outage yet: %s", db.describe_error(exc))
            return
        self._outage = None
        log.warning("passes work again: %s", message, extra={"event": "recovered"})

    def _after_pass(self, summary: SyncSummary, seconds: float) -> None:
        self.health.database_error = None
        self._record_outage(summary.run_id)
        self.metrics.observe_pass(summary, seconds)
        if summary.auth_error:
            if self.health.key_rejected is None:
                log.error(
                    "the API rejected the key (%s): polling paused; each pass probes one job "
                    "until the key works again. Fix PIXXEL_API_KEY.",
                    summary.auth_error,
                    extra={"event": "key_rejected"},
                )
            self.health.key_rejected = summary.auth_error
            self.metrics.key_rejected.set(1)  # and a paused pass is no successful pass
        elif summary.api_unusable:
            self._api_unusable(summary)
        else:
            answered = summary.due or (summary.listing and summary.listing.workflows_listed)
            if self.health.key_rejected is not None and answered:
                self._key_accepted()
            if self.health.api_unusable is not None and answered:
                log.info("the API answers again", extra={"event": "api_usable"})
                self.health.api_unusable = None
            self.health.last_success = time.time()
        with self.sessions() as session:
            counts = dict(
                session.execute(
                    select(TrackedJob.state, func.count()).group_by(TrackedJob.state)
                ).all()
            )
        self.metrics.set_tracked({str(k): int(v) for k, v in counts.items()})
        log.info(
            "%s",
            summary.line(),
            extra={
                "event": "pass",
                "due": summary.due,
                "seconds": round(summary.seconds, 3),
                **summary.counts,
                "changes": summary.changes,
                **(summary.listing.run_counts() if summary.listing else {}),
            },
        )

    def _api_unusable(self, summary: SyncSummary) -> None:
        """A pass stopped because its first requests showed the API unreachable or the URL
        wrong: an outage, no job's fault (none was counted). Said once, until it answers again;
        each pass tries again, and stops after a few requests while it lasts."""
        assert summary.api_unusable is not None
        if self.health.api_unusable is None:
            message = unusable_message(
                summary.api_unusable, summary.api_unusable_count, self.settings.api_url
            )
            log.error("%s", message, extra={"event": "api_unusable"})
        self.health.api_unusable = summary.api_unusable

    def _key_accepted(self) -> None:
        log.info("the API accepts the key again: polling resumed")
        self.health.key_rejected = None
        self.metrics.key_rejected.set(0)

    # --- health ----------------------------------------------------------------------------

    def _database_problem(self) -> str | None:
        """Reachable and at the code's schema? Cached for a few seconds: /healthz is polled."""
        checked_at, problem = self._db_checked
        if time.monotonic() - checked_at < self.db_check_cache_seconds:
            return problem
        try:
            db.check_schema(self.engine, self.settings.database_url)
            problem = None
        except ArchiverError as exc:
            problem = str(exc)
        except SQLAlchemyError as exc:
            problem = db.describe_error(exc)
        self._db_checked = (time.monotonic(), problem)
        return problem

    # --- lifecycle -------------------------------------------------------------------------

    def lock_sqlite(self) -> None:
        """One daemon per SQLite file: a second one refuses to start (use PostgreSQL to scale)."""
        url = make_url(self.settings.database_url)
        if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
            return
        path = Path(url.database).resolve()
        handle = open(f"{path}.run-lock", "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            other = handle.read().strip() or "another process"
            handle.close()
            raise ConfigError(
                f"another `archiver run` ({other}) already archives into {path}: SQLite allows "
                "one daemon per file; run several daemons on PostgreSQL or MySQL/MariaDB"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._lock_file = handle

    def run(self, *, metrics_host: str = "127.0.0.1", metrics_port: int | None = None) -> int:
        """Block until SIGINT/SIGTERM; returns the exit status."""
        malloc.return_large_blocks()  # fetch threads and the writer each free large payloads
        self.lock_sqlite()
        db.check_schema(self.engine, self.settings.database_url)
        # a statement still running when its job's lease is over waits on a database that
        # stopped answering: cut it, so the pass fails and the next one starts afresh
        self._watchdog = StallWatchdog(self.engine, self.settings.lease_duration()).start()
        monitor = None
        if metrics_port is not None:
            monitor = MonitoringServer(
                self.metrics, self.health, metrics_host, metrics_port
            ).start()
            log.info(
                "metrics and health on http://%s:%d/metrics and /healthz",
                metrics_host,
                monitor.port,
            )
        interval = self.settings.run_interval
        self.scheduler = BlockingScheduler(timezone=UTC)
        self.scheduler.add_job(
            self.pass_once,
            "interval",
            seconds=interval,
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(interval)),
            id="sync-pass",
        )
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        log.info(
            "archiver run: worker %s, every %.0fs, %d workers, database %s",
            self.owner,
            interval,
            self.settings.concurrency,
            mask_url(self.settings.database_url),
        )
        self.scheduler.start()  # returns once _on_signal shut it down
        return self._finish(monitor)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stopping.is_set():
            return
        log.info(
            "%s received: finishing in-flight jobs, taking no new ones", signal.Signals(signum).name
        )
        self.stopping.set()
        self.sync.stop.set()
        if self.scheduler is None:
            return
        try:
            self.scheduler.shutdown(wait=False)
        except SchedulerNotRunningError:
            # the signal came before start(): a job that runs first thing shuts it down
            self.scheduler.add_job(self.scheduler.shutdown, kwargs={"wait": False})

    def _finish(self, monitor: MonitoringServer | None) -> int:
        grace = 2 * self.settings.request_deadline
        finished = self.idle.wait(grace)
        with contextlib.suppress(SQLAlchemyError), self.sessions.begin() as session:
            released = leases.release(session, self.owner)
            if released:
                log.info("released %d leases", released)
        if monitor is not None:
            monitor.stop()
        if self._watchdog is not None:
            self._watchdog.stop()
        if not finished:
            # the jobs still in flight are abandoned; their transactions die with the process
            log.warning("in-flight jobs did not finish within %.0fs: abandoning them", grace)
            logging.shutdown()
            os._exit(0)
        self.client.close()
        self.engine.dispose()
        log.info("stopped cleanly")
        return 0
