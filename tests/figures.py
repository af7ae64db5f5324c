"""Figures of the reliability suites (inputs tried, faults injected, ...), for docs/reliability.md.

Tests call ``record_figures``; it appends one JSON line to the file named by
``ARCHIVER_RELIABILITY_FIGURES`` when that is set, and does nothing otherwise.
``python tests/figures.py FILE`` prints the totals per suite. Kept free of archiver imports so
it runs from any checkout.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def record_figures(suite: str, **figures: object) -> None:
    """Append this test's figures to ``$ARCHIVER_RELIABILITY_FIGURES``, if set."""
    target = os.environ.get("ARCHIVER_RELIABILITY_FIGURES")
    if not target:
        return
    with Path(target).open("a", encoding="utf-8") as out:
        out.write(json.dumps({"suite": suite, **figures}, sort_keys=True) + "\n")


def summarize_figures(path: str) -> dict[str, dict[str, float]]:
    """Totals per suite of a figures file: tests that recorded (``tests``) and the sums of their
    numbers (text such as a backend's name is left out)."""
    totals: dict[str, dict[str, float]] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        suite = totals.setdefault(record.pop("suite"), {"tests": 0})
        suite["tests"] += 1
        for name, value in record.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                suite[name] = suite.get(name, 0) + value
    return totals


if __name__ == "__main__":
    for suite_name, counts in sorted(summarize_figures(sys.argv[1]).items()):
        print(suite_name, " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
