"""Bookkeeping of passes (``sync_runs``) and of failed fetches or payloads (``sync_errors``).

Shared by ``archiver ingest`` and ``archiver sync`` so both leave the same trail: an operator can
tell from SQL when the archiver looked at a job and failed, so a gap in the history is known to
be a gap.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, insert, update
from sqlalchemy.orm import Session

from archiver.archive.values import clean_text
from archiver.fields import ID_MAX
from archiver.models import ERRORS, RUNS

COUNTS = (
    "jobs_total",
    "archived",
    "changed",
    "unchanged",
    "stale",
    "failed",
    "skipped",
    "problems",
    "workflows_listed",
    "jobs_discovered",
    "list_failed",
)


def start_run(session: Session, kind: str, now: datetime) -> int:
    result: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        insert(RUNS).values(kind=kind, started_at=now, host=socket.gethostname()[:255])
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def finish_run(session: Session, run_id: int, counts: Mapping[str, int], now: datetime) -> None:
    values = {name: int(counts.get(name, 0)) for name in COUNTS}
    session.execute(update(RUNS).where(RUNS.c.id == run_id).values(finished_at=now, **values))


def close_interrupted(session: Session, run_id: int, when: datetime) -> None:
    """Close a run that failed before it could finish itself (its counts stay unknown: 0)."""
    session.execute(
        update(RUNS)
        .where(RUNS.c.id == run_id, RUNS.c.finished_at.is_(None))
        .values(finished_at=when)
    )


def record_error(
    session: Session,
    run_id: int | None,
    *,
    workflow_id: str | None,
    job_id: str | None,
    when: datetime,
    reason: str,
    message: str,
    http_status: int | None = None,
    error_code: str | None = None,
) -> None:
    session.execute(
        insert(ERRORS).values(
            sync_run_id=run_id,
            workflow_id=_clean_id(workflow_id),
            job_id=_clean_id(job_id),
            occurred_at=when,
            http_status=http_status,
            error_code=error_code[:255] if error_code else None,
            reason=reason[:32],
            message=(clean_text(message).value or "")[:10000],
        )
    )


def _clean_id(value: str | None) -> str | None:
    """Ids of rejected payloads are whatever the payload said: make them storable anywhere."""
    if not value:
        return None
    return (clean_text(value).value or "")[:ID_MAX] or None
