"""The write path for workflow descriptions: ``workflows`` with its versions and its change log.

A workflow is described by the listing endpoints (name, description, project, author, times) and
by its cost estimate. Each time one is seen, its row is brought up to date; when a described
field differs from the current row, the current ``workflow_versions`` row is closed, the next one
added, and one ``workflow_changes`` row written per field, so a rename or a new estimate is kept
with when it was seen, as job changes are. A workflow that is watched before it was ever
described has a row at version 0 and no version row: its first description writes version 1 and
no change (nothing was known before it).

The caller passes any object with the described attributes (``archiver.api.listing.WorkflowInfo``
has them): this layer does not import the API's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from archiver.archive.changelog import as_text, same
from archiver.archive.values import clean_text
from archiver.db import upsert
from archiver.models import WORKFLOW_CHANGES, WORKFLOW_VERSIONS, WORKFLOWS

# the fields whose change makes a new version (the order of the change rows)
VERSIONED = ("name", "description", "project_id", "created_by", "updated_at", "estimated_cost")
SHORT = 255  # project_id, legacy_project_id and created_by are String(255)


class WorkflowDescription(Protocol):
    @property
    def workflow_id(self) -> str: ...
    @property
    def project_id(self) -> str | None: ...
    @property
    def legacy_project_id(self) -> str | None: ...
    @property
    def name(self) -> str | None: ...
    @property
    def description(self) -> str | None: ...
    @property
    def created_by(self) -> str | None: ...
    @property
    def created_at(self) -> datetime | None: ...
    @property
    def updated_at(self) -> datetime | None: ...


class _Keep:
    """No estimate was asked for this time: the stored one stays."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = _Keep()


@dataclass(frozen=True)
class StoredWorkflow:
    workflow_id: str
    outcome: str  # "new" (first description), "changed" or "unchanged"
    version: int
    changed: tuple[str, ...]  # the fields that changed, in VERSIONED order
    state: str  # the row's watch state after the write

    @property
    def updated_at_changed(self) -> bool:
        return self.outcome == "new" or "updated_at" in self.changed


def ensure_row(session: Session, workflow_id: str, now: datetime) -> None:
    """A ``workflows`` row for ``workflow_id`` (version 0, undescribed, state ``known``: not
    watched; ``archiver.polling.watching`` moves it) if it has none yet."""
    upsert(
        session,
        WORKFLOWS,
        [
            {
                "workflow_id": workflow_id,
                "version": 0,
                "first_seen_at": now,
                "last_seen_at": now,
                "watched": False,
                "state": "known",
                "consecutive_failures": 0,
                "claim_token": 0,
            }
        ],
        key=("workflow_id",),
        update=(),
    )


def _described(info: WorkflowDescription) -> dict[str, Any]:
    return {
        "project_id": clean_text(info.project_id, SHORT).value,
        "legacy_project_id": clean_text(info.legacy_project_id, SHORT).value,
        "name": clean_text(info.name).value,
        "description": clean_text(info.description).value,
        "created_by": clean_text(info.created_by, SHORT).value,
        "created_at": info.created_at,
        "updated_at": info.updated_at,
    }


def record_workflow(
    session: Session,
    info: WorkflowDescription,
    now: datetime,
    *,
    estimate: int | _Keep | None = KEEP,
) -> StoredWorkflow:
    """Bring the workflow's row up to date with ``info`` (and ``estimate`` when one was asked
    for: an answer without one keeps the last known estimate, since a flapping answer would
    otherwise erase what jobs created meanwhile were estimated at). ``last_seen_at`` always
    moves; the row is locked for the write, so two writers never add the same version."""
    workflow_id = info.workflow_id
    ensure_row(session, workflow_id, now)
    row = (
        session.execute(
            select(WORKFLOWS).where(WORKFLOWS.c.workflow_id == workflow_id).with_for_update()
        )
        .mappings()
        .one()
    )
    new = _described(info)
    asked = not isinstance(estimate, _Keep)
    new["estimated_cost"] = row["estimated_cost"] if not asked or estimate is None else estimate
    values: dict[str, Any] = {**new, "last_seen_at": now}
    if asked:
        values["estimated_at"] = now
    first = row["version"] == 0
    # the first estimate ever known completes the current version; it is no change
    first_estimate = (
        asked and estimate is not None and row["estimated_cost"] is None and row["version"] <= 1
    )
    compared = [f for f in VERSIONED if not (first_estimate and f == "estimated_cost")]
    changed = () if first else tuple(f for f in compared if not same(row[f], new[f]))
    if first:
        version, outcome = 1, "new"
        values["first_seen_at"] = now
    elif changed:
        version, outcome = row["version"] + 1, "changed"
        session.execute(
            update(WORKFLOW_VERSIONS)
            .where(
                WORKFLOW_VERSIONS.c.workflow_id == workflow_id,
                WORKFLOW_VERSIONS.c.version == row["version"],
            )
            .values(valid_to=now)
        )
        session.execute(
            insert(WORKFLOW_CHANGES),
            [
                {
                    "workflow_id": workflow_id,
                    "field": name,
                    "old_value": as_text(row[name]),
                    "new_value": as_text(new[name]),
                    "observed_at": now,
                }
                for name in changed
            ],
        )
    else:
        version, outcome = row["version"], "unchanged"
        if first_estimate:
            session.execute(
                update(WORKFLOW_VERSIONS)
                .where(
                    WORKFLOW_VERSIONS.c.workflow_id == workflow_id,
                    WORKFLOW_VERSIONS.c.version == version,
                )
                .values(estimated_cost=new["estimated_cost"])
            )
    if outcome != "unchanged":
        values["version"] = version
        session.execute(
            insert(WORKFLOW_VERSIONS).values(
                workflow_id=workflow_id,
                version=version,
                valid_from=now,
                valid_to=None,
                **{f: new[f] for f in VERSIONED},
                created_at=new["created_at"],
            )
        )
    session.execute(update(WORKFLOWS).where(WORKFLOWS.c.id == row["id"]).values(**values))
    return StoredWorkflow(workflow_id, outcome, version, changed, row["state"])


def record_estimate(
    session: Session, workflow_id: str, estimate: int | None, now: datetime
) -> StoredWorkflow:
    """A new estimate for a workflow already described (its other fields as they are)."""
    row = (
        session.execute(
            select(WORKFLOWS).where(WORKFLOWS.c.workflow_id == workflow_id).with_for_update()
        )
        .mappings()
        .one()
    )
    if row["version"] == 0:  # not described yet: the estimate waits there for its version 1
        values: dict[str, Any] = {"estimated_at": now}
        if estimate is not None:
            values["estimated_cost"] = estimate
        session.execute(update(WORKFLOWS).where(WORKFLOWS.c.id == row["id"]).values(**values))
        return StoredWorkflow(workflow_id, "unchanged", 0, (), row["state"])
    return record_workflow(session, _RowDescription(row), now, estimate=estimate)


class _RowDescription:
    """A stored row read back as a description (for an estimate-only update)."""

    def __init__(self, row: Any) -> None:
        self.workflow_id: str = row["workflow_id"]
        self.project_id: str | None = row["project_id"]
        self.legacy_project_id: str | None = row["legacy_project_id"]
        self.name: str | None = row["name"]
        self.description: str | None = row["description"]
        self.created_by: str | None = row["created_by"]
        self.created_at: datetime | None = row["created_at"]
        self.updated_at: datetime | None = row["updated_at"]
