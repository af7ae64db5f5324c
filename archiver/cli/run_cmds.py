"""``archiver run``: the daemon."""

from __future__ import annotations

from typing import Any

import click

from archiver.cli.common import Abort, cli, reported_errors, settings_options
from archiver.cli.sync_cmds import api_settings
from archiver.polling import logs  # light: the standard library's logging


@cli.command()
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve /metrics and /healthz on this port [off].",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address for --metrics-port (0.0.0.0 in a container).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines for people or JSON lines for log shippers.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
@settings_options("run")
def run(
    metrics_port: int | None,
    metrics_host: str,
    log_format: str,
    log_level: str,
    database_url: str | None,
    **flags: Any,
) -> None:
    """Sync on a schedule until SIGINT/SIGTERM, then stop cleanly (exit 0)."""
    from archiver.polling.daemon import Daemon

    logs.setup(log_format, log_level)
    settings = api_settings(database_url=database_url, **flags)
    with reported_errors(settings):
        daemon = Daemon(settings)
        status = daemon.run(metrics_host=metrics_host, metrics_port=metrics_port)
    if status:
        raise Abort("the daemon stopped with errors")
