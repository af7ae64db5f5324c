"""A break in the archive's tamper evidence: what ``archiver verify`` names, whoever found it.

Its own module so that the checks (``verify`` for the chains, ``periods`` for closed statements)
share it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Break:
    table: str
    row_id: int | None
    workflow_id: str
    job_id: str
    kind: str  # edited, deleted, inserted, reordered
    detail: str
    chain_seq: int | None = None

    def line(self) -> str:
        where = f"{self.table} row {self.row_id}" if self.row_id is not None else self.table
        seq = f", seq {self.chain_seq}" if self.chain_seq is not None else ""
        return f"{where} (job {self.workflow_id}/{self.job_id}{seq}): {self.kind}: {self.detail}"
