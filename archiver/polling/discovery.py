"""The listing step at the start of every pass: watched workflows' jobs, found and compared.

In order: each active watch-all rule pages through listWorkflows (every workflow found is
described in the archive and, unless the user unwatched it, watched); then each watched
workflow's jobs are listed once (listJobs). A job id not tracked yet is tracked, due now; a
tracked job whose summary (status, progress, cost, updated_at, finished_at, time_taken) differs
from its archived row, and whose summary digest differs from the one stored when the listing
last made it due, is made due now (a settled one goes back to ``settling``, keeping its
``terminal_since``, so it settles again after the fetch: a late re-pricing is caught by the
list). Other jobs keep their schedule, the safety net for changes a summary does not show. The
pass then fetches the due jobs as before, the discovered and changed ones among them.

A workflow watched by id that no rule listed gets its description (``list_workflows`` with
``id=``) when first watched and then every ``workflow_refresh`` seconds, and its estimate when
first described, when its ``updated_at`` moved, or every ``workflow_refresh``; in steady state a
pass makes one listJobs per watched workflow and the rules' pages, nothing else.

Failures: a rejected key stops the pass as a job fetch's does. A listing that fails is recorded
in ``sync_errors`` with its workflow and counted; a workflow whose listJobs answers 403/404
``pause_after`` times in a row is ``paused`` (with the reason in ``last_error``), the others go
on. Unusable list items are recorded one by one (reason ``invalid_list_item``) and never tracked.
With several workers (``WorkflowLease``), each workflow and rule is claimed by one of them per
interval (``archiver.polling.leases``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from archiver.api.listing import JobListing, JobSummary, WorkflowInfo, WorkflowPage
from archiver.api.ratelimit import RateLimiter
from archiver.archive import runs
from archiver.archive.changelog import same
from archiver.archive.values import clean_text
from archiver.archive.workflows import KEEP, StoredWorkflow, record_estimate, record_workflow
from archiver.errors import ApiError, AuthenticationError, ForbiddenError, NotFoundError
from archiver.fields import SHORT_TEXT_MAX, STATUS_MAX
from archiver.ids import id_problem, shown_id
from archiver.models import JOBS, TRACKED, WATCH_RULES, WORKFLOWS
from archiver.polling import failures, leases, tracking, watching
from archiver.polling.leases import ListingClaim
from archiver.wording import counted

log = logging.getLogger("archiver.discovery")
# one line per failed listing, description or estimate: the daemon's log shows them, while
# ``archiver sync`` silences this logger and prints its own list (so each is said once)
failure_log = logging.getLogger("archiver.sync.listings")
CHUNK = 500  # job ids per statement
PAGE = 200  # workflow ids claimed (or read) at a time


# --- what the listing client gives (``archiver.api.listing``) ------------------------------------


# what the pass reads of them, by these names
JobSummaryLike = JobSummary
JobListingLike = JobListing
WorkflowInfoLike = WorkflowInfo
WorkflowPageLike = WorkflowPage


@runtime_checkable
class Lister(Protocol):
    """The listing side of the API client (``archiver.api.listing``)."""

    def list_jobs(self, workflow_id: str) -> JobListingLike: ...

    def list_workflows(
        self, *, project_id: str | None = None, workflow_id: str | None = None
    ) -> Iterator[WorkflowPageLike]: ...

    def workflow_estimate(self, workflow_id: str) -> int | None: ...


# --- the step's result ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowLease:
    """Several workers on one database: list only what this worker claims, and only workflows
    (and rules) not listed within ``listed_within`` seconds (half the daemon's interval)."""

    owner: str
    listed_within: float
    lease_seconds: float


@dataclass
class ListingSummary:
    workflows_listed: int = 0  # listJobs answers used
    rules_listed: int = 0
    workflows_found: int = 0  # workflows a rule found that were not watched before
    jobs_discovered: int = 0
    jobs_changed: int = 0  # tracked jobs the listing made due
    list_failed: int = 0  # listings (jobs, workflows, estimates) that failed
    bad_items: int = 0  # list items that could not be used
    listings_with_bad_items: int = 0
    paused: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    auth_error: str | None = None

    @property
    def attempted(self) -> bool:
        return bool(self.workflows_listed or self.rules_listed or self.list_failed)

    def run_counts(self) -> dict[str, int]:
        return {
            "workflows_listed": self.workflows_listed,
            "jobs_discovered": self.jobs_discovered,
            "list_failed": self.list_failed + self.listings_with_bad_items,
        }

    def part(self) -> str:
        """``listed 50 workflows: 3 new jobs, 12 changed; 1 listing failed, 2 bad items``."""
        text = (
            f"listed {counted(self.workflows_listed, 'workflow')}: "
            f"{counted(self.jobs_discovered, 'new job')}, {self.jobs_changed} changed"
        )
        trouble = []
        if self.list_failed:
            trouble.append(f"{counted(self.list_failed, 'listing')} failed")
        if self.bad_items:
            trouble.append(f"{counted(self.bad_items, 'bad list item')}")
        if self.paused:
            trouble.append(f"{counted(len(self.paused), 'workflow')} paused")
        return text + (f"; {', '.join(trouble)}" if trouble else "")


# --- one workflow's listing, done on a pool thread -----------------------------------------------


@dataclass(frozen=True)
class _Target:
    held: ListingClaim
    version: int
    last_seen_at: datetime | None
    updated_at: datetime | None
    estimated_at: datetime | None


@dataclass
class _Listed:
    target: _Target
    info: WorkflowInfoLike | None = None
    described: bool = False  # a description was asked for
    estimate: int | None = None
    estimated: bool = False
    listing: JobListingLike | None = None
    errors: list[tuple[str, ApiError]] = field(default_factory=list)  # (what, error)
    failed: ApiError | None = None  # listJobs failed
    estimate_failed: bool = False


class Discovery:
    """The listing step of one pass (see the module docstring). ``run`` is called by the pass's
    thread; HTTP requests run on a pool of ``concurrency`` threads under the pass's limiter."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        lister: Lister,
        *,
        pause_after: int,
        refresh: float,
        now: Callable[[], datetime],
        limiter: RateLimiter,
        concurrency: int,
        stop: threading.Event,
        first: failures.FirstRequests,
    ) -> None:
        self.sessions = sessions
        self.lister = lister
        self.pause_after = pause_after
        self.refresh = timedelta(seconds=refresh)
        self.now = now
        self.limiter = limiter
        self.concurrency = concurrency
        self.stop = stop
        self.first = first
        # claims taken and not yet done (a pass stopped, a lease lost): given back at the end
        self._outstanding: dict[tuple[str, str], ListingClaim] = {}

    def run(self, run_id: int, lease: WorkflowLease | None = None) -> ListingSummary:
        summary = ListingSummary()
        self._outstanding = {}
        try:
            self._rules(run_id, lease, summary)
            if not self.stop.is_set():
                self._workflows(run_id, lease, summary)
        finally:
            self._give_back()
        return summary

    def _give_back(self) -> None:
        """Release the claims this pass took and did not finish, so that the next pass (of any
        worker) lists them instead of waiting for the lease to expire."""
        if not self._outstanding:
            return
        with self.sessions.begin() as session:
            for (name, _), held in self._outstanding.items():
                table, key = _TABLES[name]
                leases.listing_released(session, table, key, held)
        self._outstanding = {}

    def _done(
        self, session: Session, table: Any, key: Any, held: ListingClaim, hold: float | None
    ) -> None:
        leases.listing_done(session, table, key, held, hold)
        self._outstanding.pop((table.name, held.key), None)

    # --- watch-all rules -----------------------------------------------------------------------

    def _rules(self, run_id: int, lease: WorkflowLease | None, summary: ListingSummary) -> None:
        for held in self._claimed(WATCH_RULES, lease):
            if self.stop.is_set():
                return
            self._expand(run_id, held, lease, summary)

    def _claimed(self, table: Any, lease: WorkflowLease | None) -> Iterator[ListingClaim]:
        """Rules (or workflows) to list: claimed batch by batch under a lease, else all."""
        if lease is None:
            key = WATCH_RULES.c.project_id if table is WATCH_RULES else WORKFLOWS.c.workflow_id
            where = (
                WATCH_RULES.c.state == "active"
                if table is WATCH_RULES
                else WORKFLOWS.c.state == "watched"
            )
            with self.sessions() as session:
                keys = list(session.scalars(select(key).where(where).order_by(key)))
            yield from (ListingClaim(k) for k in keys)
            return
        claim = leases.claim_rules if table is WATCH_RULES else leases.claim_workflows
        listed_before = self.now() - timedelta(seconds=lease.listed_within)
        while not self.stop.is_set():
            with self.sessions.begin() as session:
                batch = claim(session, lease.owner, listed_before, PAGE, lease.lease_seconds)
            if not batch:
                return
            self._outstanding.update({(table.name, c.key): c for c in batch})
            yield from batch

    def _expand(
        self, run_id: int, held: ListingClaim, lease: WorkflowLease | None, summary: ListingSummary
    ) -> None:
        """Page through one rule's workflows, describing and watching each one found."""
        project = held.key or None
        where = f"workflows of project {project}" if project else "workflows"
        seen = 0
        error: ApiError | None = None
        pages: Iterator[WorkflowPageLike] | None = None
        while not self.stop.is_set():
            self.limiter.acquire()
            try:
                if pages is None:
                    pages = self.lister.list_workflows(project_id=project)
                page = next(pages, None)
            except ApiError as exc:
                error = exc
                break
            self.first.answered()
            if page is None:
                break
            now = self.now()
            with self.sessions.begin() as session:
                if not leases.holds_listing(session, WATCH_RULES, WATCH_RULES.c.project_id, held):
                    log.warning("lease on the rule for %s was lost: its listing stops", where)
                    return
                for info in page.workflows:
                    stored = record_workflow(session, info, now)
                    self._after_description(session, stored)
                    if watching.watch_found(session, info.workflow_id, now):
                        summary.workflows_found += 1
                    seen += 1
                for problem in page.problems:
                    self._bad_item(session, run_id, None, f"listing {where}: {problem}")
                summary.bad_items += _unusable(page)
        if error is not None:
            self._judge(error)
            if self._auth(error, summary):
                return
            self._failed(run_id, None, f"listing {where}", error, summary)
        now = self.now()
        with self.sessions.begin() as session:
            if not leases.holds_listing(session, WATCH_RULES, WATCH_RULES.c.project_id, held):
                return
            if error is None and not self.stop.is_set():
                summary.rules_listed += 1
                values: dict[str, Any] = {
                    "last_listed_at": now,
                    "workflows_listed": seen,
                    "consecutive_failures": 0,
                    "last_error": None,
                }
            else:
                values = {}
                if error is not None:
                    values = {
                        "consecutive_failures": WATCH_RULES.c.consecutive_failures + 1,
                        "last_error": str(error)[:2000],
                        "last_error_at": now,
                    }
            if values:
                session.execute(
                    update(WATCH_RULES).where(WATCH_RULES.c.project_id == held.key).values(**values)
                )
            hold = None if error is None else (lease.listed_within if lease else None)
            self._done(session, WATCH_RULES, WATCH_RULES.c.project_id, held, hold)

    @staticmethod
    def _after_description(session: Session, stored: StoredWorkflow) -> None:
        """A described workflow whose ``updated_at`` moved gets its estimate asked again."""
        if stored.outcome == "changed" and "updated_at" in stored.changed:
            session.execute(
                update(WORKFLOWS)
                .where(WORKFLOWS.c.workflow_id == stored.workflow_id)
                .values(estimated_at=None)
            )

    # --- watched workflows ---------------------------------------------------------------------

    def _workflows(self, run_id: int, lease: WorkflowLease | None, summary: ListingSummary) -> None:
        targets = self._targets(self._claimed(WORKFLOWS, lease))
        pending: set[Future[_Listed]] = set()
        window = max(1, self.concurrency)
        with ThreadPoolExecutor(window, thread_name_prefix="archiver-list") as pool:
            while True:
                while len(pending) < window and not self.stop.is_set():
                    target = next(targets, None)
                    if target is None:
                        break
                    pending.add(pool.submit(self._list_one, target))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    self._store(run_id, future.result(), lease, summary)

    def _targets(self, claims: Iterator[ListingClaim]) -> Iterator[_Target]:
        """The claimed workflows with what decides their description and estimate requests."""
        while True:
            batch = [c for _, c in zip(range(PAGE), claims, strict=False)]
            if not batch:
                return
            with self.sessions() as session:
                rows = {
                    r.workflow_id: r
                    for r in session.execute(
                        select(
                            WORKFLOWS.c.workflow_id,
                            WORKFLOWS.c.version,
                            WORKFLOWS.c.last_seen_at,
                            WORKFLOWS.c.updated_at,
                            WORKFLOWS.c.estimated_at,
                        ).where(WORKFLOWS.c.workflow_id.in_([c.key for c in batch]))
                    )
                }
            for held in batch:
                row = rows.get(held.key)
                if row is not None:
                    yield _Target(
                        held, row.version, row.last_seen_at, row.updated_at, row.estimated_at
                    )

    def _list_one(self, target: _Target) -> _Listed:
        """The workflow's requests: its description and estimate when due, then listJobs."""
        out = _Listed(target)
        wf = target.held.key
        now = self.now()
        try:  # a failed description is asked again next pass; the jobs are listed anyway
            if target.version == 0 or _older(target.last_seen_at, now - self.refresh):
                out.described = True
                self.limiter.acquire()
                out.info = _find(self.lister.list_workflows(workflow_id=wf), wf)
        except AuthenticationError as exc:
            out.failed = exc
            return out
        except ApiError as exc:
            out.errors.append(("describing", exc))
        moved = out.info is not None and not same(out.info.updated_at, target.updated_at)
        due = target.estimated_at is None or _older(target.estimated_at, now - self.refresh)
        try:  # a failed estimate is asked again after ``workflow_refresh``, not every pass
            if (moved or due) and not self.stop.is_set():
                self.limiter.acquire()
                out.estimate = self.lister.workflow_estimate(wf)
                out.estimated = True
        except AuthenticationError as exc:
            out.failed = exc
            return out
        except ApiError as exc:
            out.errors.append(("estimating", exc))
            out.estimate_failed = True
        if self.stop.is_set():
            return out
        try:
            self.limiter.acquire()
            out.listing = self.lister.list_jobs(wf)
        except ApiError as exc:
            out.failed = exc
        return out

    def _store(
        self, run_id: int, got: _Listed, lease: WorkflowLease | None, summary: ListingSummary
    ) -> None:
        """Write one workflow's listing, fenced by its claim: the pass's thread only."""
        held = got.target.held
        wf = held.key
        for what, exc in got.errors:
            self._judge(exc)
            if self._auth(exc, summary):
                return
            self._failed(run_id, wf, f"{what} workflow {wf}", exc, summary)
        if got.failed is not None:
            self._judge(got.failed)
            if self._auth(got.failed, summary):
                return
        elif got.listing is not None:
            self.first.answered()
        now = self.now()
        with self.sessions.begin() as session:
            if not leases.holds_listing(session, WORKFLOWS, WORKFLOWS.c.workflow_id, held):
                log.warning("lease on workflow %s was lost: its listing is dropped", wf)
                return
            if got.info is not None:
                stored = record_workflow(
                    session, got.info, now, estimate=got.estimate if got.estimated else KEEP
                )
                if not got.estimated:
                    self._after_description(session, stored)
            elif got.estimated:
                record_estimate(session, wf, got.estimate, now)
            if got.estimate_failed:
                session.execute(
                    update(WORKFLOWS).where(WORKFLOWS.c.workflow_id == wf).values(estimated_at=now)
                )
            if got.failed is not None:
                self._listing_failed(session, run_id, wf, got.failed, now, summary)
                hold = lease.listed_within if lease else None
            elif got.listing is not None:
                self._apply_listing(session, run_id, wf, got.listing, now, summary)
                hold = None
            else:
                hold = None  # stopped before its listJobs: the next pass lists it
            self._done(session, WORKFLOWS, WORKFLOWS.c.workflow_id, held, hold)

    def _apply_listing(
        self,
        session: Session,
        run_id: int,
        wf: str,
        listing: JobListingLike,
        now: datetime,
        summary: ListingSummary,
    ) -> None:
        summary.workflows_listed += 1
        usable: list[JobSummaryLike] = []
        problems = list(listing.problems)
        for item in listing.jobs:
            problem = id_problem(item.job_id)  # the client checks too; a bad key is never kept
            if problem:
                problems.append(f"job id {shown_id(item.job_id)} {problem}")
            else:
                usable.append(item)
        for problem in problems:
            self._bad_item(session, run_id, wf, f"listing jobs of {wf}: {problem}")
        summary.bad_items += _unusable(listing) + len(problems) - len(listing.problems)
        if problems:
            summary.listings_with_bad_items += 1
        usable.sort(key=lambda item: item.job_id)
        for start in range(0, len(usable), CHUNK):
            self._compare(session, wf, usable[start : start + CHUNK], now, summary)
        session.execute(
            update(WORKFLOWS)
            .where(WORKFLOWS.c.workflow_id == wf)
            .values(
                last_listed_at=now,
                jobs_listed=len(usable),
                consecutive_failures=0,
                last_error=None,
            )
        )

    def _compare(
        self,
        session: Session,
        wf: str,
        items: Sequence[JobSummaryLike],
        now: datetime,
        summary: ListingSummary,
    ) -> None:
        """Track the new ids of one chunk; make due the tracked ones whose summary changed."""
        ids = [i.job_id for i in items]
        known = {
            r.job_id: r
            for r in session.execute(
                select(
                    TRACKED.c.job_id,
                    TRACKED.c.state,
                    TRACKED.c.summary_sha256,
                    TRACKED.c.next_poll_at,
                ).where(TRACKED.c.workflow_id == wf, TRACKED.c.job_id.in_(ids))
            )
        }
        archived = {
            r.job_id: r
            for r in session.execute(
                select(
                    JOBS.c.job_id,
                    JOBS.c.status,
                    JOBS.c.progress,
                    JOBS.c.cost,
                    JOBS.c.updated_at,
                    JOBS.c.finished_at,
                    JOBS.c.time_taken,
                ).where(JOBS.c.workflow_id == wf, JOBS.c.job_id.in_(ids))
            )
        }
        # rows written in key order, the order archiving locks them in: fewer deadlocks with a
        # worker archiving these jobs meanwhile
        new = sorted(set(i for i in ids if i not in known))
        if new:
            summary.jobs_discovered += tracking.track(session, [(wf, j) for j in new], now)
        changes: list[tuple[tuple[str, str], dict[str, Any]]] = []
        for item in items:
            row = known.get(item.job_id)
            if row is None:
                changes.append(((wf, item.job_id), {"summary_sha256": item.digest}))
                continue
            if row.state == "untracked" or row.summary_sha256 == item.digest:
                continue
            values: dict[str, Any] = {"summary_sha256": item.digest}
            stored = archived.get(item.job_id)
            if stored is not None and _differs(item, stored):
                values.update(_due(row, now))
                summary.jobs_changed += 1
            changes.append(((wf, item.job_id), values))
        tracking.apply_many(session, sorted(changes, key=lambda change: change[0]))

    # --- failures ------------------------------------------------------------------------------

    def _judge(self, exc: ApiError) -> None:
        """A failed listing joins the verdict on the pass's first answers: when they all show
        the API unreachable or the URL wrong, the pass stops (``archiver.polling.failures``)."""
        self.first.failed(failures.api_fault(exc))
        if self.first.fault is not None:
            self.stop.set()

    def _auth(self, exc: ApiError, summary: ListingSummary) -> bool:
        """A rejected key stops the pass (every other request would be rejected too)."""
        if not isinstance(exc, AuthenticationError):
            return False
        if summary.auth_error is None:
            summary.auth_error = str(exc)
        self.stop.set()
        return True

    def _listing_failed(
        self,
        session: Session,
        run_id: int,
        wf: str,
        exc: ApiError,
        now: datetime,
        summary: ListingSummary,
    ) -> None:
        """Recorded against the workflow; 403/404 ``pause_after`` times in a row pauses it. A
        failure that shows the settings wrong (no connection, a bare 404) counts against none."""
        message = f"listing jobs of {wf}: {exc}"
        self._record(session, run_id, wf, exc, message)
        summary.list_failed += 1
        summary.errors.append(message)
        failure_log.warning("%s", message)
        values: dict[str, Any] = {"last_error": message[:2000], "last_error_at": now}
        if failures.api_fault(exc) is None:
            count = session.execute(
                select(WORKFLOWS.c.consecutive_failures).where(WORKFLOWS.c.workflow_id == wf)
            ).scalar_one()
            count = int(count or 0) + 1
            values["consecutive_failures"] = count
            if isinstance(exc, NotFoundError | ForbiddenError) and count >= self.pause_after:
                values.update(watching.state_values("paused", now))
                summary.paused.append(wf)
                log.warning("workflow %s paused after %d answers like: %s", wf, count, exc)
        session.execute(update(WORKFLOWS).where(WORKFLOWS.c.workflow_id == wf).values(**values))

    def _failed(
        self, run_id: int, wf: str | None, what: str, exc: ApiError, summary: ListingSummary
    ) -> None:
        message = f"{what}: {exc}"
        with self.sessions.begin() as session:
            self._record(session, run_id, wf, exc, message)
        summary.list_failed += 1
        summary.errors.append(message)
        failure_log.warning("%s", message)

    def _record(
        self, session: Session, run_id: int, wf: str | None, exc: ApiError, message: str
    ) -> None:
        runs.record_error(
            session,
            run_id,
            workflow_id=wf,
            job_id=None,
            when=self.now(),
            reason=exc.reason,
            message=message,
            http_status=exc.status,
            error_code=exc.code,
        )

    def _bad_item(self, session: Session, run_id: int, wf: str | None, message: str) -> None:
        """One unusable list item, in ``sync_errors`` with its workflow (None: a rule's page)."""
        runs.record_error(
            session,
            run_id,
            workflow_id=wf,
            job_id=None,
            when=self.now(),
            reason="invalid_list_item",
            message=message,
        )


_TABLES = {
    WATCH_RULES.name: (WATCH_RULES, WATCH_RULES.c.project_id),
    WORKFLOWS.name: (WORKFLOWS, WORKFLOWS.c.workflow_id),
}


def _unusable(answer: Any) -> int:
    """The unusable items of an answer: all it counted, described one by one or not (a
    listing describes the first ``MAX_PROBLEMS`` and counts the rest)."""
    counted_all = getattr(answer, "unusable", None)
    return len(answer.problems) if counted_all is None else int(counted_all)


def _find(pages: Iterator[WorkflowPageLike], workflow_id: str) -> WorkflowInfoLike | None:
    """The workflow ``workflow_id`` in the pages of a listing filtered by it."""
    for page in pages:
        for info in page.workflows:
            if info.workflow_id == workflow_id:
                return info
    return None


def _older(when: datetime | None, than: datetime) -> bool:
    return when is None or when < than


def _differs(item: JobSummaryLike, row: Any) -> bool:
    """Whether the summary shows something the archived row does not (compared as stored)."""
    return not (
        same(clean_text(item.status, STATUS_MAX).value, row.status)
        and same(clean_text(item.progress, SHORT_TEXT_MAX).value, row.progress)
        and same(item.cost, row.cost)
        and same(item.updated_at, row.updated_at)
        and same(item.finished_at, row.finished_at)
        and same(clean_text(item.time_taken, SHORT_TEXT_MAX).value, row.time_taken)
    )


def _due(row: Any, now: datetime) -> dict[str, Any]:
    """A tracked job made due now: a settled one settles again after the fetch (its
    ``terminal_since`` kept), a paused one is active again (the listing shows it exists)."""
    if row.state in tracking.POLLED_STATES:
        if row.next_poll_at is not None and row.next_poll_at <= now:
            return {}
        return {"next_poll_at": now}
    if row.state == "settled":
        return {"state": "settling", "next_poll_at": now}
    return {"state": "active", "next_poll_at": now, "consecutive_failures": 0}
