"""Bar charts as inline SVG text: no script, no stylesheet, no font or file to fetch.

Every label passes through ``esc`` (workflow ids and block names come from the API and may hold
markup). Bars carry ``class="bar"`` and ``data-*`` attributes with their exact value, so a test
(or a reader's browser tools) can find and count them; a zero value draws no bar.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

WIDTH = 920
# what a value counts: one word for any number ("cost"), or for one and for many ("job", "jobs")
Unit = str | tuple[str, str]

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#9c755f",
    "#ff9da7",
    "#bab0ac",
)
AXIS = "#555"
GRID = "#e3e3e3"


# characters XML 1.0 forbids (an SVG must parse as XML): C0 controls but tab/newline/return,
# lone surrogates, U+FFFE/U+FFFF
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def esc(text: object) -> str:
    """Text for an element or a double- or single-quoted attribute; a character XML cannot hold
    (a control character in a block name, say) is shown as U+FFFD instead of breaking the SVG."""
    return html.escape(_NOT_XML.sub("\ufffd", str(text)), quote=True)


def _unit(unit: Unit, value: int | float) -> str:
    if isinstance(unit, str):
        return unit
    return unit[0] if value == 1 else unit[1]


def number(value: int | float) -> str:
    """Exact integers with thousands separators (big costs must not turn into floats)."""
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.2f}"


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def _tick_label(value: float) -> str:
    if abs(value) >= 1e15:
        return f"{value:.2g}"
    return number(int(value)) if value == int(value) else f"{value:,.1f}"


@dataclass(frozen=True)
class Series:
    name: str  # its key: data-series on every bar, for tests and scripts
    values: Sequence[int]  # one per category
    color: str
    label: str | None = None  # what a reader sees (legend, tooltip), when not the name

    @property
    def shown(self) -> str:
        return self.name if self.label is None else self.label


def colors(names: Sequence[str], fixed: Mapping[str, str] | None = None) -> list[str]:
    fixed = fixed or {}
    return [fixed.get(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)]


def _legend(series: Sequence[Series], y: int) -> tuple[list[str], int]:
    """Swatches and names in rows across the width; returns the SVG parts and the height used."""
    parts, x, row = [], 60, 0
    for s in series:
        width = 28 + 7 * min(len(s.shown), 40)
        if x + width > WIDTH - 10 and x > 60:
            x, row = 60, row + 1
        top = y + row * 20
        label = s.shown if len(s.shown) <= 40 else s.shown[:39] + "…"
        parts.append(
            f'<rect x="{x}" y="{top}" width="12" height="12" fill="{s.color}"/>'
            f'<text x="{x + 17}" y="{top + 11}" font-size="12">{esc(label)}</text>'
        )
        x += width
    return parts, (row + 1) * 20


def stacked_bars(
    chart_id: str, title: str, categories: Sequence[str], series: Sequence[Series], unit: Unit
) -> str:
    """One bar per category, a segment per series: positives stack up from 0, negatives down."""
    plot_top, plot_height, left, right = 30, 240, 110, WIDTH - 20
    highs = [sum(max(s.values[i], 0) for s in series) for i in range(len(categories))]
    lows = [sum(min(s.values[i], 0) for s in series) for i in range(len(categories))]
    top, bottom = float(max(highs, default=0)), float(min(lows, default=0))
    if top == bottom:
        top = bottom + 1
    step = _nice_step(top - bottom)
    top, bottom = math.ceil(top / step) * step, math.floor(bottom / step) * step

    def y_of(value: float) -> float:
        return plot_top + (top - value) / (top - bottom) * plot_height

    parts = [f'<text x="{left}" y="18" font-size="14" font-weight="bold">{esc(title)}</text>']
    tick = bottom
    while tick <= top + step / 2:
        y = y_of(tick)
        parts.append(
            f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end"'
            f' fill="{AXIS}">{esc(_tick_label(tick))}</text>'
        )
        tick += step
    slot = (right - left) / max(len(categories), 1)
    bar = max(slot * 0.7, 1.0)
    every = max(1, math.ceil(len(categories) * 70 / (right - left)))  # labels that fit
    for i, category in enumerate(categories):
        x = left + i * slot + (slot - bar) / 2
        up, down = 0.0, 0.0
        for s in series:
            value = s.values[i]
            if value == 0:
                continue
            start = up if value > 0 else down
            end = start + value
            if value > 0:
                up = end
            else:
                down = end
            y1, y2 = sorted((y_of(start), y_of(end)))
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y1:.1f}" width="{bar:.1f}"'
                f' height="{max(y2 - y1, 1.0):.1f}" fill="{s.color}"'
                f' data-category="{esc(category)}" data-series="{esc(s.name)}"'
                f' data-value="{value}"><title>{esc(category)} · {esc(s.shown)}: '
                f"{esc(number(value))} {esc(_unit(unit, value))}</title></rect>"
            )
        if i % every == 0:
            cx, cy = x + bar / 2, plot_top + plot_height + 14
            parts.append(
                f'<text x="{cx:.1f}" y="{cy}" font-size="11" text-anchor="middle"'
                f' fill="{AXIS}">{esc(category)}</text>'
            )
    zero = y_of(0)
    parts.append(
        f'<line x1="{left}" x2="{right}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="{AXIS}"/>'
    )
    legend, legend_height = _legend(series, plot_top + plot_height + 30)
    parts += legend
    height = plot_top + plot_height + 34 + legend_height
    return _svg(chart_id, title, height, parts)


def horizontal_bars(
    chart_id: str, title: str, labels: Sequence[str], values: Sequence[int], unit: Unit
) -> str:
    """One bar per label, longest first as given, the value written at the end of each bar."""
    left, right, row = 250, WIDTH - 80, 24
    top_value = max(values, default=0) or 1
    parts = [f'<text x="10" y="18" font-size="14" font-weight="bold">{esc(title)}</text>']
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 32 + i * row
        length = max((right - left) * value / top_value, 1.0)
        shown = label if len(label) <= 32 else label[:31] + "…"
        parts.append(
            f'<text x="{left - 8}" y="{y + 14}" font-size="12" text-anchor="end">{esc(shown)}'
            f"<title>{esc(label)}</title></text>"
            f'<rect class="bar" x="{left}" y="{y}" width="{length:.1f}" height="{row - 6}"'
            f' fill="{PALETTE[3]}" data-category="{esc(label)}" data-value="{value}">'
            f"<title>{esc(label)}: {esc(number(value))} {esc(_unit(unit, value))}</title></rect>"
            f'<text x="{left + length + 6:.1f}" y="{y + 14}" font-size="12">'
            f"{esc(number(value))}</text>"
        )
    height = 40 + max(len(labels), 1) * row
    return _svg(chart_id, title, height, parts)


def _svg(chart_id: str, title: str, height: float, parts: Sequence[str]) -> str:
    return (
        f'<svg data-chart="{esc(chart_id)}" role="img" aria-label="{esc(title)}"'
        f' viewBox="0 0 {WIDTH} {height:.0f}" width="{WIDTH}" height="{height:.0f}"'
        f' font-family="system-ui, sans-serif">' + "".join(parts) + "</svg>"
    )
