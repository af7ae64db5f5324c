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
@click.option(
    "--workflow",
    "workflows",
    multiple=True,
    metavar="WORKFLOW_ID",
    help="Watch a workflow: each pass lists its jobs and tracks every one (repeatable).",
)
@click.option(
    "--all-workflows",
    is_flag=True,
    help="Watch every workflow the key can list, including ones created later.",
)
@click.option("--project-id", help="With --all-workflows: only this project's workflows.")
@settings_options("track")
def track(
    workflow_id: str | None,
    job_id: str | None,
    path: str | None,
    workflows: tuple[str, ...],
    all_workflows: bool,
    project_id: str | None,
    database_url: str | None,
) -> None:
    """Start tracking one job, or every job in a file; tracking a paused job resumes it.

    With --workflow or --all-workflows, watch workflows instead: each pass lists their jobs,
    tracks the new ones and fetches the changed ones.
    """
    from archiver.polling import tracking

    given = [workflow_id is not None, path is not None, bool(workflows), all_workflows]
    if sum(given) > 1:
        raise click.UsageError(
            "give one of WORKFLOW_ID JOB_ID, --file F, --workflow W or --all-workflows"
        )
    if project_id is not None and not all_workflows:
        raise click.UsageError("--project-id goes with --all-workflows")
    if workflows or all_workflows:
        _watch(workflows, all_workflows, project_id, database_url)
        return
    if path is None and (workflow_id is None or job_id is None):
        raise click.UsageError("give WORKFLOW_ID JOB_ID, --file F, --workflow W or --all-workflows")
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
@click.argument("workflow_id", required=False)
@click.argument("job_id", required=False)
@click.option(
    "--workflow",
    "workflows",
    multiple=True,
    metavar="WORKFLOW_ID",
    help="Stop watching a workflow (repeatable); its tracked jobs are polled until they settle.",
)
@click.option("--with-jobs", is_flag=True, help="With --workflow: untrack its jobs too.")
@click.option("--all-workflows", is_flag=True, help="Remove the watch-all rule.")
@click.option("--project-id", help="With --all-workflows: the rule for this project.")
@settings_options("untrack")
def untrack(
    workflow_id: str | None,
    job_id: str | None,
    workflows: tuple[str, ...],
    with_jobs: bool,
    all_workflows: bool,
    project_id: str | None,
    database_url: str | None,
) -> None:
    """Stop polling a job (its archive is kept), or stop watching workflows."""
    from archiver.polling import tracking

    given = [workflow_id is not None, bool(workflows), all_workflows]
    if sum(given) > 1:
        raise click.UsageError("give one of WORKFLOW_ID JOB_ID, --workflow W or --all-workflows")
    if with_jobs and not workflows:
        raise click.UsageError("--with-jobs goes with --workflow")
    if project_id is not None and not all_workflows:
        raise click.UsageError("--project-id goes with --all-workflows")
    if workflows or all_workflows:
        _unwatch(workflows, with_jobs, all_workflows, project_id, database_url)
        return
    if workflow_id is None or job_id is None:
        raise click.UsageError("give WORKFLOW_ID JOB_ID, --workflow W or --all-workflows")
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
@click.option(
    "--workflows",
    "show_workflows",
    is_flag=True,
    help="List watched workflows (and watch-all rules) instead of jobs.",
)
@format_option("table", "csv", "json")
@settings_options("tracked")
def tracked(state: str | None, show_workflows: bool, fmt: str, database_url: str | None) -> None:
    """List tracked jobs with their polling state, or watched workflows."""
    from archiver.polling import tracking
    from archiver.reporting.render import Grid, show

    if show_workflows:
        if state is not None:
            raise click.UsageError("--state lists jobs; it does not go with --workflows")
        _show_workflows(fmt, database_url)
        return
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


# --- watched workflows -------------------------------------------------------------------------

WORKFLOW_COLUMNS = (
    "workflow_id",
    "name",
    "state",
    "watch_source",
    "jobs_known",
    "jobs_listed",
    "last_listed_at",
    "last_error",
)
RULE_COLUMNS = ("project_id", "workflows_listed", "last_listed_at", "last_error")


