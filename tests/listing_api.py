"""A small in-memory Pixxel API for ``ScriptedServer``: workflows, their jobs, estimates.

Serves the four read endpoints discovery uses (listWorkflows with offset/limit/id/project_id,
listJobs, estimate, a job) from dicts a test edits between passes, and any path's answer can be
replaced by a scripted ``Reply`` (an error, a bad body). Requests are counted by the server
(``ScriptedServer.requests``); ``kinds`` sorts them into the endpoints.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote

from factories import job as job_payload
from http_helpers import Recorded, Reply, error

SUMMARY_KEYS = (
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


class FakeApi:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.workflows: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, dict[str, Any]]] = {}
        self.estimates: dict[str, int] = {}
        self.override: dict[str, Reply] = {}  # path (without query) -> the answer

    def add_workflow(self, workflow_id: str, *, project_id: str = "p-1", **fields: Any) -> None:
        self.workflows[workflow_id] = {
            "id": workflow_id,
            "project_id": project_id,
            "legacy_project_id": None,
            "name": f"name of {workflow_id}",
            "created_by": "user-1",
            "description": "a workflow",
            "created_at": "2026-09-01T00:00:00Z",
            "updated_at": "2026-09-01T00:00:00Z",
            **fields,
        }
        self.jobs.setdefault(workflow_id, {})
        self.estimates.setdefault(workflow_id, 1000)

    def add_job(self, workflow_id: str, job_id: str, **overrides: Any) -> dict[str, Any]:
        body = job_payload(job_id, workflow_id, tasks=2, val_errors=0, **overrides)
        self.jobs.setdefault(workflow_id, {})[job_id] = body
        return body

    def __call__(self, request: Recorded) -> Reply:
        path, _, query = request.path.partition("?")
        with self.lock:
            if path in self.override:
                return self.override[path]
            parts = [unquote(p) for p in path.split("/")]
            if parts[1:3] != ["v0", "workflows"]:
                return error(404, "not_found", "no such route")
            if len(parts) == 3:
                return self._list_workflows(parse_qs(query))
            wf = parts[3]
            if wf not in self.workflows:
                return error(404, "not_found", f"workflow {wf} not found")
            if len(parts) == 5 and parts[4] == "jobs":
                jobs = [{k: j.get(k) for k in SUMMARY_KEYS} for j in self.jobs.get(wf, {}).values()]
                return Reply(200, {"jobs": jobs})
            if len(parts) == 5 and parts[4] == "estimate":
                return Reply(200, {"estimated_cost": self.estimates[wf]})
            if len(parts) == 6 and parts[4] == "jobs" and parts[5] in self.jobs.get(wf, {}):
                return Reply(200, self.jobs[wf][parts[5]])
            return error(404, "not_found", "no such job")

    def _list_workflows(self, query: dict[str, list[str]]) -> Reply:
        offset = int(query.get("offset", ["0"])[0])
        limit = int(query.get("limit", ["50"])[0])
        rows = sorted(self.workflows.values(), key=lambda w: w["id"])
        if "id" in query:
            rows = [w for w in rows if w["id"] == query["id"][0]]
        if "project_id" in query:
            rows = [w for w in rows if w["project_id"] == query["project_id"][0]]
        page = rows[offset : offset + limit]
        return Reply(
            200,
            {
                "workflows": page,
                "pagination": {"limit": limit, "offset": offset, "total": len(rows)},
            },
        )


def kind(request: Recorded) -> str:
    """Which endpoint a request asked: list_workflows, describe, list_jobs, estimate, job."""
    path, _, query = request.path.partition("?")
    parts = path.split("/")
    if len(parts) == 3:
        return "describe" if "id=" in query else "list_workflows"
    if len(parts) == 5:
        return "list_jobs" if parts[4] == "jobs" else "estimate"
    return "job"


def kinds(requests: Sequence[Recorded]) -> Counter[str]:
    return Counter(kind(r) for r in requests)


def listed(requests: Sequence[Recorded]) -> Counter[str]:
    """listJobs requests per workflow id."""
    return Counter(
        unquote(r.path.split("?")[0].split("/")[3]) for r in requests if kind(r) == "list_jobs"
    )
