"""Read-side queries shared by the CLI and the demo (take a session, return plain rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from archiver.models import Job, JobChange, TrackedJob


@dataclass(frozen=True)
class ChangeRow:
    observed_at: datetime
    entity: str
    entity_key: str | None
    field: str
    old_value: str | None
    new_value: str | None


def job_history(session: Session, workflow_id: str, job_id: str) -> list[ChangeRow]:
    """Every recorded change of the job, its tasks and validation errors, oldest first."""
    rows = session.execute(
        select(
            JobChange.observed_at,
            JobChange.entity,
            JobChange.entity_key,
            JobChange.field,
            JobChange.old_value,
            JobChange.new_value,
        )
        .where(JobChange.workflow_id == workflow_id, JobChange.job_id == job_id)
        .order_by(JobChange.observed_at, JobChange.id)
    )
    return [ChangeRow(*row) for row in rows]


def jobs_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.status_class, func.count()).group_by(Job.status_class))
    return {str(status or "none"): int(n or 0) for status, n in rows}


def tracked_state(session: Session, workflow_id: str, job_id: str) -> str | None:
    """The job's polling state (active, settled, …), None when it was never tracked."""
    return session.scalar(
        select(TrackedJob.state).where(
            TrackedJob.workflow_id == workflow_id, TrackedJob.job_id == job_id
        )
    )
