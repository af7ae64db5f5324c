"""One sync pass: fetch every due tracked job once and archive it with its tracking row.

Fetches run on a bounded thread pool under a global rate limit; the pass's own thread archives
the bodies that have arrived in batches (``archiver.archive.batches.archive_batch``), each job's
history and tracking row in the batch's one transaction. A rejected API key stops the pass
at once (every other request would be rejected too), and so do first answers that all show the
API unreachable or the base URL wrong (``archiver.polling.failures``), none of it counted against
the jobs; other failures are recorded per job and the pass goes on. Jobs come either from the
due list (one process) or from leases claimed batch by batch (several processes on one database,
see ``archiver.polling.leases``).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from archiver.api.client import FetchedJob
from archiver.api.ratelimit import RateLimiter
from archiver.archive import runs
from archiver.archive.batches import Entry, archive_batch, database_gone
from archiver.archive.results import ArchiveResult
from archiver.config import Settings
from archiver.db import describe_error
from archiver.errors import ApiError, ArchiverError, AuthenticationError, PayloadError
from archiver.polling import failures, leases, tracking
from archiver.polling.discovery import Discovery, Lister, ListingSummary, WorkflowLease
from archiver.polling.leases import Claim, LeaseLost
from archiver.statuses import StatusClassifier
from archiver.wording import counted

log = logging.getLogger("archiver.sync")
# one line per failed job, apart from the pass's own lines: ``archiver sync`` prints those
# failures itself, the daemon's log keeps them
job_log = logging.getLogger("archiver.sync.jobs")
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
    cause: str | None = None  # with the reason, in a few words: "connection refused"
    counted: bool = True  # a failure counted against the job (not the key's or the URL's)


@dataclass
class SyncSummary:
    run_id: int | None = None
    due: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    changes: int = 0
    problems: int = 0
    seconds: float = 0.0
    auth_error: str | None = None
    # the settings' fault that stopped the pass (``archiver.polling.failures``), and how many
    # of its first requests showed it
    api_unusable: str | None = None
    api_unusable_count: int = 0
    errors: list[str] = field(default_factory=list)
    failures: dict[str, Counter[str]] = field(default_factory=dict)  # reason -> causes
    # the pass's listing step (``archiver.polling.discovery``); None when it did not list
    listing: ListingSummary | None = None

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
            **(self.listing.run_counts() if self.listing else {}),
        }

    def line(self) -> str:
        c = self.counts
        rate = self.due / self.seconds if self.seconds else 0.0
        lost = f", lost lease {c['lost']}" if c["lost"] else ""
        return (
            f"sync: {counted(self.due, 'due job')} in {self.seconds:.1f}s ({rate:.0f}/s): archived "
            f"{self.archived} (new {c['new']}, changed {c['changed']}), unchanged "
            f"{c['unchanged']}, stale {c['stale']}, failed {c['failed']}, skipped {c['skipped']}"
            f"{lost}; {counted(self.changes, 'change')} recorded{self.listing_part()}"
        )

    def listing_part(self) -> str:
        """``; listed 50 workflows: 3 new jobs, 12 changed; 1 listing failed``, or nothing
        when the pass listed no workflow (none is watched)."""
        if self.listing is None or not self.listing.attempted:
            return ""
        return f"; {self.listing.part()}"

    def failures_line(self) -> str:
        """``failed 12: transport 10 (connection refused), not_found 2``."""
        return failures.grouped(self.failures)

    def add(self, outcome: JobOutcome) -> None:
        self.due += 1
        self.counts[outcome.outcome] += 1
        self.changes += outcome.changes
        self.problems += outcome.problems
        if outcome.outcome == "failed":
            causes = self.failures.setdefault(outcome.reason or "unknown", Counter())
            causes[outcome.cause or ""] += 1
            if outcome.error:
                self.errors.append(f"{outcome.workflow_id}/{outcome.job_id}: {outcome.error}")


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
        workflow_refresh: float = 3600.0,
        now: Callable[[], datetime] = _now,
    ) -> None:
        self.sessions = sessions
        self.fetcher = fetcher
        # the listing side of the same client, when it has one (``discovery.Lister``)
        self.lister: Lister | None = fetcher if isinstance(fetcher, Lister) else None
        self.workflow_refresh = workflow_refresh
        self.policy = policy
        self.classifier = classifier
        self.concurrency = concurrency
        self.limiter = RateLimiter(rate_limit)
        self.now = now
        self.stop = threading.Event()
        self._auth_error: str | None = None
        self._first = failures.FirstRequests()
        # the sync_runs row of a pass that started and could not be finished (its database
        # went away): the daemon closes it and says why once the database is back
        self.open_run: int | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        sessions: sessionmaker[Session],
        client: Fetcher,
        *,
        now: Callable[[], datetime] = _now,
    ) -> SyncPass:
        """The pass the settings describe (polling policy, status classes, concurrency, rate
        limit) over the caller's archive and client: the caller opens and closes those."""
        return cls(
            sessions,
            client,
            policy=tracking.PollingPolicy.from_settings(settings),
            classifier=StatusClassifier.with_overrides(settings.status_map),
            concurrency=settings.concurrency,
            rate_limit=settings.rate_limit,
            workflow_refresh=settings.workflow_refresh,
            now=now,
        )

    def run(
        self,
        *,
        everything: bool = False,
        claims: Iterable[Claim] | None = None,
        on_job: Callable[[JobOutcome], None] | None = None,
        on_start: Callable[[int], None] | None = None,
        window: int | None = None,
        discover: bool = True,
        lease: WorkflowLease | None = None,
    ) -> SyncSummary:
        """One pass over ``claims`` (leased jobs), or else over the due (``everything``) jobs.

        First, unless ``discover`` is off, the listing step (``archiver.polling.discovery``):
        watched workflows' jobs are listed, new ones tracked and changed ones made due, so the
        selection that follows fetches them in this pass. ``lease``: several workers share the
        database, and this one lists only the workflows it claims.
        """
        started = time.monotonic()
        summary = SyncSummary()
        self._auth_error = None
        self._first = failures.FirstRequests()
        listed: int | None = None
        with self.sessions.begin() as session:
            summary.run_id = runs.start_run(session, "sync", self.now())
        run_id = self.open_run = summary.run_id
        try:
            if discover and self.lister is not None:
                summary.listing = self._discovery(self.lister).run(run_id, lease)
                self._auth_error = summary.listing.auth_error
            if claims is None:
                with self.sessions() as session:
                    now = self.now()
                    listed = tracking.count_due(session, now, everything=everything)
                due = tracking.due_pages(self.sessions, now, everything=everything)
                claims = (Claim(w, j) for w, j in itertools.islice(due, listed))
                if on_start:
                    on_start(listed)
            for outcome in self._outcomes(iter(claims), run_id, window or self.concurrency * 4):
                summary.add(outcome)
                if on_job:
                    on_job(outcome)
            if listed is not None and summary.due < listed:  # stopped early
                summary.counts["skipped"] += listed - summary.due
                summary.due = listed
        finally:
            summary.auth_error = self._auth_error
            summary.api_unusable = self._first.fault
            summary.api_unusable_count = self._first.count
            summary.seconds = time.monotonic() - started
            with self.sessions.begin() as session:
                runs.finish_run(session, run_id, summary.run_counts(), self.now())
            self.open_run = None
        return summary

    def _discovery(self, lister: Lister) -> Discovery:
        return Discovery(
            self.sessions,
            lister,
            pause_after=self.policy.pause_after,
            refresh=self.workflow_refresh,
            now=self.now,
            limiter=self.limiter,
            concurrency=self.concurrency,
            stop=self.stop,
            first=self._first,
        )

    def _outcomes(self, claims: Iterator[Claim], run_id: int, window: int) -> Iterator[JobOutcome]:
        """Results as they complete, with a bounded number of jobs in flight (flat memory).

        Fetches run on the pool; their bodies are archived here, in batches of whatever has
        arrived, while the pool goes on fetching: a database write per batch instead of one
        per job, and no threads queuing for SQLite's single writer.
        """
        pending: set[Future[JobOutcome | _Fetched | _Failed]] = set()
        fetched: list[_Fetched] = []
        held_back: list[_Failed] = []  # failures waiting for the verdict on the first answers
        sent = 0
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="archiver-sync") as pool:
            while True:
                while len(pending) + len(fetched) < window and not self.stop.is_set():
                    if self._first.open and sent >= self._first.size:
                        break  # no more requests than the verdict needs, until it is in
                    held = next(claims, None)
                    if held is None:
                        break
                    pending.add(pool.submit(self._fetch, held, run_id))
                    sent += 1
                if not pending and not fetched:
                    self._first.finished()
                    yield from self._judged(held_back, run_id)
                    return
                done: set[Future[JobOutcome | _Fetched | _Failed]] = set()
                if pending:
                    # with bodies waiting, only what is ready now joins them
                    timeout = 0 if fetched else None
                    done, pending = wait(pending, timeout, return_when=FIRST_COMPLETED)
                for future in done:
                    got = future.result()
                    if isinstance(got, _Failed):
                        self._first.failed(failures.api_fault(got.exc))
                        held_back.append(got)
                    elif isinstance(got, _Fetched):
                        self._first.answered()
                        fetched.append(got)
                    else:
                        if got.outcome != "skipped":
                            self._first.answered()
                        yield got
                if not self._first.open and held_back:
                    yield from self._judged(held_back, run_id)
                    held_back = []
                if fetched and (not done or not pending or len(fetched) >= window):
                    yield from self._archive(fetched, run_id)
                    fetched = []

    def _judged(self, held_back: Sequence[_Failed], run_id: int) -> Iterator[JobOutcome]:
        """Failures held back for the verdict on the first answers, recorded now that it is in:
        against their jobs in a normal pass, not when the settings are at fault."""
        if self._first.fault is not None and not self.stop.is_set():
            log.debug(  # the CLI and the daemon each say it once, with the setting to check
                "pass stopped: the first %d requests all failed alike (%s)",
                self._first.count,
                self._first.fault,
            )
            self.stop.set()
        for failed in held_back:
            yield self._record_failure(
                failed.held, run_id, failed.exc, count_against_job=self._first.fault is None
            )

    def _fetch(self, held: Claim, run_id: int) -> JobOutcome | _Fetched | _Failed:
        """One job's fetch; whatever goes wrong with it is recorded against it."""
        wf, job_id = held.workflow_id, held.job_id
        try:
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
                # the key is at fault, not the job: its schedule and failure count stay
                self._record_failure(held, run_id, exc, count_against_job=False)
                return JobOutcome(
                    wf, job_id, "failed", error=str(exc), reason=exc.reason, counted=False
                )
            except ApiError as exc:
                if self._first.open or self._first.fault is not None:
                    return _Failed(held, exc)  # the pass's thread judges and records it
                return self._record_failure(held, run_id, exc)
        except (DBAPIError, ArchiverError):
            raise  # recording the failure met a database outage
        except Exception as exc:  # a defect no layer foresaw: isolate it
            return self._unexpected(held, run_id, exc)
        # Only the body goes on: the store decodes it again (keeping it verbatim, duplicate
        # keys included), and the client's decoded copy would double a large job's memory.
        done = _Fetched(held, fetched.body, fetched.fetched_at)
        # hashed here, beside the other fetches (hashlib lets go of the interpreter while it
        # hashes), not on the writer's thread, which every job of the pass waits for
        done.entry.digest()
        return done

    def _unexpected(self, held: Claim, run_id: int, exc: Exception) -> JobOutcome:
        log.debug("unexpected failure for %s/%s", held.workflow_id, held.job_id, exc_info=exc)
        message = f"unexpected {type(exc).__name__}: {str(exc)[:300]}"
        return self._record_failure(held, run_id, exc, message=message)

    def _archive(self, fetched: Sequence[_Fetched], run_id: int) -> Iterator[JobOutcome]:
        """Archive fetched bodies in one transaction, each job's tracking row updated with it."""
        claim_of = {id(f.entry): f.held for f in fetched}

        def admit(session: Session, entries: Sequence[Entry]) -> list[LeaseLost | None]:
            return leases.verify_many(session, [claim_of[id(e)] for e in entries])

        def update_tracking(session: Session, done: Sequence[tuple[Entry, ArchiveResult]]) -> None:
            rows = tracking.load_many(session, [(r.workflow_id, r.job_id) for _, r in done])
            now = self.now()
            changes = []
            for _, result in done:
                key = (result.workflow_id, result.job_id)
                values = self.policy.after_success(
                    rows.get(key, {}), now, result.status, result.is_terminal
                )
                changes.append((key, {**values, **leases.RELEASED}))
            tracking.apply_many(session, changes)

        outcomes = archive_batch(
            self.sessions,
            [f.entry for f in fetched],
            classifier=self.classifier,
            admit=admit,
            before_commit=update_tracking,
        )
        for f, got in zip(fetched, outcomes, strict=True):
            if isinstance(got, DBAPIError) and database_gone(got):
                raise got  # the jobs before it are committed and were counted
            yield self._outcome(f.held, got, run_id)

    def _outcome(self, held: Claim, got: ArchiveResult | Exception, run_id: int) -> JobOutcome:
        wf, job_id = held.workflow_id, held.job_id
        if isinstance(got, ArchiveResult):
            return JobOutcome(wf, job_id, got.outcome, got.changes, got.problems, got.status)
        if isinstance(got, LeaseLost):
            log.warning("%s", got)
            return JobOutcome(wf, job_id, "lost", error=str(got), reason="lease_lost")
        if isinstance(got, ArchiverError):
            return self._record_failure(held, run_id, got)
        if isinstance(got, DBAPIError):
            message = f"database refused the job: {describe_error(got)}"
            return self._record_failure(held, run_id, got, message=message)
        return self._unexpected(held, run_id, got)

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
        # a failure of the key or the URL is said once, for the pass, not once per job
        job_log.log(
            logging.WARNING if count_against_job else logging.DEBUG,
            "%s/%s failed: %s",
            wf,
            job_id,
            message,
        )
        cause = failures.cause(exc)
        return JobOutcome(
            wf,
            job_id,
            "failed",
            error=message,
            reason=reason,
            cause=cause,
            counted=count_against_job,
        )


class _Failed:
    """A failed fetch, for the pass's thread to judge (``failures.FirstRequests``)."""

    __slots__ = ("exc", "held")

    def __init__(self, held: Claim, exc: ApiError) -> None:
        self.held = held
        self.exc = exc


class _Fetched:
    """A fetched body waiting for its batch."""

    __slots__ = ("entry", "held")

    def __init__(self, held: Claim, body: str, fetched_at: datetime) -> None:
        self.held = held
        self.entry = Entry(body, fetched_at, held.workflow_id, held.job_id)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return exc.reason
    if isinstance(exc, PayloadError):
        return "invalid_payload"
    return "database" if isinstance(exc, DBAPIError) else "internal"
