"""``archiver ingest`` and ``archiver history``: payloads in, a job's history out."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from archiver.archive.ingest import Item
    from archiver.archive.results import ArchiveResult


def _parse_when(_ctx: Any, _param: Any, value: str | None) -> datetime | None:
    if value is None:
        return None
    from archiver.archive.values import parse_timestamp

    parsed = parse_timestamp(value)
    if parsed.value is None:
        raise click.BadParameter(f"{value!r} is not an ISO-8601 timestamp")
    return parsed.value


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(allow_dash=True))
@click.option(
    "--fetched-at",
    callback=_parse_when,
    help="When these payloads were fetched (ISO-8601) [default: now]; envelopes override it.",
)
@click.option("--quiet", "-q", is_flag=True, help="Only the summary line.")
@settings_options("ingest")
def ingest(
    files: tuple[str, ...],
    fetched_at: datetime | None,
    quiet: bool,
    status_map: dict[str, str] | None,
    database_url: str | None,
) -> None:
    """Archive job payloads from JSON files (or - for stdin) without calling the API.

    Each file holds one JSON object, a JSON array of objects, or JSON lines. An object
    {"fetched_at": T, "payload": {...}} carries its own fetch time.
    """
    from archiver.archive.ingest import Item, read_items
    from archiver.archive.ingest import ingest as run_ingest
    from archiver.statuses import StatusClassifier

    settings = build_settings(database_url=database_url, status_map=status_map)

    def items() -> Iterator[Item]:
        for name in files:
            try:
                if name == "-":
                    data, label = sys.stdin.buffer.read(), "<stdin>"
                else:
                    data, label = Path(name).read_bytes(), name
            except OSError as exc:
                yield Item(name, None, error=f"cannot read: {exc.strerror}")
                continue
            yield from read_items(label, data, fetched_at)

    def report(item: Item, result: ArchiveResult | None, error: str | None) -> None:
        if error is not None:
            echo_line(f"failed    {item.source}: {error}", err=True)
        elif result is not None and not quiet:
            echo_line(
                f"{result.outcome:9} {result.workflow_id}/{result.job_id} "
                f"v{result.version} {result.status or '-'} ({counted(result.changes, 'change')})"
            )

    with open_archive(settings) as sessions:
        classifier = StatusClassifier.with_overrides(settings.status_map)
        summary = run_ingest(sessions, items(), classifier=classifier, on_result=report)
    click.echo(summary.line())
    if summary.failed:
        raise SystemExit(1)


@cli.command()
@click.argument("workflow_id")
@click.argument("job_id")
@format_option("table", "json")
@settings_options("history")
def history(workflow_id: str, job_id: str, fmt: str, database_url: str | None) -> None:
    """The job's change history (job, tasks, validation errors), oldest first."""
    from archiver.reporting.queries import job_history, tracked_state
    from archiver.reporting.render import history_grid, history_json, show

    settings = build_settings(database_url=database_url)
    with open_archive(settings, read_only=True) as sessions, sessions() as session:
        rows = job_history(session, workflow_id, job_id)
        state = tracked_state(session, workflow_id, job_id) if not rows else None
    if not rows and state is not None:
        raise Abort(
            f"job {workflow_id}/{job_id} is tracked ({state}) but not fetched yet: "
            "`archiver sync` archives it"
        )
    if not rows:
        raise Abort(
            f"no history for job {workflow_id}/{job_id} in {settings.masked_database_url()}"
        )
    if fmt == "json":
        click.echo(history_json(rows))
    else:
        show(history_grid(rows, f"history of {workflow_id}/{job_id}"))
