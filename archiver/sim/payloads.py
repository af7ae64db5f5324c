"""A job plan evaluated at one instant: the API's JSON object for it (``job_payload``).

Kept apart from the drawing of plans (``archiver.sim.jobgen``): a plan is drawn once, then read
at many instants by the simulator, the tests and the benchmarks, and this is the hot part.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

from archiver.sim.jobgen import (
    TERMINAL_STATUSES,
    ZERO_TIME,
    JobPlan,
    TaskPlan,
    accrued_cost,
    duration_text,
    task_fraction,
    timestamp_text,
)


def state_time(plan: JobPlan, t: float, *, time_scale: float = 1.0) -> float:
    """The simulated instant whose state the payload at real time ``t`` shows.

    Equal results mean equal payloads, so callers can cache on it.
    """
    s = max(0.0, t) * time_scale
    last = plan.events[bisect.bisect_right(plan.events, s) - 1]
    if plan.started and plan.queue_delay <= s < plan.end:
        beat = (
            plan.queue_delay + math.floor((s - plan.queue_delay) / plan.heartbeat) * plan.heartbeat
        )
        return max(last, beat)
    return last


def _progress_text(plan: JobPlan, fraction: float) -> str:
    pct = fraction * 100
    if plan.decimal_progress:
        tenth = math.floor(pct * 10 + 1e-9) / 10
        return f"{tenth:.0f}%" if tenth.is_integer() else f"{tenth:.1f}%"
    return f"{math.floor(pct + 1e-9)}%"


def _shown(when: tuple[float | None, str], eff: float, stop: float) -> str:
    offset, text = when
    return text if offset is not None and offset <= eff and offset <= stop else ""


def task_phase(task: TaskPlan, eff: float) -> str:
    """ "queued", "running" or "final": only a running task's payload depends on ``eff``."""
    if eff >= task.stop:
        return "final"
    return "running" if eff >= task.start else "queued"


def task_payload(plan: JobPlan, task: TaskPlan, eff: float) -> dict[str, Any]:
    """One element of the payload's ``tasks`` at simulated instant ``eff`` (see ``payload_at``)."""
    if eff >= task.stop:
        status = task.final_status
    elif eff >= task.start:
        status = "running"
    else:
        status = "queued"
    final = status in TERMINAL_STATUSES
    ran = task.start < task.stop
    fraction = task_fraction(task, eff)
    if status == "completed":
        progress, taken, logs = 100, task.stop - task.start, task.log_start + task.log_end
    elif status == "queued":
        progress, taken, logs = 0, 0.0, b""
    else:
        progress = min(99, math.floor(fraction * 100 + 1e-9))
        taken = (task.stop if final else eff) - task.start if ran else 0.0
        logs = task.log_start + task.log_end if final else task.log_start
    if status == "queued":
        msg = "waiting for dependencies" if task.depends_on else "queued"
    elif status == "failed":
        msg = f"failed: {task.failure_type}"
    else:
        msg = {"running": f"processing ({progress}%)", "completed": "done"}.get(status, status)
    failed = status == "failed"
    updated = timestamp_text(plan.start, eff) if status == "running" else plan.created_ts
    return {
        "id": task.task_id,
        "info_logs": list(logs),
        "created_at": plan.created_ts,
        "updated_at": task.stop_ts if final else updated,
        "finished_at": task.stop_ts if final else ZERO_TIME,
        "estimated_time_duration": task.estimated_time_duration,
        "time_taken": duration_text(plan.duration_style, taken),
        "status": status,
        "state_msg": msg,
        "inputs": list(task.inputs),
        "result": list(task.result) if status == "completed" else [],
        "depends_on": list(task.depends_on),
        "name": task.name,
        "progress": progress,
        "disclaimer": list(task.disclaimer) if status == "completed" else [],
        "recv_time": _shown(task.recv, eff, task.stop),
        "send_time": _shown(task.send, eff, task.stop),
        "block_inf_start_time": _shown(task.inf_start, eff, task.stop),
        "block_inf_end_time": _shown(task.inf_end, eff, task.stop),
        "block_info": {"id": task.block[0], "name": task.block[1], "version": task.block[2]},
        "err_msg": task.err_msg if failed else "",
        "failure_type": task.failure_type if failed else "",
    }


