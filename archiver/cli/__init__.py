"""The ``archiver`` command: parse options, build settings, call one function, print the result.

Logic lives below this package. Here the project's own errors become one line on stderr and a
non-zero exit status; a traceback only ever reaches the screen for a genuine bug. Each module
registers the commands of one area on the shared group.
"""

from __future__ import annotations

from archiver.cli import (  # noqa: F401
    archive_cmds,
    audit_cmds,
    db_cmds,
    report_cmds,
    run_cmds,
    sync_cmds,
    tracking_cmds,
)
from archiver.cli.common import cli


def main() -> None:
    cli.main(prog_name="archiver")


__all__ = ["cli", "main"]
