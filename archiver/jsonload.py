"""Strict-but-honest JSON decoding shared by the client, the ingest command and the store.

Python's ``json`` accepts ``NaN``/``Infinity`` and silently keeps the last of duplicate keys; an
audit archive must not invent numbers and must say when a payload was ambiguous. ``loads`` rejects
the former and reports the latter as notes, keeping the last value as every common parser does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class JsonError(ValueError):
    """The text is not a JSON document the archiver accepts; the message says why."""


@dataclass
class Decoded:
    value: Any
    duplicate_keys: list[str] = field(default_factory=list)


def _reject_constant(name: str) -> Any:
    raise JsonError(f"non-standard JSON number {name}")


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
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                duplicates.append(key)
            obj[key] = value
        return obj

    try:
        value = json.loads(text, object_pairs_hook=pairs_hook, parse_constant=_reject_constant)
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
        raise JsonError("JSON nested too deeply") from None
    return Decoded(value, duplicates)


def canonical(value: Any) -> str:
    """One text per JSON value (sorted keys, no whitespace, ASCII) so equal payloads hash equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
