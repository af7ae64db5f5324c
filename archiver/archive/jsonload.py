"""Strict-but-honest JSON decoding shared by the client, the ingest command and the store.

Python's ``json`` accepts ``NaN``/``Infinity`` and silently keeps the last of duplicate keys; an
audit archive must not invent numbers and must say when a payload was ambiguous. ``loads`` rejects
the former and reports the latter as notes, keeping the last value as every common parser does.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
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


def _check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Level by level (recursion is what must be avoided); comprehensions keep it cheap."""
    level, depth = [value], 1
    while level:
        if depth > limit:
            raise JsonError(f"JSON nested deeper than {MAX_DEPTH} levels")
        below: list[Any] = []
        for node in level:
            if type(node) is list:
                try:  # only ints 0..255 (or bools) convert: the usual array of bytes, in C
                    bytes(node)
                    continue
                except (TypeError, ValueError):
                    pass
            children = node.values() if type(node) is dict else node
            if _CONTAINERS.isdisjoint(map(type, children)):  # most arrays hold only scalars: C
                continue
            below.extend([c for c in children if type(c) is list or type(c) is dict])
        level, depth = below, depth + 1


_CONTAINERS = frozenset({list, dict})


def _pairs_hook(duplicates: list[str]) -> Any:
    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj = dict(pairs)  # the last value of a repeated key wins, as in json.loads
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    duplicates.append(key)
                seen.add(key)
        return obj

    return pairs_hook


def loads(text: str | bytes, *, depth: bool = True) -> Decoded:
    """Decode one JSON document; raise JsonError with a one-line reason on anything invalid.

    ``depth=False``: the caller checks the nesting itself (``check_depth``), as
    ``archiver.archive.payload`` does when the canonical texts it builds anyway show the document
    shallow enough to need no walk.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"body is not UTF-8 (byte {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    duplicates: list[str] = []
    try:
        value = json.loads(
            text,
            object_pairs_hook=_pairs_hook(duplicates),
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
    if depth:
        check_depth(value)
    return Decoded(value, duplicates)


def check_depth(value: Any) -> None:
    """Raise JsonError if ``value`` nests deeper than ``MAX_DEPTH`` (``loads`` checks this)."""
    if isinstance(value, dict | list):
        _check_depth(value)


class _NotStreamable(Exception):
    """The text is not a plain object with an array member: ``loads`` takes it whole instead."""


def loads_streaming(text: str, name: str, each: Callable[[Any], None]) -> tuple[Decoded, bool]:
    """``loads(text)``, except that the elements of the top-level array member ``name`` go to
    ``each`` one at a time as they are decoded, never all at once: ``(decoded, True)``, with
    ``[]`` for that member. A 30 MB listing then never becomes a 110 MB tree.

    Anything else (not an object, the member not an array or repeated, invalid JSON) is decoded
    by ``loads`` itself: ``(decoded, False)`` with the member as decoded, or ``loads``' JsonError.
    ``each`` may have seen some elements before that: whoever counts them starts again.
    """
    try:
        return _stream(text, name, each), True
    except (_NotStreamable, ValueError, RecursionError):  # JsonError is a ValueError
        return loads(text), False


def _stream(text: str, name: str, each: Callable[[Any], None]) -> Decoded:
    duplicates: list[str] = []
    decoder = json.JSONDecoder(
        object_pairs_hook=_pairs_hook(duplicates),
        parse_constant=_reject_constant,
        parse_float=_finite_float,
    )
    decode = decoder.raw_decode
    pos = _skip(text, 1 if text.startswith("\ufeff") else 0)
    if text[pos : pos + 1] != "{":
        raise _NotStreamable
    value: dict[str, Any] = {}
    pos = _skip(text, pos + 1)
    closing = text[pos : pos + 1] == "}"
    while not closing:
        if text[pos : pos + 1] != '"':
            raise _NotStreamable
        key, pos = decode(text, pos)
        pos = _skip(text, pos)
        if text[pos : pos + 1] != ":":
            raise _NotStreamable
        pos = _skip(text, pos + 1)
        if key in value:
            if key == name:
                raise _NotStreamable
            duplicates.append(key)
        if key == name and text[pos : pos + 1] == "[":
            pos = _stream_array(text, pos, decode, each)
            value[key] = []
        else:
            value[key], pos = decode(text, pos)
            if type(value[key]) in _CONTAINERS:
                _check_depth(value[key], MAX_DEPTH - 1)
        pos = _skip(text, pos)
        closing = text[pos : pos + 1] == "}"
        if not closing:
            if text[pos : pos + 1] != ",":
                raise _NotStreamable
            pos = _skip(text, pos + 1)
    if _skip(text, pos + 1) != len(text):
        raise _NotStreamable
    return Decoded(value, duplicates)


def _stream_array(text: str, pos: int, decode: Any, each: Callable[[Any], None]) -> int:
    """Hand each element of the array at ``pos`` to ``each``; the position after the array."""
    pos = _skip(text, pos + 1)
    if text[pos : pos + 1] == "]":
        return pos + 1
    while True:
        element, pos = decode(text, pos)
        if type(element) in _CONTAINERS:
            _check_depth(element, MAX_DEPTH - 2)  # below the object and the array
        each(element)
        del element
        pos = _skip(text, pos)
        if text[pos : pos + 1] == "]":
            return pos + 1
        if text[pos : pos + 1] != ",":
            raise _NotStreamable
        pos = _skip(text, pos + 1)


def canonical(value: Any) -> str:
    """One text per JSON value (sorted keys, no whitespace, ASCII) so equal payloads hash equal."""
    return _CANONICAL.encode(value)


# json.dumps with these options builds an encoder per call; hashing calls this per value
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True, slots=True)
class CanonicalParts:
    """``canonical(value)`` of an object, and the texts of some of its parts as they stand in it."""

    text: str
    elements: list[str] | None  # of the array member named: each element's canonical text
    members: dict[str, str]  # the members named that the object has: their canonical texts
    # at least the value's nesting depth: the opening brackets (those inside strings too) of its
    # deepest member's text, and of the array member's deepest element; a container nests no
    # deeper than it holds containers, and each one's text opens with a bracket
    nesting: int = MAX_DEPTH + 1


def canonical_parts(value: dict[str, Any], array: str, members: tuple[str, ...]) -> CanonicalParts:
    """``canonical(value)`` built from its members' canonical texts, keeping the parts asked for.

    Why: a payload's hash needs its canonical text, and a task's digest the canonical text of
    the task (``archiver.archive.payload``): building the whole from its parts encodes each byte
    once. The text equals ``canonical(value)`` (``tests/archive/test_digests.py``): ``sort_keys``
    orders an object's members by key, and a value's text is the same at any depth. A key that
    is not a string (a mapping handed in by a caller) is left to ``canonical`` itself.
    """
    if not all(type(key) is str for key in value):
        return CanonicalParts(canonical(value), None, {})
    encode = _CANONICAL.encode
    parts: list[str] = []
    elements: list[str] | None = None
    found: dict[str, str] = {}
    deepest = 0
    for key in sorted(value):
        item = value[key]
        if key == array and type(item) is list:
            elements = [encode(element) for element in item]
            text = "[" + ",".join(elements) + "]"
            nesting = 1 + max(map(_brackets, elements), default=0)
        else:
            text = encode(item)
            nesting = _brackets(text)
        deepest = max(deepest, nesting)
        if key in members:
            found[key] = text
        parts.append(encode(key) + ":" + text)
    return CanonicalParts("{" + ",".join(parts) + "}", elements, found, 1 + deepest)


def _brackets(text: str) -> int:
    return text.count("[") + text.count("{")


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