def job_payload(plan: JobPlan, t: float, *, time_scale: float = 1.0) -> dict[str, Any]:
    """The API's JSON object for ``plan`` at ``t`` real seconds after the population's start.

    ``time_scale`` compresses the lifecycle: at 60, one real second is one simulated minute.
    Returns a fresh dict each call; callers may mutate it.
    """
    return payload_at(plan, state_time(plan, t, time_scale=time_scale))


SUMMARY_FIELDS = (
    "created_by",
    "id",
    "cost",
    "workflow_id",
    "created_at",
    "updated_at",
    "finished_at",
    "estimated_duration",
    "progress",
    "status",
    "time_taken",
)
"""A listJobs item's fields, in the provider's documented order."""


def _job_fields(plan: JobPlan, eff: float) -> dict[str, Any]:
    """The job-level fields that move with time: one computation for payloads and summaries, so
    a list summary and the job's payload at the same instant always agree."""
    eff_ts = timestamp_text(plan.start, eff) if eff > plan.created else plan.created_ts
    if eff >= plan.end:
        status = plan.outcome
    elif plan.started and eff >= plan.queue_delay:
        status = "running"
    else:
        status = "queued"
    executing = plan.started and eff >= plan.queue_delay
    if status == "completed":
        progress, cost = "100%", plan.final_cost
    else:
        work = sum(t.work_share * task_fraction(t, eff) for t in plan.tasks)
        progress = _progress_text(plan, min(work, 0.999))
        cost = (
            plan.final_cost if eff >= plan.end else accrued_cost(plan.total_cost, plan.tasks, eff)
        )
    if plan.reprice_at is not None and eff >= plan.reprice_at:
        cost = plan.repriced_cost
    taken = (min(eff, plan.end) - plan.queue_delay) if executing else 0.0
    return {
        "status": status,
        "time_taken": duration_text(plan.duration_style, taken),
        "cost": cost,
        "updated_at": eff_ts,
        "finished_at": plan.end_ts if eff >= plan.end else ZERO_TIME,
        "exec_created_at": plan.exec_start_ts if executing else ZERO_TIME,
        "exec_updated_at": (
            (plan.end_ts if eff >= plan.end else eff_ts) if executing else ZERO_TIME
        ),
        "progress": progress,
    }


def summary_at(plan: JobPlan, eff: float) -> dict[str, Any]:
    """The job's listJobs item at simulated instant ``eff`` (a ``state_time`` result)."""
    moving = _job_fields(plan, eff)
    fixed = {
        "created_by": plan.created_by,
        "id": plan.job_id,
        "workflow_id": plan.workflow_id,
        "created_at": plan.created_ts,
        "estimated_duration": plan.estimated_duration,
    }
    return {name: moving[name] if name in moving else fixed[name] for name in SUMMARY_FIELDS}


def payload_at(plan: JobPlan, eff: float, *, with_tasks: bool = True) -> dict[str, Any]:
    """The payload at simulated instant ``eff``, which must be a ``state_time`` result.

    ``with_tasks=False`` leaves ``tasks`` empty, for callers that cache per-task fragments.
    """
    moving = _job_fields(plan, eff)
    return {
        "created_by": plan.created_by,
        "status": moving["status"],
        "time_taken": moving["time_taken"],
        "id": plan.job_id,
        "tasks": [task_payload(plan, task, eff) for task in plan.tasks] if with_tasks else [],
        "val_errors": [
            {
                "from": v.source,
                "to": v.target,
                "err": v.err,
                "reason": v.reason,
                "component_name": v.component_name,
            }
            for v in plan.val_errors
            if v.appear <= eff < v.resolve
        ],
        "spec": list(plan.spec),
        "cost": moving["cost"],
        "workflow_id": plan.workflow_id,
        "updated_at": moving["updated_at"],
        "finished_at": moving["finished_at"],
        "exec_created_at": moving["exec_created_at"],
        "exec_updated_at": moving["exec_updated_at"],
        "created_at": plan.created_ts,
        "estimated_duration": plan.estimated_duration,
        "progress": moving["progress"],
    }
