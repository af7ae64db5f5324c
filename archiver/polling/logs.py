"""Logging for long-running commands: readable on a terminal, JSON lines for log shippers."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from archiver.ids import escape

# attributes every LogRecord has; anything else was passed with ``extra=`` and is emitted too
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(doc, default=str)


class TextFormatter(logging.Formatter):
    """Log lines with control characters escaped: an id or a server's text inside a message
    cannot start a line of its own (a traceback, appended after, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


def escape_unconfigured() -> None:
    """Escape the lines Python's last-resort handler writes (warnings of commands that set no
    logging up, such as a failed job in ``archiver sync``) as ``setup`` escapes its own."""
    if logging.lastResort is not None and not isinstance(
        logging.lastResort.formatter, TextFormatter
    ):
        logging.lastResort.setFormatter(TextFormatter("%(message)s"))


def setup(fmt: str = "text", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            TextFormatter("%(asctime)s %(levelname)-7s %(message)s", "%Y-%m-%dT%H:%M:%S%z")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # the scheduler's own chatter (job added, executed) is noise next to our pass lines
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
