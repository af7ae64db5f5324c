"""Tamper evidence: one SHA-256 hash chain per job through all of its history rows.

Every row the archiver adds to ``job_snapshots``, ``job_versions``, ``task_versions`` and
``job_changes`` gets the job's next ``chain_seq``, the previous row's hash (``prev_sha256``) and its
own hash (``row_sha256``) over the previous hash and a canonical encoding of its content. The head
(``jobs.chain_seq``, ``jobs.chain_sha256``) moves in the same transaction. Chaining per job, not
globally, keeps concurrent workers free of a shared lock: the job's row lock already orders them.

What a hash covers is an *encoding*, frozen once rows use it, and every row names its own in
``chain_version``: changing an encoding would make every row written with it look edited. So a
field the archive starts storing joins the chain in a new encoding (its ``since`` in
``archiver.fields``): encoding N is encoding N-1 plus the fields that joined at N. New rows get the
latest (``CURRENT``); older rows keep verifying with theirs. v1 is spelled out below, not derived.
Left out on purpose: surrogate ids (they differ between databases and rebuilds), ``valid_to``
(written later, when the next version closes the row; ``verify`` checks it against the next
version's ``valid_from`` instead) and the snapshot's body (its ``sha256`` is covered, and ``verify``
re-hashes the body).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from archiver import fields as declared
from archiver.archive.changelog import as_text, texts
from archiver.archive.jsontext import fast_encode
from archiver.fields import Field

GENESIS = "0" * 64

Encoding = Mapping[str, tuple[str, ...]]  # table -> the columns its row hash covers, in order

# Encoding v1, frozen: the columns each table's row hash covers, in order. Every row written
# before chain_version existed is a v1 row, and its hash must keep verifying byte for byte.
_V1_JOB_STATE = (
    "status",
    "status_class",
    "is_terminal",
    "progress",
    "progress_pct",
    "cost",
    "time_taken",
    "time_taken_s",
    "estimated_duration",
    "created_by",
    "created_at",
    "updated_at",
    "finished_at",
    "exec_created_at",
    "exec_updated_at",
    "spec",
    "extra",
)
_V1_TASK_STATE = (
    "name",
    "status",
    "status_class",
    "is_terminal",
    "progress",
    "estimated_time_duration",
    "time_taken",
    "time_taken_s",
    "state_msg",
    "err_msg",
    "failure_type",
    "created_at",
    "updated_at",
    "finished_at",
    "recv_time",
    "send_time",
    "block_inf_start_time",
    "block_inf_end_time",
    "block_id",
    "block_name",
    "block_version",
    "depends_on",
    "info_logs",
    "inputs",
    "result",
    "disclaimer",
    "extra",
)
V1: Encoding = MappingProxyType(
    {
        "job_snapshots": ("workflow_id", "job_id", "sha256", "fetched_at", "applied"),
        "job_versions": (
            "workflow_id",
            "job_id",
            "version",
            "valid_from",
            "payload_sha256",
            *_V1_JOB_STATE,
        ),
        "task_versions": (
            "workflow_id",
            "job_id",
            "task_id",
            "version",
            "valid_from",
            *_V1_TASK_STATE,
        ),
        "job_changes": (
            "workflow_id",
            "job_id",
            "task_id",
            "entity",
            "entity_key",
            "field",
            "old_value",
            "new_value",
            "observed_at",
        ),
    }
)


def encodings(job: Sequence[Field], task: Sequence[Field]) -> dict[int, Encoding]:
    """Every encoding the declaration implies: v1, then per later ``since`` the encoding before it
    plus the fields that joined then (appended, so where a field is declared does not matter)."""
    registry: dict[int, Encoding] = {1: V1}
    last = max((f.since for f in (*job, *task)), default=1)
    for version in range(2, last + 1):
        before = registry[version - 1]
        registry[version] = MappingProxyType(
            {
                **before,
                "job_versions": before["job_versions"] + _joined(job, version),
                "task_versions": before["task_versions"] + _joined(task, version),
            }
        )
    return registry


def _joined(entity: Sequence[Field], version: int) -> tuple[str, ...]:
    return tuple(f.name for f in entity if f.since == version)


# version -> encoding; CURRENT is the one new rows are written with
ENCODINGS: dict[int, Encoding] = encodings(declared.JOB, declared.TASK)
CURRENT = max(ENCODINGS)


class UnknownEncoding(ValueError):
    """A row names a chain_version this archiver has no encoding for."""


def covered(table: str, version: int) -> tuple[str, ...]:
    """The columns of ``table`` that a row of encoding ``version`` hashes."""
    encoding = ENCODINGS.get(version)
    if encoding is None:
        known = ", ".join(str(v) for v in sorted(ENCODINGS))
        raise UnknownEncoding(f"chain_version {version} is no known encoding (known: {known})")
    return encoding[table]


def all_covered(table: str) -> tuple[str, ...]:
    """The columns any known encoding hashes for ``table``, in first-use order (what to read)."""
    return tuple(dict.fromkeys(c for v in sorted(ENCODINGS) for c in ENCODINGS[v][table]))


def encode(table: str, row: Mapping[str, Any]) -> bytes:
    """One spelling per row whatever database it was read back from (``as_text`` per value), in
    the encoding the row names; its version is in the text, so editing it breaks the hash."""
    version = row["chain_version"]
    key = (table, version, covered(table, version))
    encoder = _ENCODERS.get(key)
    if encoder is None:
        encoder = _ENCODERS[key] = _encoder(*key)
    return encoder(row)


# (table, version, its columns) -> encode for such rows; the columns are in the key because a
# test may swap the declaration (and so ``ENCODINGS``)
_ENCODERS: dict[tuple[str, int, tuple[str, ...]], Callable[[Mapping[str, Any]], bytes]] = {}


def _encoder(
    table: str, version: int, columns: tuple[str, ...]
) -> Callable[[Mapping[str, Any]], bytes]:
    """``encode`` for one table and encoding, written out column by column.

    The text is ``[f"v{version}", table, [as_text(value) per covered column]]`` as compact ASCII
    JSON. Generated (as ``dataclasses`` generates ``__init__``) because calling ``as_text`` per
    value of every history row was most of the chain's cost: text and NULL pass as they are, the
    usual kinds go straight to the spelling ``as_text`` would pick for them (``texts``), any
    other to ``as_text`` itself.
    """
    values = ", ".join(
        f"(v if (k := (v := row[{name!r}]).__class__) is str or v is None"
        " else time_text(v) if k is datetime else decimal_text(v) if k is Decimal"
        " else json_text(v) if k is list or k is dict else str(v) if k is int else as_text(v))"
        for name in columns
    )
    source = (
        "def encode(row):\n"
        f"    return dump([{f'v{version}'!r}, {table!r}, [{values}]]).encode('ascii')\n"
    )
    namespace: dict[str, Any] = {
        "as_text": as_text,
        "dump": _dump,
        "datetime": datetime,
        "Decimal": Decimal,
        **texts(),
    }
    exec(source, namespace)  # noqa: S102 - the names are the declared columns
    return namespace["encode"]


# json.dumps(ensure_ascii=True, separators=(",", ":")), its C encoder built once
_dump = fast_encode(json.JSONEncoder(ensure_ascii=True, separators=(",", ":")))


def row_hash(prev: str, table: str, row: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(prev.encode("ascii"))
    digest.update(b"\n")
    digest.update(encode(table, row))
    return digest.hexdigest()


class Chain:
    """The head of one job's chain while its rows are being written, in one encoding."""

    __slots__ = ("head", "seq", "version")

    def __init__(
        self, seq: int | None = None, head: str | None = None, version: int | None = None
    ) -> None:
        self.seq = seq or 0
        self.head = head or GENESIS
        self.version = CURRENT if version is None else version

    def link(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        """Stamp ``row`` (in place) as the chain's next row, in the chain's encoding, and return
        it."""
        self.seq += 1
        row["chain_version"] = self.version
        row["chain_seq"] = self.seq
        row["prev_sha256"] = self.head
        row["row_sha256"] = self.head = row_hash(self.head, table, row)
        return row

    def head_columns(self) -> dict[str, Any]:
        return {"chain_seq": self.seq, "chain_sha256": self.head}
