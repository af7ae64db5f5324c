"""The listing endpoints' query strings: parsing, filters and pagination, apart from HTTP.

Filters follow ``listing-endpoints.md``; where it is silent the fake picks the plainest reading
and says so here: filters are exact matches, except ``name`` (case-insensitive substring) and
``created_on``/``updated_at`` (a prefix of the timestamp, so ``2026-12-06`` picks a day).
Unknown parameters are ignored, as most APIs do; a malformed ``offset``/``limit`` is a 400.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
"""A larger ``limit`` is served as this one; the pagination block says which limit applied."""

WORKFLOW_FILTERS = ("project_id", "id", "name", "created_by", "created_on", "updated_at")
JOB_FILTERS = ("id", "status", "created_by", "created_on")


class BadQuery(ValueError):
    """A query string the API would answer 400."""


def parse_query(raw: str) -> dict[str, str]:
    """Parameters by name (the last of a repeated one wins); undecodable text is refused."""
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadQuery("query string is not valid percent-encoded UTF-8") from exc
    return dict(pairs)


def _matches(item: dict[str, Any], name: str, wanted: str) -> bool:
    if name == "name":
        return wanted.casefold() in str(item.get("name", "")).casefold()
    if name == "created_on":
        return str(item.get("created_at", "")).startswith(wanted)
    if name == "updated_at":
        return str(item.get("updated_at", "")).startswith(wanted)
    return str(item.get(name, "")) == wanted


def item_filter(query: dict[str, str], names: Iterable[str]) -> Callable[[dict[str, Any]], bool]:
    """A predicate keeping the items that pass every non-empty filter of ``names`` in ``query``."""
    active = [(n, query[n]) for n in names if query.get(n)]
    return lambda item: all(_matches(item, n, wanted) for n, wanted in active)


def _integer(query: dict[str, str], name: str, default: int, low: int) -> int:
    raw = query.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise BadQuery(f"{name} must be an integer, not {raw!r}") from None
    if value < low:
        raise BadQuery(f"{name} must be at least {low}, not {value}")
    return value


def page(query: dict[str, str], items: list[Any]) -> tuple[list[Any], dict[str, int]]:
    """The slice ``offset``/``limit`` asks for, and the pagination block (total before slicing)."""
    offset = _integer(query, "offset", 0, 0)
    limit = min(_integer(query, "limit", DEFAULT_LIMIT, 1), MAX_LIMIT)
    return items[offset : offset + limit], {"limit": limit, "offset": offset, "total": len(items)}
