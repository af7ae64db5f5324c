"""Hand-written payload builders for tests: realistic shape, every field under test control."""

from __future__ import annotations

import copy
from typing import Any


def task(task_id: str, *, depends_on: list[str] | None = None, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": task_id,
        "name": f"step {task_id}",
        "status": "running",
        "progress": 50,
        "created_at": "2026-10-01T10:00:00Z",
        "updated_at": "2026-10-01T10:05:00.123456Z",
        "finished_at": "0001-01-01T00:00:00Z",
        "estimated_time_duration": 600,
        "time_taken": "5m0s",
        "state_msg": "processing tile 3/6",
        "err_msg": "",
        "failure_type": "",
        "inputs": [123, 34],
        "result": [],
        "info_logs": [1, 2, 3],
        "disclaimer": ["beta block"],
        "recv_time": "2026-10-01T10:00:01Z",
        "send_time": "2026-10-01T10:00:02Z",
        "block_inf_start_time": "2026-10-01T10:00:03Z",
        "block_inf_end_time": "",
        "depends_on": depends_on or [],
        "block_info": {"id": f"blk-{task_id}", "name": "ortho-rectify", "version": "1.4.2"},
    }
    body.update(overrides)
    return body


def job(
    job_id: str = "job-1",
    workflow_id: str = "wf-1",
    *,
    tasks: int = 20,
    val_errors: int = 3,
    **overrides: Any,
) -> dict[str, Any]:
    """A running job with ``tasks`` tasks in a chain-ish DAG and ``val_errors`` errors."""
    ids = [f"t{i:02d}" for i in range(tasks)]
    body: dict[str, Any] = {
        "id": job_id,
        "workflow_id": workflow_id,
        "created_by": "user-7",
        "status": "running",
        "progress": "42%",
        "cost": 1200,
        "time_taken": "1h2m3.5s",
        "estimated_duration": 7200,
        "created_at": "2026-10-01T09:59:00Z",
        "updated_at": "2026-10-01T10:05:00Z",
        "finished_at": "0001-01-01T00:00:00Z",
        "exec_created_at": "2026-10-01T10:00:00+00:00",
        "exec_updated_at": "2026-10-01 10:05:00",
        "spec": [123, 34, 97, 34, 58, 49, 125],
        "tasks": [
            task(tid, depends_on=ids[max(0, i - 2) : i] if i else []) for i, tid in enumerate(ids)
        ],
        "val_errors": [
            {
                "from": f"comp-{i}",
                "to": f"comp-{i + 1}",
                "err": "type mismatch",
                "reason": f"output {i} is raster, input expects vector",
                "component_name": f"comp-{i}",
            }
            for i in range(val_errors)
        ],
    }
    body.update(overrides)
    return body


def evolve(payload: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy with top-level changes applied (tasks can be edited on the copy)."""
    new = copy.deepcopy(payload)
    new.update(changes)
    return new
