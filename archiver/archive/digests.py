"""Digests of what a task or a job's validation errors were last read from, and by what.

A changed payload usually changes a few of its job's tasks. ``tasks.state_sha256`` (and
``jobs.val_errors_sha256`` for the job's validation errors) remembers the digest of the canonical
JSON each was last read from, written only when reading it found no problem: a task of a new
payload whose digest equals the archived one would be typed to the state already archived, with no
problem to record, so it is recognized without being typed or compared field by field
(``archiver.archive.payload``, ``archiver.archive.plan``). NULL means unknown: read and compare.

The digest also covers what the reading depends on besides the JSON, so that a reading that could
now give a different state never matches: the status classifier's mapping, the field declarations
(``archiver.fields``), and the code that reads and compares (the files in ``_READING``, by their
bytes). A new release therefore reads every task once more, where its job next changes, and
stores the new digests (even of a task found unchanged). A migration that rewrites typed values in
``tasks`` or ``val_errors`` must set these columns to NULL.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import archiver
from archiver import fields as declared
from archiver.archive import jsonload
from archiver.statuses import StatusClassifier

Digester = Callable[[str], str]


# the code a task's state depends on besides its JSON: reading, values, declarations, comparing
_READING = (
    ("archive", "payload.py"),
    ("archive", "readers.py"),
    ("archive", "values.py"),
    ("archive", "jsonload.py"),
    ("archive", "changelog.py"),
    ("archive", "digests.py"),
    ("fields.py",),
    ("ids.py",),
    ("statuses.py",),
)


@functools.cache
def _reading_code() -> bytes:
    """The bytes of the modules that read a payload (the release's version if one is missing)."""
    digest = hashlib.sha256(archiver.__version__.encode())
    package = Path(archiver.__file__).parent
    for parts in _READING:
        try:
            digest.update(package.joinpath(*parts).read_bytes())
        except OSError:
            digest.update("/".join(parts).encode())
    return digest.digest()


def _digester(*parts: Any) -> Digester:
    """sha256(what the reading depends on, then the text) as hex, the prefix hashed once."""
    base = hashlib.sha256(_reading_code())
    for part in parts:
        base.update(b"\n")
        base.update(jsonload.canonical(part).encode("ascii"))

    def digest(text: str) -> str:
        h = base.copy()
        h.update(b"\n")
        h.update(text.encode("ascii"))  # canonical JSON is ASCII
        return h.hexdigest()

    return digest


def _declaration(entity: tuple[declared.Field, ...], other: tuple[str, ...]) -> list[Any]:
    return [[repr(f) for f in entity], list(other)]


# (classifier, declarations) of the last digesters built, and them: one classifier per process
_cache: dict[str, tuple[tuple[Any, ...], Digester]] = {}


def _cached(name: str, owners: tuple[Any, ...], build: Callable[[], Digester]) -> Digester:
    hit = _cache.get(name)
    if hit is not None and all(a is b for a, b in zip(hit[0], owners, strict=True)):
        return hit[1]
    made = build()
    _cache[name] = (owners, made)
    return made


def task_digester(classifier: StatusClassifier) -> Digester:
    """The digest of a task's canonical JSON, as read with ``classifier``."""
    task, other = declared.TASK, declared.TASK_OTHER_KEYS
    return _cached(
        "task",
        (classifier, task, other),
        lambda: _digester("task", sorted(classifier.mapping.items()), _declaration(task, other)),
    )


def no_open_errors(val_errors_sha256: str | None) -> bool:
    """Whether a job's digest of its validation errors says it has no open one: its errors were
    last reported as ``[]`` or ``null``, read without a problem (they resolved every other)."""
    if val_errors_sha256 is None:
        return False
    digest = val_errors_digester()
    empty = _empty.get(digest)
    if empty is None:
        _empty.clear()
        empty = _empty[digest] = frozenset({digest("[]"), digest("null")})
    return val_errors_sha256 in empty


_empty: dict[Digester, frozenset[str]] = {}


def val_errors_digester() -> Digester:
    """The digest of a job's ``val_errors`` member's canonical JSON."""
    entity = declared.VAL_ERROR
    return _cached(
        "val_errors", (entity,), lambda: _digester("val_errors", _declaration(entity, ()))
    )
