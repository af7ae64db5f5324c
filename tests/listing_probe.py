"""Measure the memory one large listJobs answer costs, in a process of its own.

``python tests/listing_probe.py JOBS [tracemalloc]`` serves a listJobs answer of ``JOBS`` realistic
summaries (about 300 bytes each: 100,000 make a 30 MB body) from a local server, lists it with the
HTTP client and prints ``{"growth_mb", "body_mb", "jobs", "retained_mb"}``: the peak resident set
above the baseline while listing, and what the resulting ``JobListing`` keeps. With
``tracemalloc`` the peak of traced allocations is given instead of the resident set (slower, but
exact and independent of the allocator). Its own process for the reason ``memory_probe`` gives.
"""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from http_helpers import Reply, ScriptedServer
from memory_probe import PeakGrowth

from archiver.api.client import ApiClient
from archiver.config import Settings

WORKFLOW = "wf-0a1b2c3d-4e5f-6789"


def summary(i: int) -> dict[str, Any]:
    """One listJobs item as the API documents it, with realistic lengths."""
    return {
        "created_by": f"user-{i % 37}@org.example",
        "id": f"job-{i:08d}-7c9e-4a1b-9f3e",
        "cost": 1000 + i % 5000,
        "workflow_id": WORKFLOW,
        "created_at": f"2026-10-01T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}Z",
        "updated_at": f"2026-10-02T{i % 24:02d}:{i % 60:02d}:{i % 59:02d}.{i % 999983:06d}Z",
        "finished_at": "0001-01-01T00:00:00Z" if i % 3 else "2026-10-02T11:00:00Z",
        "estimated_duration": 7200,
        "progress": f"{i % 101}%",
        "status": "running" if i % 3 else "completed",
        "time_taken": f"{i % 5}h{i % 60}m{i % 60}.5s",
    }


def main(jobs: int, traced: bool) -> dict[str, Any]:
    items = [summary(i) for i in range(jobs)]
    body = json.dumps({"jobs": items}, separators=(",", ":")).encode()  # compact, as Go writes
    del items
    settings = Settings(api_key="listing-probe-key-0123456789", max_retries=0, rate_limit=0.0)
    with ScriptedServer() as server:
        server.always(Reply(200, {"jobs": [summary(i) for i in range(10)]}))
        settings = settings.with_overrides(api_url=server.url)
        with ApiClient(settings) as client:
            client.list_jobs(WORKFLOW)  # sessions, imports, caches: not the listing's cost
            server.always(Reply(200, body, headers={"Content-Type": "application/json"}))
            gc.collect()
            if traced:
                tracemalloc.start()
                before = tracemalloc.get_traced_memory()[0]
                listing = client.list_jobs(WORKFLOW)
                after, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                growth, retained = (peak - before) / 1e6, (after - before) / 1e6
            else:
                with PeakGrowth() as measured:
                    listing = client.list_jobs(WORKFLOW)
                growth, retained = measured.growth_mb, float("nan")
    assert len(listing.jobs) == jobs and not listing.problems, listing.problems[:3]
    return {
        "jobs": jobs,
        "body_mb": round(len(body) / 1e6, 1),
        "growth_mb": round(growth, 1),
        "retained_mb": round(retained, 1),
        "measure": "tracemalloc" if traced else "rss",
    }


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]), sys.argv[2:3] == ["tracemalloc"])))
