"""Strict-but-honest JSON decoding shared by the client, the ingest command and the store.

Python's ``json`` accepts ``NaN``/``Infinity`` and silently keeps the last of duplicate keys; an
audit archive must not invent numbers and must say when a payload was ambiguous. ``loads`` rejects
the former and reports the latter as notes, keeping the last value as every common parser does.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any


class JsonError(ValueError):
    """The text is not a JSON document the archiver accepts; the message says why."""


@dataclass
class Decoded:
    value: Any
    duplicate_keys: list[str] = field(default_factory=list)


MAX_DEPTH = 64  # deeper than any real payload; deep enough nesting overflows serializers


def _reject_constant(name: str) -> Any:
    raise JsonError(f"non-standard JSON number {name}")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 is valid JSON, but no database column can hold it
        raise JsonError(f"number {text[:40]} is out of range")
    return value


def _check_depth(value: Any) -> None:
    """Level by level (recursion is what must be avoided); comprehensions keep it cheap."""
    level, depth = [value], 1
    while level:
        if depth > MAX_DEPTH:
            raise JsonError(f"JSON nested deeper than {MAX_DEPTH} levels")
        below: list[Any] = []
        for node in level:
            children = node.values() if type(node) is dict else node
            if _CONTAINERS.isdisjoint(map(type, children)):  # most arrays hold only scalars: C
                continue
            below.extend([c for c in children if type(c) is list or type(c) is dict])
        level, depth = below, depth + 1


_CONTAINERS = frozenset({list, dict})


def loads(text: str | bytes) -> Decoded:
    """Decode one JSON document; raise JsonError with a one-line reason on anything invalid."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"body is not UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    duplicates: list[str] = []

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)  # the last value of a repeated key wins, as in json.loads
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    duplicates.append(key)
                seen.add(key)
        return obj

    try:
        value = json.loads(
            text,
            object_pairs_hook=pairs_hook,
            parse_constant=_reject_constant,
            parse_float=_finite_float,
        )
    except JsonError:
        raise
    except json.JSONDecodeError as exc:
        snippet = text.lstrip()[:1]
        hint = " (looks like an HTML page)" if snippet == "<" else ""
        raise JsonError(
            f"not valid JSON{hint}: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:  # e.g. an integer beyond Python's 4,300-digit conversion limit
        raise JsonError(f"not a usable JSON document: {exc}") from None
    except RecursionError:
        raise JsonError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    if isinstance(value, dict | list):
        _check_depth(value)
    return Decoded(value, duplicates)


def canonical(value: Any) -> str:
    """One text per JSON value (sorted keys, no whitespace, ASCII) so equal payloads hash equal."""
    return _CANONICAL.encode(value)


# json.dumps with these options builds an encoder per call; hashing calls this per value
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _skip(text: str, pos: int) -> int:
    """The position after any JSON whitespace at ``pos``."""
    match = _WS.match(text, pos)
    return match.end() if match else pos


def array_elements(text: str) -> list[str] | None:
    """The verbatim text of each element of a top-level JSON array (None if it is not one).

    Splitting on spans rather than re-encoding decoded elements keeps each payload exactly as
    received, duplicate keys included, so it is archived like a payload read on its own.
    """
    pos = _skip(text, 0)
    if text[pos : pos + 1] != "[":
        return None
    pos = _skip(text, pos + 1)
    parts: list[str] = []
    if text[pos : pos + 1] == "]":
        return parts
    while True:
        try:
            _, end = _DECODER.raw_decode(text, pos)
        except ValueError:
            return None
        parts.append(text[pos:end])
        pos = _skip(text, end)
        if text[pos : pos + 1] == "]":
            return parts
        if text[pos : pos + 1] != ",":
            return None
        pos = _skip(text, pos + 1)


def member_text(text: str, name: str) -> str | None:
    """The verbatim text of member ``name`` of a top-level JSON object (the last if repeated)."""
    pos = _skip(text, 0)
    if text[pos : pos + 1] != "{":
        return None
    pos = _skip(text, pos + 1)
    found = None
    while text[pos : pos + 1] == '"':
        try:
            key, pos = _DECODER.raw_decode(text, pos)
            pos = _skip(text, pos)
            if text[pos : pos + 1] != ":":
                return None
            start = _skip(text, pos + 1)
            _, end = _DECODER.raw_decode(text, start)
        except ValueError:
            return None
        if key == name:
            found = text[start:end]
        pos = _skip(text, end)
        if text[pos : pos + 1] == ",":
            pos = _skip(text, pos + 1)
    return found
