"""Terminal rendering with rich, and CSV/JSON that load cleanly into a spreadsheet or jq."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from archiver.history import as_text
from archiver.queries import ChangeRow

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
