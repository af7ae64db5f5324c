"""``archiver verify``, ``archiver rebuild`` and ``archiver close-period`` (docs/audit.md)."""

from __future__ import annotations

import getpass
import json

import click

from archiver.cli.common import (
    Abort,
    build_settings,
    cli,
    echo_line,
    open_archive,
    reported_errors,
    settings_options,
)
from archiver.config import mask_url
from archiver.errors import ArchiverError
from archiver.wording import counted


def _actor(value: str | None) -> str:
    if value:
        return value[:255]
    try:
        return getpass.getuser()[:255]
    except (KeyError, OSError):
        return "unknown"


@cli.command()
@click.option("--workflow", "workflow_id", help="Only this workflow's jobs.")
@click.option("--job", "job_id", help="Only this job (with --workflow, or in any workflow).")
@click.option(
    "--anchor",
    is_flag=True,
    help="After a clean verification, record every chain head and print their digest: keep it "
    "elsewhere (a ticket, a signed email) to check with --against later.",
)
@click.option(
    "--against",
    "against",
    metavar="DIGEST",
    help="Also check that the anchor with this digest still hashes to it and that every head "
    "it recorded is still in the archive (detects a wholesale rewrite since).",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@settings_options("verify")
def verify(
    workflow_id: str | None,
    job_id: str | None,
    anchor: bool,
    against: str | None,
    fmt: str,
    database_url: str | None,
) -> None:
    """Recompute the history's hash chains and snapshot hashes; name every break.

    Exit status 1 when anything was edited, deleted, inserted or reordered.
    """
    from archiver.audit import verify as verifymod

    settings = build_settings(database_url=database_url)
    if anchor and (workflow_id or job_id):
        raise Abort(
            "--anchor records every job's head: it cannot be combined with --workflow/--job"
        )
    # --anchor records the heads it verified: the only verification that writes
    read_only = not anchor
    with (
        open_archive(settings, read_only=read_only) as sessions,
        reported_errors(settings),
        sessions() as session,
    ):
        report = verifymod.verify(session, workflow_id=workflow_id, job_id=job_id)
        anchored = None
        if against:
            checked, breaks = verifymod.check_anchor(session, against)
            report.breaks.extend(breaks)
            anchored = checked
        digest = None
        if anchor and report.ok:
            digest = verifymod.take_anchor(session, report)
            session.commit()
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "jobs": report.jobs,
                    "history_rows": report.rows,
                    "snapshots": report.snapshots,
                    "period_statements": report.statements,
                    "seconds": round(report.seconds, 3),
                    "anchor": digest,
                    "anchor_jobs_checked": anchored,
                    "breaks": [
                        {
                            "table": b.table,
                            "row_id": b.row_id,
                            "workflow_id": b.workflow_id,
                            "job_id": b.job_id,
                            "chain_seq": b.chain_seq,
                            "kind": b.kind,
                            "detail": b.detail,
                        }
                        for b in report.breaks
                    ],
                },
                indent=2,
            )
        )
    else:
        for item in report.breaks:
            click.echo(item.line())
        click.echo(report.line())
        if anchored is not None:
            click.echo(f"anchor {against}: {counted(anchored, 'job head')} checked")
        if digest:
            click.echo(
                f"anchor: {digest} ({counted(len(report.heads), 'job head')}); keep it elsewhere"
            )
    if anchor and not report.ok:
        click.echo("archiver: no anchor taken: the archive does not verify", err=True)
    if not report.ok:
        raise SystemExit(1)


@cli.command("close-period")
@click.argument("period", metavar="YYYY-MM")
@click.option("--reopen", is_flag=True, help="Take the closed statement out of force instead.")
@click.option("--reason", help="Why the period is reopened (required with --reopen; logged).")
@click.option("--by", "actor", help="Who closes or reopens, for the log [default: the OS user].")
@settings_options("close-period")
def close_period(
    period: str, reopen: bool, reason: str | None, actor: str | None, database_url: str | None
) -> None:
    """Freeze a month's cost statement; later movements become adjustments."""
    from archiver.audit import periods

    settings = build_settings(database_url=database_url)
    who = _actor(actor)
    with open_archive(settings) as sessions, reported_errors(settings), sessions() as session:
        if reopen:
            statement = periods.reopen_period(session, period, who, reason or "")
            session.commit()
            click.echo(
                f"reopened {period} (statement {statement.sha256[:16]}… closed "
                f"{statement.closed_at:%Y-%m-%d %H:%M} UTC by {statement.closed_by}); logged"
            )
            return
        if reason:
            raise Abort("--reason goes with --reopen")
        try:
            statement = periods.close_period(session, period, who)
        except ArchiverError:
            session.rollback()
            raise
        session.commit()
    click.echo(
        f"closed {period}: {counted(statement.jobs, 'job')}, cost {statement.cost}; "
        f"{counted(len(statement.lines), 'line')} by workflow, user and block; "
        f"statement sha256 {statement.sha256}"
    )


@cli.command()
@click.option(
    "--into",
    "into",
    metavar="URL",
    help="An empty database to rebuild into (created and migrated if need be).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Rebuild into a scratch database and report what would differ; change nothing.",
)
@settings_options("rebuild")
def rebuild(
    into: str | None,
    dry_run: bool,
    status_map: dict[str, str] | None,
    database_url: str | None,
) -> None:
    """Replay the raw snapshots into an empty database and compare it with this one.

    Exit status 1 when the rebuilt archive differs (or payloads were rejected on replay).
    """
    from archiver import db as dbmod
    from archiver.audit import rebuild as rebuildmod
    from archiver.statuses import StatusClassifier

    if (into is None) == (not dry_run):
        raise Abort("give either --into URL or --dry-run")
    settings = build_settings(database_url=database_url, status_map=status_map)
    classifier = StatusClassifier.with_overrides(settings.status_map)
    if into is not None and dbmod.normalize_url(into) == dbmod.normalize_url(settings.database_url):
        raise Abort("--into must name another database than the one being rebuilt")
    # the source is only read, whether the rebuild goes to --into or to a scratch file
    with open_archive(settings, read_only=True) as sessions, reported_errors(settings):
        if dry_run:
            report = rebuildmod.dry_run(sessions, classifier=classifier)
        else:
            assert into is not None
            report = rebuildmod.rebuild(sessions, into, classifier=classifier)
    for line in report.rejected[:20]:
        echo_line(f"rejected on replay: {line}")
    target = "a scratch database" if dry_run else mask_url(into or "")
    click.echo(
        f"replayed {counted(report.snapshots, 'snapshot')} into {target}: "
        f"{counted(report.jobs, 'job')} "
        f"in {report.seconds:.1f} s; {len(report.rejected)} rejected"
    )
    if report.identical:
        click.echo("the rebuilt archive equals this one (ids and last_seen_at aside)")
    else:
        verb = "would differ" if dry_run else "differs"
        changed = sorted(report.changed_jobs())
        click.echo(f"the rebuilt archive {verb} for {counted(len(changed), 'job')}:")
        for diff in report.diffs:
            click.echo(
                f"  {diff.table}: {counted(diff.only_before, 'row')} only here, "
                f"{diff.only_after} only in the rebuild"
            )
        for wf, jid in changed[:20]:
            echo_line(f"  job {wf}/{jid}")
        if len(changed) > 20:
            click.echo(f"  … and {len(changed) - 20} more")
    if not report.identical or report.rejected:
        raise SystemExit(1)
