"""How values are compared and written into the change log.

One place decides when two values are "the same" (so a round trip through any database never
looks like a change) and how a value reads in ``job_changes.old_value/new_value`` (so SQL over
the log sees one spelling per value on every database).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from archiver.archive.jsonload import canonical
from archiver.archive.jsontext import fast_encode


def as_text(value: Any) -> str | None:
    """The change log's spelling: ISO-8601 ``Z`` times, plain decimals, canonical JSON."""
    kind = type(value)
    if kind is str:  # most values: checked first, as every history row's hash spells each one
        return value
    if value is None:
        return None
    if kind is datetime:
        return _time_text(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return _decimal_text(value) if kind is Decimal else _plain_decimal(value)
    if isinstance(value, datetime):
        return _time_text(value)
    if isinstance(value, int | str):
        return str(value)
    return _canonical(value)


# ``canonical`` (``archiver.archive.jsonload``) without its per-call setup: every history row's
# hash spells its JSON values, so this runs per array of every task version. Same options, so
# the same text (``tests/archive/test_changelog.py`` holds the two to that).
_canonical = fast_encode(json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True))


def _plain_decimal(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


# Cached: a batch's progress figures and durations repeat. Equal decimals (1.5, 1.50) share the
# text, which is of the value alone (normalized), so the cache cannot mix them up.
_decimal_text = functools.lru_cache(maxsize=4096)(_plain_decimal)


@functools.lru_cache(maxsize=4096)
def _time_text(value: datetime) -> str:
    """Cached: the rows of one job's archive share a few observation times."""
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def texts() -> dict[str, Callable[[Any], str]]:
    """``as_text``'s spellings of exact datetimes, decimals and JSON arrays/objects, for a caller
    that dispatches on the class itself (the chain's generated encoders)."""
    return {"time_text": _time_text, "decimal_text": _decimal_text, "json_text": _canonical}


def same(old: Any, new: Any) -> bool:
    if old is None or new is None:
        return old is None and new is None
    if isinstance(old, list | dict) or isinstance(new, list | dict):
        return canonical(old) == canonical(new)
    return bool(old == new)


def changed_fields(old: Any, new: Mapping[str, Any], fields: Iterable[str]) -> list[str]:
    """Fields whose value differs; against no previous state, every field that has a value."""
    if old is None:
        return [f for f in fields if new[f] is not None]
    return [f for f in fields if not same(old[f], new[f])]
