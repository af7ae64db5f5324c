"""The simulator's workflows: names, projects, descriptions and estimates, and their history.

Why: the archiver records a workflow's renames and re-estimates like job changes, so the fake
must rename and re-estimate its workflows now and then, reproducibly from the seed and at
instants that never lie after the moment they are served. A workflow's k-th version is a pure
function of (seed, workflow id, k); when it starts is the k-th time of an ``EventTimes``.
"""

from __future__ import annotations

import json
import math
import random
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from archiver.sim.events import EventTimes
from archiver.sim.jobgen import timestamp_text, users

PROJECTS = 3
_PRODUCTS = (
    ("L2A surface reflectance", "Atmospherically corrected L2A scenes"),
    ("NDVI mosaic", "Cloud-free NDVI mosaics"),
    ("Water mask", "Surface water masks"),
    ("Change detection", "Land-cover change alerts"),
    ("Crop health", "Crop vigour indices"),
    ("Super-resolved basemap", "Super-resolved 1 m basemap tiles"),
)
_REGIONS = ("Karnataka", "Punjab", "Nile delta", "Central Valley", "Mekong", "Rhine basin")
_CADENCES = ("daily", "weekly", "every revisit", "on demand")


@dataclass(frozen=True, slots=True)
class WorkflowVersion:
    """What a workflow shows from ``at`` (real seconds after the start) until its next version."""

    at: float
    name: str
    description: str
    estimated_cost: int


def project_ids(seed: int) -> list[str]:
    """The simulated organisation's projects."""
    return [
        f"prj-{random.Random(f'{seed}:project:{p}').getrandbits(48):012x}" for p in range(PROJECTS)
    ]


class WorkflowPlan:
    """One workflow: fixed facts drawn once, versions drawn as far as time has gone."""

    def __init__(self, seed: int, workflow_id: str, start: datetime, change_every: float) -> None:
        """``change_every``: mean real seconds between renames/re-estimates (``math.inf``: none)."""
        self.seed = seed
        self.id = workflow_id
        self.start = start
        rng = random.Random(f"{seed}:workflow:{workflow_id}")
        projects = project_ids(seed)
        p = rng.randrange(len(projects))
        self.project_id = projects[p]
        self.legacy_project_id = str(4100 + p) if p < 2 else ""
        self.created_by = rng.choice(users(seed))
        self.created = -round(rng.uniform(3, 90) * 86400, 6)  # days before the start
        self.created_ts = timestamp_text(start, self.created)
        first_change = round(self.created * rng.uniform(0.0, 0.9), 6)  # before the start
        self.spec = json.dumps(
            {"version": 1, "blocks": rng.randint(3, 12), "aoi": f"AOI-{rng.randint(100, 9999)}"},
            separators=(",", ":"),
        ).encode()
        self._versions: list[WorkflowVersion] = [self._draw(0, first_change, None)]
        self._lock = threading.Lock()
        self._changes = EventTimes(f"{seed}:workflow-changes:{workflow_id}", change_every)

    def _draw(self, k: int, at: float, before: WorkflowVersion | None) -> WorkflowVersion:
        rng = random.Random(f"{self.seed}:workflow:{self.id}:version:{k}")
        if before is None:
            estimate = max(20, round(rng.lognormvariate(6.2, 0.35)))
            return WorkflowVersion(at, *self._naming(rng), estimate)
        kind = rng.choices(("rename", "estimate", "both"), weights=(4, 5, 1))[0]
        name, description = before.name, before.description
        if kind != "estimate":
            while (name, description) == (before.name, before.description):
                name, description = self._naming(rng)
        estimate = before.estimated_cost
        if kind != "rename":
            estimate = max(20, round(estimate * rng.uniform(0.85, 1.25)))
            estimate += 1 if estimate == before.estimated_cost else 0
        return WorkflowVersion(at, name, description, estimate)

    @staticmethod
    def _naming(rng: random.Random) -> tuple[str, str]:
        product, what = rng.choice(_PRODUCTS)
        region, cadence = rng.choice(_REGIONS), rng.choice(_CADENCES)
        return f"{product} — {region}", f"{what} over {region}, {cadence}."

    def version_at(self, t: float) -> WorkflowVersion:
        """The version shown at ``t`` real seconds after the start."""
        count = self._changes.count_until(t)
        with self._lock:
            while len(self._versions) <= count:
                k = len(self._versions)
                at = self._changes.time(k - 1)
                self._versions.append(self._draw(k, at, self._versions[-1]))
            return self._versions[count]

    def versions_until(self, t: float) -> list[WorkflowVersion]:
        """Every version shown up to ``t``, oldest first."""
        self.version_at(t)
        return self._versions[: self._changes.count_until(t) + 1]

    def item_at(self, t: float) -> dict[str, Any]:
        """The listWorkflows item at ``t``."""
        v = self.version_at(t)
        return {
            "id": self.id,
            "project_id": self.project_id,
            "legacy_project_id": self.legacy_project_id,
            "name": v.name,
            "created_by": self.created_by,
            "description": v.description,
            "created_at": self.created_ts,
            "updated_at": timestamp_text(self.start, v.at),
        }

    def detail_at(self, t: float) -> dict[str, Any]:
        """The getWorkflowsById body at ``t``."""
        item = self.item_at(t)
        return {
            "id": self.id,
            "name": item["name"],
            "created_by": self.created_by,
            "description": item["description"],
            "spec": list(self.spec),
            "created_at": self.created_ts,
            "updated_at": item["updated_at"],
            "val_errors": [],
            "project_id": self.project_id,
            "estimated_cost": self.version_at(t).estimated_cost,
        }


def change_every(time_scale: float, simulated: float = 3600.0) -> float:
    """Mean real seconds between a workflow's changes: an hour of simulated time by default."""
    return math.inf if simulated == math.inf else simulated / time_scale
