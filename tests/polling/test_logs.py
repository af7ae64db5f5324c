"""The JSON log formatter: one JSON object per line, whatever the message holds, with its fields,
``extra=`` values and the last line of an exception."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from archiver.polling.logs import JsonFormatter


def record(
    msg: str, *args: Any, exc: BaseException | None = None, **extra: Any
) -> logging.LogRecord:
    """A record as ``log.warning(msg, *args, exc_info=..., extra=...)`` would build it."""
    exc_info = None
    if exc is not None:
        try:
            raise exc
        except BaseException:
            exc_info = sys.exc_info()
    made = logging.getLogger("archiver.run").makeRecord(
        "archiver.run", logging.WARNING, __file__, 1, msg, args, exc_info, extra=extra or None
    )
    made.created = datetime(2026, 10, 1, 10, 0, 0, 123456, tzinfo=UTC).timestamp()
    return made


def formatted(rec: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(rec)
    assert "\n" not in line and "\r" not in line, line
    doc = json.loads(line)
    assert isinstance(doc, dict)
    return doc


def test_the_fields_of_a_line() -> None:
    doc = formatted(record("pass %d done in %.1fs", 3, 1.25))
    assert doc == {
        "ts": "2026-10-01T10:00:00.123+00:00",
        "level": "warning",
        "logger": "archiver.run",
        "msg": "pass 3 done in 1.2s",
    }


def test_extra_values_are_fields_and_odd_types_become_text() -> None:
    doc = formatted(
        record("done", event="pass_done", jobs=12, cost=Decimal("1.50"), at=datetime(2026, 1, 1))
    )
    assert doc["event"] == "pass_done" and doc["jobs"] == 12
    assert doc["cost"] == "1.50" and doc["at"] == "2026-01-01 00:00:00"


@pytest.mark.parametrize(
    "message",
    [
        "line one\nline two\r\nline three",
        "tab\tand NUL\x00 and escape \x1b[31m",
        "non-ASCII: ümlaut, 日本語, emoji 🙂, a lone surrogate \ud800",
        'quotes " and \' and a backslash \\ and {"json": true}',
        "\u2028line separator\u2029paragraph separator",
    ],
    ids=["newlines", "controls", "non-ascii", "quotes", "unicode-separators"],
)
def test_any_message_stays_one_line_and_round_trips(message: str) -> None:
    line = JsonFormatter().format(record("%s", message))
    assert len(line.splitlines()) == 1, line  # splitlines also splits at \u2028 and friends
    assert json.loads(line)["msg"] == message


def test_an_exception_adds_its_last_line_only() -> None:
    doc = formatted(record("failed", exc=ValueError("not a job")))
    assert doc["msg"] == "failed"
    assert doc["error"] == "ValueError: not a job"
    assert "Traceback" not in json.dumps(doc)


def test_an_exception_with_a_multi_line_message_stays_one_line() -> None:
    """Only the traceback's last line is kept, so a message over several lines keeps its last."""
    doc = formatted(record("failed", exc=ValueError("the payload was\nnot a job")))
    assert doc["error"] == "not a job"


def test_several_records_are_several_lines() -> None:
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(record(f"m{i}\nx")) for i in range(5))
    assert [json.loads(line)["msg"] for line in text.splitlines()] == [f"m{i}\nx" for i in range(5)]