def _checked_workflow_ids(workflows: tuple[str, ...]) -> list[str]:
    from archiver.polling.watching import validate_workflow_id

    for workflow_id in workflows:
        problem = validate_workflow_id(workflow_id)
        if problem:
            raise Abort(problem)
    return list(dict.fromkeys(workflows))


def _watch(
    workflows: tuple[str, ...], all_workflows: bool, project_id: str | None, url: str | None
) -> None:
    from archiver.polling import watching
    from archiver.polling.watching import validate_workflow_id

    ids = _checked_workflow_ids(workflows)
    problem = None if project_id is None else validate_workflow_id(project_id, "project_id")
    if problem:
        raise Abort(problem)
    settings = build_settings(database_url=url)
    now = datetime.now(UTC)
    with open_archive(settings) as sessions, sessions.begin() as session:
        if all_workflows:
            added = watching.watch_all(session, project_id, now)
        else:
            result = watching.watch_workflows(session, ids, now)
    if all_workflows:
        scope = f"every workflow of project {project_id}" if project_id else "every workflow"
        already = "" if added else " (already watched)"
        echo_line(
            f"watching {scope} the key can list{already}: each pass lists them, watches the "
            "new ones and lists their jobs; the next `archiver sync` finds them"
        )
        return
    for workflow_id in ids:
        if workflow_id in result.already:
            note = "already watched"
        elif workflow_id in result.resumed:
            note = "resumed"
        else:
            note = "watching"
        echo_line(
            f"{note} {workflow_id}: each pass lists its jobs; the next `archiver sync` finds them"
        )


def _unwatch(
    workflows: tuple[str, ...],
    with_jobs: bool,
    all_workflows: bool,
    project_id: str | None,
    url: str | None,
) -> None:
    from archiver.polling import watching

    ids = _checked_workflow_ids(workflows)
    settings = build_settings(database_url=url)
    now = datetime.now(UTC)
    missing: list[str] = []
    with open_archive(settings) as sessions, sessions.begin() as session:
        if all_workflows:
            found, stopped = watching.unwatch_rule(session, project_id, now)
        else:
            results = {
                w: watching.unwatch_workflow(session, w, now, with_jobs=with_jobs) for w in ids
            }
    if all_workflows:
        scope = f"for project {project_id}" if project_id else "for every workflow"
        if not found:
            raise Abort(f"no watch-all rule {scope} is active")
        echo_line(
            f"removed the watch-all rule {scope}: {counted(stopped, 'workflow')} found by it "
            "no longer listed (workflows watched by id stay watched); tracked jobs are polled "
            "until they settle"
        )
        return
    for workflow_id, result in results.items():
        if not result.found:
            missing.append(workflow_id)
        elif with_jobs:
            echo_line(
                f"stopped watching {workflow_id} and untracked its "
                f"{counted(result.jobs_untracked, 'job')}; their archive is kept"
            )
        else:
            echo_line(
                f"stopped watching {workflow_id}: its jobs are no longer listed; its "
                f"{counted(result.jobs_still_polled, 'tracked job')} still polled until settled "
                "(--with-jobs untracks them); a watch-all rule will not watch it again"
            )
    if missing:
        raise Abort(f"not watched: {', '.join(missing)}")


def _show_workflows(fmt: str, url: str | None) -> None:
    from dataclasses import asdict

    from archiver.polling import watching
    from archiver.reporting.render import Grid, show

    settings = build_settings(database_url=url)
    with open_archive(settings, read_only=True) as sessions, sessions() as session:
        rows = watching.list_watched(session)
        rules = watching.list_rules(session)
    records = [{c: _plain(asdict(row)[c]) for c in WORKFLOW_COLUMNS} for row in rows]
    if fmt == "json":
        click.echo(json.dumps(records, indent=2))
        return
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, WORKFLOW_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        click.echo(out.getvalue(), nl=False)
        return
    if rules:
        rule_rows = [
            [r.project_id or "(all projects)", r.workflows_listed, r.last_listed_at, r.last_error]
            for r in rules
        ]
        show(Grid(counted(len(rules), "watch-all rule"), RULE_COLUMNS, rule_rows))
    table_rows = [[getattr(row, c) for c in WORKFLOW_COLUMNS] for row in rows]
    show(Grid(counted(len(rows), "workflow"), WORKFLOW_COLUMNS, table_rows))
