"""Output: rich tables on a terminal, plain lines in a pipe, CSV/JSON for spreadsheets and jq."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table

from archiver.archive.changelog import as_text
from archiver.reporting.queries import ChangeRow

SHOWN_VALUE_MAX = 200  # a terminal cell longer than this is cut, and says by how much
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Grid:
    """Rows to show: a rich table on a terminal, plain aligned text anywhere else.

    Piped or redirected output is read by ``grep``, ``cut`` and ``awk``, so there every record is
    one line and every value is whole (a table folded to 80 columns made one change six lines and
    cut ids with an ellipsis). On a terminal, long values fold; none is cut without saying so.
    """

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]
    caption: str | None = None
    terminal_columns: Sequence[str] | None = None  # fewer columns to fit a screen, if given


def show(grid: Grid, console: Console | None = None) -> None:
    """Print ``grid`` the way the output is read: a terminal, or a pipe or file."""
    console = console or Console(soft_wrap=False)
    if console.is_terminal:
        console.print(_rich_table(grid))
    else:
        console.file.write(plain_text(grid))
        console.file.flush()


def plain_text(grid: Grid) -> str:
    """Title, header and one line per record, columns aligned by spaces; control characters
    (a newline in a job id, say) are escaped so that no value can add or forge a line."""
    cells = [[_plain(v) for v in row] for row in grid.rows]
    header = [_escape(c) for c in grid.columns]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    numeric = [bool(cells) and all(_is_number(r[i]) for r in cells) for i in range(len(header))]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    out = [_escape(grid.title), line(header), *(line(r) for r in cells)]
    if grid.caption:
        out.append(_escape(grid.caption))
    return "\n".join(out) + "\n"


def _rich_table(grid: Grid) -> Table:
    columns = list(grid.terminal_columns or grid.columns)
    index = [list(grid.columns).index(c) for c in columns]
    table = Table(
        title=grid.title, title_justify="left", caption=grid.caption, caption_justify="left"
    )
    for position, name in zip(index, columns, strict=True):
        values = [row[position] for row in grid.rows]
        numeric = any(isinstance(v, int | Decimal) and not isinstance(v, bool) for v in values)
        timed = any(isinstance(v, datetime) for v in values)
        # a time breaks at its newline, between the date and the clock; the rest folds whole
        table.add_column(
            name, justify="right" if numeric else "left", overflow="fold", no_wrap=timed
        )
    for row in grid.rows:
        table.add_row(*(_terminal(row[i]) for i in index))
    return table


def _plain(value: Any) -> str:
    """As JSON and CSV spell it (a time as ``2026-10-01T10:00:00.000000Z``, the form SQLite
    stores, so a copied time compares exactly in SQL), control characters escaped."""
    if value is None:
        return "∅"
    return _escape(as_text(value) or "")


def _terminal(value: Any) -> str:
    if value is None:
        return "∅"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d\n%H:%M:%S")  # two short lines
    text = _escape(as_text(value) or "")
    if len(text) > SHOWN_VALUE_MAX:
        cut = len(text) - SHOWN_VALUE_MAX
        text = f"{text[:SHOWN_VALUE_MAX]}… [{cut:,} more characters: --format json shows all]"
    return text


def _escape(text: str) -> str:
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _is_number(text: str) -> bool:
    return text == "∅" or text.lstrip("-").replace(".", "", 1).isdigit()


def history_grid(rows: Sequence[ChangeRow], title: str) -> Grid:
    """A job's changes, oldest first; a validation error is named by its fingerprint's head."""
    return Grid(
        title,
        ("observed (UTC)", "entity", "key", "field", "old", "new"),
        [
            (
                row.observed_at,
                row.entity,
                (row.entity_key or "")[:12] if row.entity == "val_error" else row.entity_key or "",
                row.field,
                row.old_value,
                row.new_value,
            )
            for row in rows
        ],
    )


def history_json(rows: Sequence[ChangeRow]) -> str:
    return json.dumps(
        [{**asdict(r), "observed_at": as_text(r.observed_at)} for r in rows], indent=2
    )


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


def sections_json(sections: Mapping[str, Sequence[dict[str, Any]]]) -> str:
    """A JSON object of named arrays of records, each spelled as ``records_json`` spells it."""
    return json.dumps(
        {
            name: [{k: _json_value(v) for k, v in row.items()} for row in rows]
            for name, rows in sections.items()
        },
        indent=2,
    )


def records_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """CSV with a header row; NULL is an empty cell, times ISO-8601 ``Z``, decimals plain."""
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else as_text(v) for k, v in row.items()})
    return out.getvalue()


def records_grid(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    title: str,
    caption: str | None = None,
    *,
    terminal_columns: Sequence[str] | None = None,
) -> Grid:
    return Grid(
        title,
        columns,
        [[row.get(name) for name in columns] for row in rows],
        caption,
        terminal_columns,
    )
