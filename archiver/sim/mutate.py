"""One realistic change to an arbitrary payload, for the benchmarks' mutated re-archives."""

from __future__ import annotations

import copy
import math
import random
from datetime import datetime, timedelta
from typing import Any

from archiver.sim.jobgen import TERMINAL_STATUSES

_NEXT_STATUS = {"queued": ("running",), "running": ("completed", "failed", "cancelled")}


def _bump_time(value: Any, seconds: float) -> Any:
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return value
    if when.year <= 1:
        return value
    return (when + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _mutate_tasks(tasks: list[Any], rng: random.Random, now: str) -> None:
    for task in rng.sample(tasks, min(len(tasks), rng.randint(1, 3))):
        if not isinstance(task, dict):
            continue
        status = task.get("status")
        raw_progress = task.get("progress")
        progress = raw_progress if isinstance(raw_progress, int) else 0
        if status in ("queued", "running") and progress < 95:
            task.update(status="running", progress=min(99, progress + rng.randint(1, 30)))
        elif status in ("queued", "running"):
            task.update(status="completed", progress=100, finished_at=now)
        else:
            task["state_msg"] = f"{task.get('state_msg', '')} (re-checked)".strip()
        task["updated_at"] = now


def mutate(payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A deep copy of ``payload`` with one to three realistic changes; the input is untouched.

    Always changes something (at least ``cost``) and moves ``updated_at`` forward.
    """
    out = copy.deepcopy(payload)
    out["updated_at"] = _bump_time(out.get("updated_at"), rng.uniform(1, 600))
    now = out["updated_at"]
    kinds = rng.sample(("status", "cost", "progress", "tasks"), rng.randint(1, 3))
    status = out.get("status")
    if "status" in kinds and status in _NEXT_STATUS:
        out["status"] = rng.choice(_NEXT_STATUS[status])
        if out["status"] in TERMINAL_STATUSES:
            out["finished_at"] = now
        if out["status"] == "completed":
            out["progress"] = "100%"
    if "progress" in kinds and out.get("status") != "completed":
        try:
            pct = float(str(out.get("progress", "0")).rstrip("%"))
        except ValueError:
            pct = 0.0
        out["progress"] = f"{min(99, math.floor(pct) + rng.randint(1, 20))}%"
    if "tasks" in kinds and isinstance(out.get("tasks"), list) and out["tasks"]:
        _mutate_tasks(out["tasks"], rng, now)
    if "cost" in kinds or _same(out, payload):
        raw_cost = out.get("cost")
        cost = raw_cost if isinstance(raw_cost, int) else 0
        delta = rng.randint(1, max(2, cost // 5))
        out["cost"] = cost + delta if cost - delta < 0 or rng.random() < 0.7 else cost - delta
    return out


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal apart from ``updated_at`` (which alone is not a realistic change)."""
    return {k: v for k, v in a.items() if k != "updated_at"} == {
        k: v for k, v in b.items() if k != "updated_at"
    }
