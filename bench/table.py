"""One row per figure, medians over runs, and the table they print as.

Every figure is the median of its runs, and every ratio is the median of per-run ratios against a
floor measured in the same run: on a shared, noisy machine a slow minute hits both sides of a
ratio, while a ratio of two medians taken minutes apart would carry the noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    figure: str
    n: int
    db: str
    runs: int = 0
    median: float | None = None  # seconds, or MB for memory rows
    unit: str = "s"
    rate: float | None = None  # jobs per second (median over runs of n / seconds)
    vs_floor: float | None = None  # median over runs of this figure / the same run's floor
    target: str = ""
    measured: float | None = None  # the target's own ratio
    met: bool | None = None
    note: str = ""  # why the row has no figures (skipped)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def ratio(tops: Sequence[float], bottoms: Sequence[float]) -> float:
    """Median of per-run ratios ``tops[i] / bottoms[i]``."""
    return median([t / b for t, b in zip(tops, bottoms, strict=True)])


HEADERS = ("figure", "N", "db", "median", "jobs/s", "x floor", "target", "measured", "met")


def render(rows: Sequence[Row]) -> str:
    """A plain-text table (also valid Markdown), one line per row."""
    lines = [[_cell(row, h) for h in HEADERS] for row in rows]
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(HEADERS)]
    right = {3, 4, 5, 7}

    def fmt(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":" if i in right else "-" * (w + 2)) for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([fmt(HEADERS), rule, *(fmt(line) for line in lines)])


def _cell(row: Row, header: str) -> str:
    if header == "figure":
        return row.figure
    if header == "N":
        return f"{row.n:,}"
    if header == "db":
        return row.db
    if row.note:
        return row.note if header == "target" else ""
    if header == "median":
        if row.median is None:
            return ""
        return f"{row.median:.1f} MB" if row.unit == "MB" else f"{row.median:.2f} s"
    if header == "jobs/s":
        return "" if row.rate is None else f"{row.rate:,.0f}"
    if header == "x floor":
        return "" if row.vs_floor is None else f"{row.vs_floor:.2f}x"
    if header == "target":
        return row.target
    if header == "measured":
        return "" if row.measured is None else f"{row.measured:.2f}x"
    if header == "met":
        return "" if row.met is None else ("yes" if row.met else "NO")
    raise KeyError(header)
