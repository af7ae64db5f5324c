"""``archiver demo``: show the whole product on the embedded default without any setup."""

from __future__ import annotations

from importlib import resources

from rich.console import Console
from sqlalchemy import select

from archiver import db
from archiver.ingest import ingest, read_items
from archiver.models import Job
from archiver.queries import cost_by_workflow, job_history
from archiver.render import history_table, print_table

SAMPLES = "sample-jobs.jsonl"
EXPLORE_SQL = (
    "select job_id, field, old_value, new_value, observed_at from job_changes where field = 'cost'"
)


def sample_payloads() -> bytes:
    return (resources.files("archiver") / "samples" / SAMPLES).read_bytes()


def run_sample_demo(database_url: str, console: Console) -> int:
    """Archive the bundled sample payloads (two jobs evolving over time) and show the result."""
    db.upgrade(database_url)
    engine = db.make_engine(database_url)
    try:
        sessions = db.session_factory(engine)
        summary = ingest(sessions, read_items(SAMPLES, sample_payloads(), None))
        console.print(f"[bold]ingested the bundled samples:[/bold] {summary.line()}")
        with sessions() as session:
            jobs = session.execute(
                select(Job.workflow_id, Job.job_id, Job.status, Job.cost, Job.version).order_by(
                    Job.workflow_id, Job.job_id
                )
            ).all()
            print_table(console, ("workflow", "job", "status", "cost", "versions"), jobs, "jobs")
            costs = cost_by_workflow(session)
            print_table(
                console,
                ("workflow", "jobs", "cost"),
                [(c.workflow_id, c.jobs, c.cost) for c in costs],
                "cost by workflow",
            )
            wf, job_id = max(jobs, key=lambda j: j.version)[:2]
            changes = [c for c in job_history(session, wf, job_id) if c.old_value is not None]
            console.print(history_table(changes, f"changes of {wf}/{job_id} after its first sight"))
    finally:
        engine.dispose()
    path = database_url.removeprefix("sqlite:///")
    console.print(f'\nExplore with SQL: sqlite3 {path} "{EXPLORE_SQL}"')
    return summary.failed
