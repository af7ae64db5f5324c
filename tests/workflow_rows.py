"""Workflow rows written by hand, as the discovery code will write them: the current row in
``workflows`` and its SCD2 history in ``workflow_versions`` (the reporting tests need them before
and apart from that code)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.engine import Engine

from archiver.models import Workflow, WorkflowVersion


@dataclass(frozen=True)
class Version:
    name: str | None
    estimated_cost: int | None
    valid_from: datetime


def add_workflow(engine: Engine, workflow_id: str, versions: Sequence[Version]) -> None:
    """``versions`` oldest first; each is valid until the next one's ``valid_from``, the last
    is current, and ``workflows`` holds the last one's name and estimate."""
    rows = []
    for number, version in enumerate(versions, start=1):
        following = versions[number] if number < len(versions) else None
        rows.append(
            {
                "workflow_id": workflow_id,
                "version": number,
                "name": version.name,
                "estimated_cost": version.estimated_cost,
                "valid_from": version.valid_from,
                "valid_to": following.valid_from if following else None,
            }
        )
    current = versions[-1]
    with engine.begin() as conn:
        conn.execute(insert(WorkflowVersion.__table__), rows)
        conn.execute(
            insert(Workflow.__table__),
            {
                "workflow_id": workflow_id,
                "name": current.name,
                "estimated_cost": current.estimated_cost,
                "version": len(versions),
                "first_seen_at": versions[0].valid_from,
                "last_seen_at": current.valid_from,
                "watched": True,
                "state": "watched",
                "consecutive_failures": 0,
                "claim_token": 0,
            },
        )
