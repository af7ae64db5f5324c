"""How a count reads in a message: ``1 job``, ``2 jobs`` (never ``1 jobs``)."""

from __future__ import annotations


def counted(count: int, one: str, many: str | None = None) -> str:
    """``count`` and the noun in the number it needs; ``many`` defaults to ``one`` + "s"."""
    return f"{count} {one if count == 1 else (many or one + 's')}"
