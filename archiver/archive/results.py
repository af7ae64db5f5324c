"""What archiving a payload came to (``ArchiveResult``), and the digest that recognizes a body.

Shared by planning (``plan``, ``load``), the batch transaction (``batches``) and their callers
(``sync``, ``ingest``, the CLI), so it sits below all of them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["new", "changed", "unchanged", "stale"]
JobKey = tuple[str, str]


@dataclass
class ArchiveResult:
    workflow_id: str
    job_id: str
    outcome: Outcome
    changes: int = 0
    problems: int = 0
    version: int | None = None
    status: str | None = None
    is_terminal: bool | None = None


def body_digest(body: str | bytes) -> str:
    """SHA-256 of a payload exactly as received: equal digests mean an identical body."""
    raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()


def archived_result(key: JobKey, outcome: Outcome, current: Any) -> ArchiveResult:
    """A payload that changed nothing: the result describes the archived state (``current``)."""
    return ArchiveResult(
        key[0],
        key[1],
        outcome,
        version=current["version"],
        status=current["status"],
        is_terminal=current["is_terminal"],
    )
