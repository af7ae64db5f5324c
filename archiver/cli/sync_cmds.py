"""``archiver sync``, ``simulate`` and ``demo``: talking to the API (real or simulated)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

from archiver.cli.common import (
    Abort,
    build_settings,
    cli,
    echo_line,
    group_database_url,
    open_archive,
    reported_errors,
    settings_options,
)
from archiver.config import Settings

if TYPE_CHECKING:
    from rich.console import Console

    from archiver.polling.sync import JobOutcome, SyncSummary
from archiver.wording import counted


def api_settings(**flags: Any) -> Settings:
    settings = build_settings(**flags)
    if not settings.api_key:
        raise Abort(
            "no API key: set PIXXEL_API_KEY (or pass --api-key); `archiver demo` needs none"
        )
    return settings


def run_pass(
    settings: Settings,
    *,
    everything: bool = False,
    console: Console | None = None,
    on_job: Callable[[JobOutcome], None] | None = None,
) -> SyncSummary:
    """One sync pass with the settings' client, policy and classifier."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from archiver.api.client import ApiClient
    from archiver.polling.sync import SyncPass

    with (
        open_archive(settings) as sessions,
        ApiClient(settings) as client,
        reported_errors(settings),
    ):
        sync = SyncPass.from_settings(settings, sessions, client)
        if console is None:
            return sync.run(everything=everything, on_job=on_job)
        with Progress(
            TextColumn("sync"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("sync", total=None)

            def advance(outcome: JobOutcome) -> None:
                progress.advance(task)
                if on_job:
                    on_job(outcome)

            return sync.run(
                everything=everything,
                on_job=advance,
                on_start=lambda total: progress.update(task, total=total),
            )


@cli.command()
@click.option("--all", "everything", is_flag=True, help="Every tracked job, due or not.")
@settings_options("sync")
def sync(everything: bool, database_url: str | None, **flags: Any) -> None:
    """One pass: fetch every due tracked job once, archive it, print a summary."""
    from rich.console import Console

    from archiver.polling import malloc
    from archiver.polling.failures import unusable_message

    settings = api_settings(database_url=database_url, **flags)
    malloc.return_large_blocks()  # fetch threads and the writer each free large payloads
    console = Console(stderr=True)
    shown = FailedJobs()
    with shown.printing():
        summary = run_pass(
            settings,
            everything=everything,
            console=console if console.is_terminal else None,
            on_job=shown,
        )
    if shown.more:
        click.echo(f"… and {shown.more} more (see sync_errors)", err=True)
    listing = summary.listing
    if listing is not None:  # a listing's failures, like a job's, said as they are
        for message in listing.errors[: shown.limit]:
            echo_line(f"failed    {message}", err=True)
    click.echo(summary.line())
    if summary.failed:
        click.echo(summary.failures_line())
    if summary.auth_error:
        raise Abort(
            f"the API rejected the key ({summary.auth_error}); the pass was stopped. "
            "Set PIXXEL_API_KEY (or --api-key, and --auth-scheme if the key needs one)."
        )
    if summary.api_unusable:
        raise Abort(
            unusable_message(summary.api_unusable, summary.api_unusable_count, settings.api_url)
        )
    if summary.failed or (listing is not None and listing.list_failed):
        raise SystemExit(1)


class FailedJobs:
    """Prints each job that failed once, as it fails: the first ``limit``, then a count.

    Failures of the key or the URL (not counted against the job) are not listed: the pass's one
    message says what they have in common. The pass's own log line per failed job is silenced
    meanwhile, so that no failure prints twice.
    """

    def __init__(self, limit: int = 20) -> None:
        self.limit = limit
        self.listed = 0
        self.more = 0

    def __call__(self, outcome: JobOutcome) -> None:
        if outcome.outcome != "failed" or not outcome.counted:
            return
        if self.listed < self.limit:
            self.listed += 1
            echo_line(
                f"failed    {outcome.workflow_id}/{outcome.job_id}: {outcome.error}", err=True
            )
        else:
            self.more += 1

    @contextmanager
    def printing(self) -> Iterator[None]:
        from archiver.polling.discovery import failure_log
        from archiver.polling.sync import job_log

        quiet = logging.NullHandler()
        loggers = (job_log, failure_log)
        propagates = [logger.propagate for logger in loggers]
        for logger in loggers:
            logger.addHandler(quiet)  # a handler, so the last-resort one does not print them
            logger.propagate = False
        try:
            yield
        finally:
            for logger, propagate in zip(loggers, propagates, strict=True):
                logger.propagate = propagate
                logger.removeHandler(quiet)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", default=8080, show_default=True, help="Port (0 picks a free one).")
@click.option("--jobs", default=50, show_default=True, help="Number of simulated jobs.")
@click.option("--seed", default=0, show_default=True, help="Seed of the population.")
@click.option("--key", default="sim-key", show_default=True, help="API key the simulator accepts.")
@click.option(
    "--time-scale",
    default=60.0,
    show_default=True,
    help="How many times faster than drawn jobs run (timestamps follow the wall clock).",
)
@click.option("--error-rate", default=0.0, help="Fraction of requests answered 5xx.")
@click.option("--rate-limit-rate", default=0.0, help="Fraction answered 429 with Retry-After.")
@click.option("--malformed-rate", default=0.0, help="Fraction answered with a malformed body.")
@click.option("--drop-rate", default=0.0, help="Fraction of connections dropped unanswered.")
@click.option("--latency", default=0.0, help="Seconds added to every request.")
@click.option(
    "--new-jobs-per-minute",
    default=2.0,
    show_default=True,
    help="New jobs appearing in the workflows each minute (on average).",
)
@click.option("--ids-file", type=click.Path(dir_okay=False), help="Write the job ids as CSV here.")
def simulate(
    host: str,
    port: int,
    jobs: int,
    seed: int,
    key: str,
    time_scale: float,
    error_rate: float,
    rate_limit_rate: float,
    malformed_rate: float,
    drop_rate: float,
    latency: float,
    new_jobs_per_minute: float,
    ids_file: str | None,
) -> None:
    """Serve a local fake of the jobs endpoint until Ctrl-C (for trying without credentials)."""
    from datetime import UTC, datetime

    from archiver.sim.simulator import Faults, Simulator

    with reported_errors():
        faults = Faults(
            error_rate=error_rate,
            rate_limit_rate=rate_limit_rate,
            malformed_rate=malformed_rate,
            drop_rate=drop_rate,
            latency=latency,
        )
        simulator = Simulator(
            seed=seed,
            jobs=jobs,
            api_key=key,
            time_scale=time_scale,
            faults=faults,
            start=datetime.now(UTC),  # served timestamps are never later than the wall clock
            new_jobs_per_minute=new_jobs_per_minute,
        )
        server = simulator.serve(host, port)
    if ids_file:
        simulator.write_ids_csv(ids_file)
    click.echo(f"simulating {counted(jobs, 'job')} at {server.url} (Ctrl-C to stop)")
    click.echo(f"  export PIXXEL_API_URL={server.url} PIXXEL_API_KEY={key}")
    if ids_file:
        click.echo(f"  archiver track --file {ids_file} && archiver sync")
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        click.echo(f"served {counted(server.request_count, 'request')}", err=True)


@cli.command()
@click.option("--seconds", default=35.0, show_default=True, help="How long to run sync passes.")
@click.option("--jobs", default=50, show_default=True, help="Number of simulated jobs.")
@click.option(
    "--database-url",
    default=None,
    help="Archive into this database (it must track no jobs) instead of a fresh "
    "./archiver-demo.db; ARCHIVER_DATABASE_URL is not used.",
)
def demo(seconds: float, jobs: int, database_url: str | None) -> None:
    """The whole product on SQLite, no key or setup: a live simulation into ./archiver-demo.db.

    The file is replaced at each run; the default archive (./archiver.db) and
    ARCHIVER_DATABASE_URL's are never touched.
    """
    from rich.console import Console

    from archiver.sim.demo import fresh_demo_url, run_live_demo

    with reported_errors():
        url = database_url if database_url is not None else group_database_url()
        if url is None:
            url = fresh_demo_url()
            click.echo(
                "The demo archives into ./archiver-demo.db, a fresh file each run; the default "
                "archive (./archiver.db, ARCHIVER_DATABASE_URL) is not touched."
            )
        failed = run_live_demo(url, Console(), jobs=jobs, seconds=seconds)
    if failed:
        raise SystemExit(1)
