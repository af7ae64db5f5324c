"""Tamper evidence: one SHA-256 hash chain per job through all of its history rows.

Every row the archiver adds to ``job_snapshots``, ``job_versions``, ``task_versions`` and
``job_changes`` gets the job's next ``chain_seq``, the previous row's hash (``prev_sha256``) and its
own hash (``row_sha256``) over the previous hash and a canonical encoding of its content. The head
(``jobs.chain_seq``, ``jobs.chain_sha256``) moves in the same transaction. Chaining per job, not
globally, keeps concurrent workers free of a shared lock: the job's row lock already orders them.

What a hash covers is frozen here (``ENCODING``): changing a list below would make every existing
row look edited, so a new column of a history table needs a new encoding version, not an edit.
Left out on purpose: surrogate ids (they differ between databases and rebuilds), ``valid_to``
(written later, when the next version closes the row; ``verify`` checks it against the next
version's ``valid_from`` instead) and the snapshot's body (its ``sha256`` is covered, and ``verify``
re-hashes the body).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from archiver.archive.changelog import as_text

GENESIS = "0" * 64
ENCODING = "v1"

_JOB_STATE = (
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
_TASK_STATE = (
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

# table -> the columns its row hash covers, in order (encoding v1)
COVERED: dict[str, tuple[str, ...]] = {
    "job_snapshots": ("workflow_id", "job_id", "sha256", "fetched_at", "applied"),
    "job_versions": (
        "workflow_id",
        "job_id",
        "version",
        "valid_from",
        "payload_sha256",
        *_JOB_STATE,
    ),
    "task_versions": ("workflow_id", "job_id", "task_id", "version", "valid_from", *_TASK_STATE),
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
CHAINED_TABLES = tuple(COVERED)


def encode(table: str, row: Mapping[str, Any]) -> bytes:
    """One spelling per row whatever database it was read back from (``as_text`` per value)."""
    values = [as_text(row[name]) for name in COVERED[table]]
    return _ENCODER.encode([ENCODING, table, values]).encode("ascii")


# what json.dumps(ensure_ascii=True, separators=(",", ":")) builds on every call, built once
_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"))


def row_hash(prev: str, table: str, row: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(prev.encode("ascii"))
    digest.update(b"\n")
    digest.update(encode(table, row))
    return digest.hexdigest()


class Chain:
    """The head of one job's chain while its rows are being written."""

    __slots__ = ("head", "seq")

    def __init__(self, seq: int | None = None, head: str | None = None) -> None:
        self.seq = seq or 0
        self.head = head or GENESIS

    def link(self, table: str, row: dict[str, Any]) -> dict[str, Any]:
        """Stamp ``row`` (in place) as the chain's next row and return it."""
        self.seq += 1
        row["chain_seq"] = self.seq
        row["prev_sha256"] = self.head
        row["row_sha256"] = self.head = row_hash(self.head, table, row)
        return row

    def head_columns(self) -> dict[str, Any]:
        return {"chain_seq": self.seq, "chain_sha256": self.head}
