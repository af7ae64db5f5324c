"""One sync pass: fetch every due tracked job once, archive each in its own transaction.

Fetches run on a bounded thread pool under a global rate limit; the archive write, the tracking
row update and the snapshot go into one transaction per job. A rejected API key stops the pass
at once (every other request would be rejected too); other failures are recorded per job and
the pass goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from archiver import runs, tracking
from archiver.client import FetchedJob
from archiver.errors import ApiError, ArchiverError, AuthenticationError, PayloadError
from archiver.ingest import archive_one
from archiver.ratelimit import RateLimiter
from archiver.statuses import StatusClassifier
from archiver.store import ArchiveResult

log = logging.getLogger("archiver.sync")


class Fetcher(Protocol):
    def fetch_job(self, workflow_id: str, job_id: str) -> FetchedJob: ...


@dataclass
class JobOutcome:
    workflow_id: str
    job_id: str
    outcome: str  # new | changed | unchanged | stale | failed | skipped
    changes: int = 0
    problems: int = 0
    status: str | None = None
    error: str | None = None


@dataclass
class SyncSummary:
    run_id: int | None = None
    due: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("new", "changed", "unchanged", "stale", "failed", "skipped"), 0
        )
    )
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
        return (
            f"sync: {self.due} due jobs in {self.seconds:.1f}s ({rate:.0f}/s): archived "
            f"{self.archived} (new {c['new']}, changed {c['changed']}), unchanged "
            f"{c['unchanged']}, stale {c['stale']}, failed {c['failed']}, skipped {c['skipped']}; "
            f"{self.changes} changes recorded"
        )


def _now() -> datetime:
    return datetime.now(UTC)


class SyncPass:
    """Holds what one pass needs; ``run`` does the pass."""

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

    def run(
        self,
        *,
        everything: bool = False,
        on_job: Callable[[JobOutcome], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> SyncSummary:
        started = time.monotonic()
        summary = SyncSummary()
        with self.sessions.begin() as session:
            jobs = tracking.due_jobs(session, self.now(), everything=everything)
            summary.run_id = runs.start_run(session, "sync", self.now())
        summary.due = len(jobs)
        if on_start:
            on_start(len(jobs))
        for outcome in self._outcomes(jobs, summary.run_id):
            summary.counts[outcome.outcome] += 1
            summary.changes += outcome.changes
            summary.problems += outcome.problems
            if outcome.error and outcome.outcome == "failed":
                summary.errors.append(f"{outcome.workflow_id}/{outcome.job_id}: {outcome.error}")
            if on_job:
                on_job(outcome)
        summary.auth_error = self._auth_error
        summary.seconds = time.monotonic() - started
        with self.sessions.begin() as session:
            runs.finish_run(session, summary.run_id, summary.run_counts(), self.now())
        return summary

    def _outcomes(self, jobs: list[tuple[str, str]], run_id: int) -> Iterator[JobOutcome]:
        """Results as they complete, with a bounded number of jobs in flight (flat memory)."""
        window = self.concurrency * 4
        pending: set[Future[JobOutcome]] = set()
        queue = iter(jobs)
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="archiver-sync") as pool:
            while True:
                while len(pending) < window:
                    job = next(queue, None)
                    if job is None:
                        break
                    pending.add(pool.submit(self._one, job[0], job[1], run_id))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()

    def _one(self, workflow_id: str, job_id: str, run_id: int) -> JobOutcome:
        if self.stop.is_set():
            return JobOutcome(workflow_id, job_id, "skipped")
        self.limiter.acquire()
        if self.stop.is_set():
            return JobOutcome(workflow_id, job_id, "skipped")
        try:
            fetched = self.fetcher.fetch_job(workflow_id, job_id)
        except AuthenticationError as exc:
            if not self.stop.is_set():
                self._auth_error = str(exc)
                self.stop.set()
            self._record_failure(workflow_id, job_id, run_id, exc, count_against_job=False)
            return JobOutcome(workflow_id, job_id, "failed", error=str(exc))
        except ApiError as exc:
            self._record_failure(workflow_id, job_id, run_id, exc)
            return JobOutcome(workflow_id, job_id, "failed", error=str(exc))
        return self._archive(fetched, run_id)

    def _archive(self, fetched: FetchedJob, run_id: int) -> JobOutcome:
        wf, job_id = fetched.workflow_id, fetched.job_id

        def update_tracking(session: Session, result: ArchiveResult) -> None:
            row = tracking.load(session, wf, job_id)
            values = self.policy.after_success(row, self.now(), result.status, result.is_terminal)
            tracking.apply(session, wf, job_id, values)

        try:
            result = archive_one(
                self.sessions,
                fetched.body,
                fetched.fetched_at,
                workflow_id=wf,
                job_id=job_id,
                classifier=self.classifier,
                before_commit=update_tracking,
            )
        except ArchiverError as exc:
            self._record_failure(wf, job_id, run_id, exc)
            return JobOutcome(wf, job_id, "failed", error=str(exc))
        except (IntegrityError, DBAPIError) as exc:
            message = f"database refused the job: {str(exc.orig).strip().splitlines()[0][:300]}"
            self._record_failure(wf, job_id, run_id, exc, message=message)
            return JobOutcome(wf, job_id, "failed", error=message)
        return JobOutcome(
            wf, job_id, result.outcome, result.changes, result.problems, result.status
        )

    def _record_failure(
        self,
        workflow_id: str,
        job_id: str,
        run_id: int,
        exc: Exception,
        *,
        message: str | None = None,
        count_against_job: bool = True,
    ) -> None:
        message = message or str(exc)
        now = self.now()
        log.warning("%s/%s failed: %s", workflow_id, job_id, message)
        with self.sessions.begin() as session:
            if count_against_job:
                row = tracking.load(session, workflow_id, job_id)
                tracking.apply(
                    session, workflow_id, job_id, self.policy.after_failure(row, now, exc, message)
                )
            runs.record_error(
                session,
                run_id,
                workflow_id=workflow_id,
                job_id=job_id,
                when=now,
                reason=_reason(exc),
                message=message,
                http_status=getattr(exc, "status", None),
                error_code=getattr(exc, "code", None),
            )


def _reason(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return exc.reason
    return "invalid_payload" if isinstance(exc, PayloadError) else "database"
