"""One sync pass: fetch every due tracked job once, archive each in its own transaction.

Fetches run on a bounded thread pool under a global rate limit; the archive write, the tracking
row update and the snapshot go into one transaction per job. A rejected API key stops the pass
at once (every other request would be rejected too); other failures are recorded per job and
the pass goes on. Jobs come either from the due list (one process) or from leases claimed batch
by batch (several processes on one database, see ``archiver.leases``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from archiver import leases, runs, tracking
from archiver.client import FetchedJob
from archiver.db import describe_error
from archiver.errors import ApiError, ArchiverError, AuthenticationError, PayloadError
from archiver.ingest import archive_one
from archiver.leases import Claim, LeaseLost
from archiver.ratelimit import RateLimiter
from archiver.statuses import StatusClassifier
from archiver.store import ArchiveResult

log = logging.getLogger("archiver.sync")
OUTCOMES = ("new", "changed", "unchanged", "stale", "failed", "skipped", "lost")


class Fetcher(Protocol):
    def fetch_job(self, workflow_id: str, job_id: str) -> FetchedJob: ...


@dataclass
class JobOutcome:
    workflow_id: str
    job_id: str
    outcome: str  # one of OUTCOMES
    changes: int = 0
    problems: int = 0
    status: str | None = None
    error: str | None = None
    reason: str | None = None  # why it failed: the error's reason (auth, server_error, …)


@dataclass
class SyncSummary:
    run_id: int | None = None
    due: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    changes: int = 0
    problems: int = 0
    seconds: float = 0.0
    auth_error: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def archived(self) -> int:
        return self.counts["new"] + self.counts["changed"]

    @property
    def failed(self) -> int:
        return self.counts["failed"]

    def run_counts(self) -> dict[str, int]:
        return {
            **self.counts,
            "jobs_total": self.due,
            "archived": self.archived,
            "problems": self.problems,
        }

    def line(self) -> str:
        c = self.counts
        rate = self.due / self.seconds if self.seconds else 0.0
        lost = f", lost lease {c['lost']}" if c["lost"] else ""
        return (
            f"sync: {self.due} due jobs in {self.seconds:.1f}s ({rate:.0f}/s): archived "
            f"{self.archived} (new {c['new']}, changed {c['changed']}), unchanged "
            f"{c['unchanged']}, stale {c['stale']}, failed {c['failed']}, skipped {c['skipped']}"
            f"{lost}; {self.changes} changes recorded"
        )


def _now() -> datetime:
    return datetime.now(UTC)


class SyncPass:
    """Holds what passes need; ``run`` does one pass. ``stop`` ends a pass early and cleanly."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        fetcher: Fetcher,
        *,
        policy: tracking.PollingPolicy,
        classifier: StatusClassifier,
        concurrency: int = 8,
        rate_limit: float = 0.0,
        now: Callable[[], datetime] = _now,
    ) -> None:
        self.sessions = sessions
        self.fetcher = fetcher
        self.policy = policy
        self.classifier = classifier
        self.concurrency = concurrency
        self.limiter = RateLimiter(rate_limit)
        self.now = now
        self.stop = threading.Event()
        self._auth_error: str | None = None
        # the sync_runs row of a pass that started and could not be finished (its database
        # went away): the daemon closes it and says why once the database is back
        self.open_run: int | None = None

    def run(
        self,
        *,
        everything: bool = False,
        claims: Iterable[Claim] | None = None,
        on_job: Callable[[JobOutcome], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        window: int | None = None,
    ) -> SyncSummary:
        """One pass over ``claims`` (leased jobs), or else over the due (``everything``) jobs."""
        started = time.monotonic()
        summary = SyncSummary()
        self._auth_error = None
        listed: int | None = None
        with self.sessions.begin() as session:
            summary.run_id = runs.start_run(session, "sync", self.now())
            if claims is None:
                now = self.now()
                listed = tracking.count_due(session, now, everything=everything)
                due = tracking.due_pages(self.sessions, now, everything=everything)
                claims = (Claim(w, j) for w, j in itertools.islice(due, listed))
                if on_start:
                    on_start(listed)
        run_id = self.open_run = summary.run_id
        try:
            for outcome in self._outcomes(iter(claims), run_id, window or self.concurrency * 4):
                summary.due += 1
                summary.counts[outcome.outcome] += 1
                summary.changes += outcome.changes
                summary.problems += outcome.problems
                if outcome.error and outcome.outcome == "failed":
                    summary.errors.append(
                        f"{outcome.workflow_id}/{outcome.job_id}: {outcome.error}"
                    )
                if on_job:
                    on_job(outcome)
            if listed is not None and summary.due < listed:  # stopped early
                summary.counts["skipped"] += listed - summary.due
                summary.due = listed
        finally:
            summary.auth_error = self._auth_error
            summary.seconds = time.monotonic() - started
            with self.sessions.begin() as session:
                runs.finish_run(session, run_id, summary.run_counts(), self.now())
            self.open_run = None
        return summary

    def _outcomes(self, claims: Iterator[Claim], run_id: int, window: int) -> Iterator[JobOutcome]:
        """Results as they complete, with a bounded number of jobs in flight (flat memory)."""
        pending: set[Future[JobOutcome]] = set()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="archiver-sync") as pool:
            while True:
                while len(pending) < window and not self.stop.is_set():
                    held = next(claims, None)
                    if held is None:
                        break
                    pending.add(pool.submit(self._one, held, run_id))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()

    def _one(self, held: Claim, run_id: int) -> JobOutcome:
        """One job; whatever goes wrong with it is recorded against it, and the pass goes on."""
        try:
            return self._fetch_and_archive(held, run_id)
        except (DBAPIError, ArchiverError):
            raise  # already handled per job where possible; what is left is a database outage
        except Exception as exc:  # a defect or a payload no layer foresaw: isolate it
            log.debug("unexpected failure for %s/%s", held.workflow_id, held.job_id, exc_info=True)
            message = f"unexpected {type(exc).__name__}: {str(exc)[:300]}"
            return self._record_failure(held, run_id, exc, message=message)

    def _fetch_and_archive(self, held: Claim, run_id: int) -> JobOutcome:
        wf, job_id = held.workflow_id, held.job_id
        if self.stop.is_set():
            return JobOutcome(wf, job_id, "skipped")
        self.limiter.acquire()
        if self.stop.is_set():
            return JobOutcome(wf, job_id, "skipped")
        try:
            fetched = self.fetcher.fetch_job(wf, job_id)
        except AuthenticationError as exc:
            if not self.stop.is_set():
                self._auth_error = str(exc)
                self.stop.set()
            # the key is at fault, not the job: its schedule and failure count stay as they are
            self._record_failure(held, run_id, exc, count_against_job=False)
            return JobOutcome(wf, job_id, "failed", error=str(exc), reason=exc.reason)
        except ApiError as exc:
            return self._record_failure(held, run_id, exc)
        # Only the body goes on: the store decodes it again (keeping it verbatim, duplicate keys
        # included), and holding the client's decoded copy meanwhile doubles a large job's memory.
        body, fetched_at = fetched.body, fetched.fetched_at
        del fetched
        return self._archive(held, body, fetched_at, run_id)

    def _archive(self, held: Claim, body: str, fetched_at: datetime, run_id: int) -> JobOutcome:
        wf, job_id = held.workflow_id, held.job_id

        def check_lease(session: Session) -> None:
            leases.verify(session, held)

        def update_tracking(session: Session, result: ArchiveResult) -> None:
            row = tracking.load(session, wf, job_id)
            values = self.policy.after_success(row, self.now(), result.status, result.is_terminal)
            tracking.apply(session, wf, job_id, {**values, **leases.RELEASED})

        try:
            result = archive_one(
                self.sessions,
                body,
                fetched_at,
                workflow_id=wf,
                job_id=job_id,
                classifier=self.classifier,
                on_begin=check_lease,
                before_commit=update_tracking,
            )
        except LeaseLost as exc:
            log.warning("%s", exc)
            return JobOutcome(wf, job_id, "lost", error=str(exc), reason="lease_lost")
        except ArchiverError as exc:
            return self._record_failure(held, run_id, exc)
        except DBAPIError as exc:
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise  # the database is unreachable: the pass fails, the daemon retries later
            message = f"database refused the job: {describe_error(exc)}"
            return self._record_failure(held, run_id, exc, message=message)
        return JobOutcome(
            wf, job_id, result.outcome, result.changes, result.problems, result.status
        )

    def _record_failure(
        self,
        held: Claim,
        run_id: int,
        exc: Exception,
        *,
        message: str | None = None,
        count_against_job: bool = True,
    ) -> JobOutcome:
        wf, job_id = held.workflow_id, held.job_id
        message = message or str(exc)
        reason = _reason(exc)
        now = self.now()
        try:
            with self.sessions.begin() as session:
                leases.verify(session, held)
                values = dict(leases.RELEASED)
                if count_against_job:
                    row = tracking.load(session, wf, job_id)
                    values.update(self.policy.after_failure(row, now, exc, message))
                tracking.apply(session, wf, job_id, values)
                runs.record_error(
                    session,
                    run_id,
                    workflow_id=wf,
                    job_id=job_id,
                    when=now,
                    reason=reason,
                    message=message,
                    http_status=getattr(exc, "status", None),
                    error_code=getattr(exc, "code", None),
                )
        except LeaseLost as lost:
            log.warning("%s", lost)
            return JobOutcome(wf, job_id, "lost", error=str(lost), reason="lease_lost")
        log.warning("%s/%s failed: %s", wf, job_id, message)
        return JobOutcome(wf, job_id, "failed", error=message, reason=reason)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return exc.reason
    if isinstance(exc, PayloadError):
        return "invalid_payload"
    return "database" if isinstance(exc, DBAPIError) else "internal"
