"""Terminal rendering with rich, and CSV/JSON that load cleanly into a spreadsheet or jq."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from archiver.archive.changelog import as_text
from archiver.reporting.queries import ChangeRow

SHOWN_VALUE_MAX = 60


def _short(value: str | None) -> str:
    if value is None:
        return "∅"
    return value if len(value) <= SHOWN_VALUE_MAX else value[: SHOWN_VALUE_MAX - 1] + "…"


def history_table(rows: Sequence[ChangeRow], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("observed (UTC)", no_wrap=True)
    for name in ("entity", "key", "field", "old", "new"):
        table.add_column(name, overflow="fold")
    for row in rows:
        key = row.entity_key or ""
        if row.entity == "val_error":
            key = key[:12]
        table.add_row(
            row.observed_at.strftime("%Y-%m-%d %H:%M:%S"),
            row.entity,
            key,
            row.field,
            _short(row.old_value),
            _short(row.new_value),
        )
    return table


def history_json(rows: Sequence[ChangeRow]) -> str:
    return json.dumps(
        [{**asdict(r), "observed_at": as_text(r.observed_at)} for r in rows], indent=2
    )


def print_table(
    console: Console, headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str
) -> None:
    table = Table(title=title, title_justify="left")
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*(str(v) for v in row))
    console.print(table)


# --- reports: dataclass rows as a table, CSV or JSON ---------------------------------------------


def records(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Dataclass rows as dicts, in field order (the column order of every format)."""
    return [asdict(row) for row in rows]


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_text(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def records_json(rows: Sequence[dict[str, Any]]) -> str:
    """A JSON array of objects: times as ISO-8601 ``Z`` text, numbers as numbers (for jq)."""
    return json.dumps([{k: _json_value(v) for k, v in row.items()} for row in rows], indent=2)


def records_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV with a header row; NULL is an empty cell, times ISO-8601 ``Z``, decimals plain."""
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else as_text(v) for k, v in row.items()})
    return out.getvalue()


def records_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], title: str, caption: str | None = None
) -> Table:
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    for name in columns:
        values = [row.get(name) for row in rows]
        numeric = any(isinstance(v, int | Decimal) for v in values)
        timed = any(isinstance(v, datetime) for v in values)
        # a time breaks at its space, between the date and the clock
        table.add_column(
            name,
            justify="right" if numeric else "left",
            overflow="fold",
            no_wrap=timed,
        )
    for row in rows:
        table.add_row(*(_cell(row.get(name)) for name in columns))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d\n%H:%M:%S")  # two short lines fit narrow terminals
    return as_text(value) or ""
