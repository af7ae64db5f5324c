"""``archiver demo``: the whole product in under a minute, on SQLite, with no key or setup.

It archives into a file of its own, ``./archiver-demo.db``, replaced at each run: never the default
archive ``./archiver.db`` nor ``ARCHIVER_DATABASE_URL``'s, so simulated jobs cannot end up in a
real archive, and a second run does not inherit the first run's jobs (which have vanished with
their simulator: 404s, and a cost table over both runs). ``--database-url`` chooses another
database explicitly; it must hold no tracked jobs.

It runs the real thing against the local simulator: migrations, watching every workflow the key
can list (``archiver track --all-workflows``), the same sync passes ``archiver sync`` runs (listing,
discovery, HTTP client, store, history), on a fast schedule, with a live view; new jobs keep
appearing in the simulator's workflows while it runs, and the passes find them. Then a cost report
by workflow (with names), one job's change history, and the SQL to explore further.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver import db
from archiver.api.client import ApiClient
from archiver.audit.verify import verify
from archiver.config import Settings, mask_url
from archiver.errors import ConfigError
from archiver.models import Job, JobChange, TrackedJob, WatchRule, Workflow
from archiver.polling import malloc, watching
from archiver.polling.sync import SyncPass, SyncSummary
from archiver.reporting import reports
from archiver.reporting.queries import job_history, jobs_by_status
from archiver.reporting.render import Grid, history_grid, show
from archiver.sim.simulator import Simulator
from archiver.statuses import CLASSES
from archiver.wording import counted

DEMO_FILE = "archiver-demo.db"
PASS_INTERVAL = 2.0
NEW_JOBS_SHARE = 0.2  # jobs that appear while the demo runs, as a share of those at its start
SHOWN_FIELDS = ("status", "progress", "cost", "finished_at")
EXPLORE_SQL = (
    "select observed_at, job_id, old_value, new_value from job_changes where field = 'cost' "
    "order by observed_at"
)


def fresh_demo_url(folder: Path | None = None) -> str:
    """The demo's own SQLite file in ``folder`` (the current one), emptied: any earlier run's
    file, and its WAL and shared-memory companions, are removed first."""
    path = (folder or Path()) / DEMO_FILE
    for leftover in (path, path.with_name(f"{DEMO_FILE}-wal"), path.with_name(f"{DEMO_FILE}-shm")):
        leftover.unlink(missing_ok=True)
    return f"sqlite:///{path}"


def _simulator(jobs: int, seconds: float) -> Simulator:
    """A fresh population whose lifecycles (re-pricing included) fit in about 3/4 of the run,
    and a fifth as many jobs again appearing while it runs, for the passes to discover."""
    seed = secrets.randbelow(1_000_000)
    key = secrets.token_urlsafe(18)
    now = datetime.now(UTC)
    probe = Simulator(seed=seed, jobs=jobs, api_key=key, time_scale=1.0, tasks=(4, 12), start=now)
    span = probe.settle_time()  # seconds until the last job settles at time scale 1
    scale = max(1.0, span / (0.75 * seconds))
    # The time scale shortens the lifecycles (plans are drawn `scale` times faster) and the
    # timeline runs with the wall clock from now: no payload is dated after it is served, and
    # time_taken agrees with what the passes see.
    return Simulator(
        seed=seed,
        jobs=jobs,
        api_key=key,
        time_scale=scale,
        tasks=(4, 12),
        start=now,
        new_jobs_per_minute=NEW_JOBS_SHARE * jobs * 60.0 / seconds,
    )


def _view(sessions: sessionmaker[Session], passes: int, last: SyncSummary | None, left: float):
    with sessions() as session:
        watched = len(watching.list_watched(session, "watched"))
        by_status = jobs_by_status(session)
        changes = session.scalar(select(func.count()).select_from(JobChange)) or 0
        cost = session.scalar(select(func.coalesce(func.sum(Job.cost), 0))) or 0
    title = (
        f"archiver demo: pass {passes}, {counted(watched, 'workflow')} watched, {left:.0f}s left"
    )
    table = Table(title=title, title_justify="left")
    for name in CLASSES[:5]:
        table.add_column(name, justify="right")
    table.add_column("changes recorded", justify="right")
    table.add_column("cost so far", justify="right")
    table.add_row(*(str(by_status.get(c, 0)) for c in CLASSES[:5]), str(changes), str(cost))
    return Group(table, last.line() if last else "first pass…")


def run_live_demo(
    database_url: str, console: Console, *, jobs: int = 50, seconds: float = 35.0
) -> int:
    """Returns the number of jobs that failed to archive in the last pass (0 on a clean run)."""
    malloc.return_large_blocks()  # as `archiver sync` does: the demo runs its passes
    simulator = _simulator(jobs, seconds)
    db.upgrade(database_url)
    engine = db.make_engine(database_url)
    sessions = db.session_factory(engine)
    try:
        _check_empty(sessions, database_url)
    except ConfigError:
        engine.dispose()
        raise
    with simulator.serve() as server:
        settings = Settings(
            api_key=simulator.api_key,
            api_url=server.url,
            database_url=database_url,
            poll_interval=PASS_INTERVAL,
            poll_jitter=0.0,
            settle_window=seconds,
            settle_interval=PASS_INTERVAL,
            rate_limit=0.0,
            request_deadline=10.0,
        )
        console.print(
            f"Simulating {counted(jobs, 'job')} at {server.url}, more appearing as it runs; "
            f"watching all its workflows (archiver track --all-workflows) and archiving into "
            f"{settings.masked_database_url()} for {seconds:.0f}s.",
            soft_wrap=True,
        )
        with sessions.begin() as session:
            watching.watch_all(session, None, datetime.now(UTC))
        deadline = time.monotonic() + seconds
        passes, last = 0, None
        with ApiClient(settings) as client, Live(console=console, auto_refresh=False) as live:
            sync = SyncPass.from_settings(settings, sessions, client)
            while (left := deadline - time.monotonic()) > 0:
                began = time.monotonic()
                last = sync.run()
                passes += 1
                live.update(_view(sessions, passes, last, max(0.0, left)), refresh=True)
                time.sleep(max(0.0, min(PASS_INTERVAL - (time.monotonic() - began), left)))
        requests = server.request_count
    try:
        _report(console, sessions, database_url, requests)
    finally:
        engine.dispose()
    return last.failed if last else 0


def _check_empty(sessions: sessionmaker[Session], database_url: str) -> None:
    """An archive chosen with --database-url must not be a real one, nor an earlier demo's: its
    jobs and workflows would be polled against a simulator that never heard of them."""
    with sessions() as session:
        tracked = session.scalar(select(func.count()).select_from(TrackedJob)) or 0
        workflows = session.scalar(select(func.count()).select_from(Workflow)) or 0
        rules = session.scalar(select(func.count()).select_from(WatchRule)) or 0
    if tracked or workflows or rules:
        held = counted(tracked, "job") if tracked else counted(workflows or rules, "workflow")
        raise ConfigError(
            f"{mask_url(database_url)} already tracks {held}: the demo needs an archive of its "
            f"own (leave out --database-url for a fresh ./{DEMO_FILE})"
        )


def _report(
    console: Console, sessions: sessionmaker[Session], database_url: str, requests: int
) -> None:
    console.print()  # the live view leaves the cursor at the end of its last line
    with sessions() as session:
        costs = reports.cost_by(session, "workflow")
        names = reports.workflow_names(session)
        show(
            Grid(
                f"cost by workflow ({counted(requests, 'API request')} served)",
                ("workflow", "name", "jobs", "cost"),
                [(c.group, names.get(c.group or "") or "", c.jobs, c.cost) for c in costs],
            ),
            console,
        )
        busiest = session.execute(
            select(JobChange.workflow_id, JobChange.job_id)
            .where(JobChange.entity == "job", JobChange.field == "cost")
            .group_by(JobChange.workflow_id, JobChange.job_id)
            .order_by(func.count().desc(), JobChange.job_id)
            .limit(1)
        ).first()
        if busiest is not None:
            wf, job_id = busiest
            rows = [
                r
                for r in job_history(session, wf, job_id)
                if r.entity == "job" and r.field in SHOWN_FIELDS
            ]
            show(history_grid(rows, f"history of {wf}/{job_id} (job level)"), console)
            console.print(
                f"All of it, tasks included: archiver history {wf} {job_id}", soft_wrap=True
            )
        integrity = verify(session)
        console.print(
            f"Tamper evidence: {integrity.line()} (archiver verify; see docs/audit.md)",
            soft_wrap=True,
        )
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        console.print(f'Explore with SQL: sqlite3 {path} "{EXPLORE_SQL}"', soft_wrap=True)
    else:
        console.print(f"Explore with SQL: {EXPLORE_SQL}", soft_wrap=True)
