"""``archiver track``, ``untrack`` and ``tracked``: the set of jobs the archiver polls."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from archiver.cli.common import (
    Abort,
    build_settings,
    cli,
    echo_line,
    format_option,
    open_archive,
    settings_options,
)
from archiver.wording import counted

TRACKED_COLUMNS = (
    "workflow_id",
    "job_id",
    "state",
    "last_status",
    "last_polled_at",
    "next_poll_at",
    "consecutive_failures",
    "last_error",
)


@cli.command()
@click.argument("workflow_id", required=False)
@click.argument("job_id", required=False)
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="CSV of workflow_id,job_id (that header optional, any other refused; - for stdin).",
)
@settings_options("track")
def track(
    workflow_id: str | None, job_id: str | None, path: str | None, database_url: str | None
) -> None:
    """Start tracking one job, or every job in a file; tracking a paused job resumes it."""
    from archiver.polling import tracking

    if path is None and (workflow_id is None or job_id is None):
        raise click.UsageError("give WORKFLOW_ID JOB_ID, or --file F")
    if path is not None and workflow_id is not None:
        raise click.UsageError("give either WORKFLOW_ID JOB_ID or --file F, not both")
    errors: list[str] = []
    if path is not None:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise Abort(f"cannot read {path}: {exc}") from None
        parsed = tracking.read_track_file(text)
        if parsed.refused:
            raise Abort(f"{path}: {parsed.refused}")
        pairs, errors = parsed.pairs, parsed.errors
    else:
        assert workflow_id is not None and job_id is not None
        problem = tracking.validate_ids(workflow_id, job_id)
        if problem:
            raise Abort(problem)
        pairs = [(workflow_id, job_id)]
    for error in errors:
        echo_line(f"{path}: {error}", err=True)
    settings = build_settings(database_url=database_url)
    with open_archive(settings) as sessions, sessions.begin() as session:
        started = tracking.track(session, pairs, datetime.now(UTC))
    click.echo(
        f"tracking {counted(len(pairs), 'job')} ({started} new or resumed, "
        f"{len(pairs) - started} already tracked); {counted(len(errors), 'bad line')}"
    )
    if errors:
        raise SystemExit(1)


@cli.command()
@click.argument("workflow_id")
@click.argument("job_id")
@settings_options("untrack")
def untrack(workflow_id: str, job_id: str, database_url: str | None) -> None:
    """Stop polling a job; its archive is kept."""
    from archiver.polling import tracking

    settings = build_settings(database_url=database_url)
    with open_archive(settings) as sessions, sessions.begin() as session:
        found = tracking.untrack(session, workflow_id, job_id)
    if not found:
        raise Abort(f"job {workflow_id}/{job_id} is not tracked")
    echo_line(f"stopped tracking {workflow_id}/{job_id}; its archive is kept")


@cli.command()
@click.option(
    "--state",
    type=click.Choice(["active", "settling", "settled", "paused", "untracked"]),
    help="Only jobs in this state.",
)
@format_option("table", "csv", "json")
@settings_options("tracked")
def tracked(state: str | None, fmt: str, database_url: str | None) -> None:
    """List tracked jobs with their polling state."""
    from archiver.polling import tracking
    from archiver.reporting.render import Grid, show

    settings = build_settings(database_url=database_url)
    with open_archive(settings, read_only=True) as sessions, sessions() as session:
        rows = tracking.list_tracked(session, state)
    records = [{c: _plain(row[c]) for c in TRACKED_COLUMNS} for row in rows]
    if fmt == "json":
        click.echo(json.dumps(records, indent=2))
    elif fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, TRACKED_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        click.echo(out.getvalue(), nl=False)
    else:
        table_rows = [[row[c] for c in TRACKED_COLUMNS] for row in rows]
        show(Grid(counted(len(records), "tracked job"), TRACKED_COLUMNS, table_rows))


def _plain(value: Any) -> Any:
    from archiver.archive.changelog import as_text

    return as_text(value) if isinstance(value, datetime) else value
