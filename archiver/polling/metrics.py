"""Prometheus metrics and the ``/healthz`` check of ``archiver run``.

Every label has a small, fixed set of values (outcomes, reasons, status codes, states): no per-job
label, so the number of series stays the same whether 10 or 10 million jobs are tracked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from archiver.polling.sync import JobOutcome, SyncSummary

TRACKED_STATES = ("active", "settling", "settled", "paused", "untracked")


class Metrics:
    """The daemon's metrics, in a registry of their own (tests can create as many as they like)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.passes = Counter(
            "archiver_passes", "Sync passes by result (ok, failed).", ["result"], registry=r
        )
        self.jobs = Counter(
            "archiver_jobs",
            "Jobs handled by outcome (new, changed, unchanged, stale, failed, skipped, lost).",
            ["outcome"],
            registry=r,
        )
        self.failures = Counter(
            "archiver_job_failures", "Failed jobs by reason.", ["reason"], registry=r
        )
        self.changes = Counter("archiver_changes", "Change rows recorded.", registry=r)
        self.listings = Counter(
            "archiver_workflow_listings",
            "Watched workflows' job listings by result (ok, failed).",
            ["result"],
            registry=r,
        )
        self.discovered = Counter(
            "archiver_listed_jobs",
            "Jobs a listing made due, by why (new: not tracked before; changed: summary moved).",
            ["reason"],
            registry=r,
        )
        self.bad_items = Counter(
            "archiver_bad_list_items", "List items that could not be used.", registry=r
        )
        self.requests = Counter(
            "archiver_api_requests",
            "API requests by HTTP status ('none': no answer).",
            ["status"],
            registry=r,
        )
        self.api_errors = Counter(
            "archiver_api_errors",
            "API errors by status and reason.",
            ["status", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            "archiver_api_request_seconds",
            "API request latency.",
            registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.pass_seconds = Histogram(
            "archiver_pass_duration_seconds",
            "Duration of sync passes.",
            registry=r,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
        )
        self.last_success = Gauge(
            "archiver_last_successful_pass_timestamp_seconds",
            "Unix time of the end of the last pass that completed.",
            registry=r,
        )
        self.tracked = Gauge(
            "archiver_tracked_jobs", "Tracked jobs by state.", ["state"], registry=r
        )
        self.key_rejected = Gauge(
            "archiver_api_key_rejected", "1 while the API rejects the key.", registry=r
        )
        for state in TRACKED_STATES:
            self.tracked.labels(state)

    def observe_request(self, status: int | None, reason: str, seconds: float) -> None:
        label = str(status) if status is not None else "none"
        self.requests.labels(label).inc()
        self.latency.observe(seconds)
        if status != 200:
            self.api_errors.labels(label, reason).inc()

    def observe_job(self, outcome: JobOutcome) -> None:
        self.jobs.labels(outcome.outcome).inc()
        if outcome.outcome == "failed":
            self.failures.labels(outcome.reason or "unknown").inc()

    def observe_pass(self, summary: SyncSummary | None, seconds: float) -> None:
        self.pass_seconds.observe(seconds)
        self.passes.labels("ok" if summary is not None else "failed").inc()
        if summary is not None:
            self.changes.inc(summary.changes)
            self.last_success.set(time.time())
            listing = summary.listing
            if listing is not None:
                self.listings.labels("ok").inc(listing.workflows_listed)
                self.listings.labels("failed").inc(listing.list_failed)
                self.discovered.labels("new").inc(listing.jobs_discovered)
                self.discovered.labels("changed").inc(listing.jobs_changed)
                self.bad_items.inc(listing.bad_items)

    def set_tracked(self, counts: dict[str, int]) -> None:
        for state in TRACKED_STATES:
            self.tracked.labels(state).set(counts.get(state, 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class Health:
    """What ``/healthz`` reports; updated by the daemon, read by the HTTP thread."""

    interval: float
    started: float = field(default_factory=time.time)
    last_success: float | None = None
    key_rejected: str | None = None
    api_unusable: str | None = None  # why passes stop at their first requests
    database_error: str | None = None
    check_database: Callable[[], str | None] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def problems(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        found: list[str] = []
        database = self.check_database() if self.check_database else self.database_error
        if database:
            found.append(f"database: {database}")
        if self.key_rejected:
            found.append(f"API key rejected: {self.key_rejected}")
        if self.api_unusable:
            found.append(f"API unreachable or wrong URL: {self.api_unusable}")
        since = self.last_success if self.last_success is not None else self.started
        if now - since > 3 * self.interval:
            what = "last successful pass" if self.last_success else "no successful pass since start"
            found.append(f"{what} {now - since:.0f}s ago (more than 3 intervals)")
        return found

    def report(self) -> tuple[int, dict[str, Any]]:
        problems = self.problems()
        body = {
            "status": "failing" if problems else "ok",
            "problems": problems,
            "last_successful_pass": self.last_success,
        }
        return (503 if problems else 200), body


class MonitoringServer:
    """``/metrics`` (Prometheus text) and ``/healthz`` (JSON, 200 or 503) on one port."""

    def __init__(self, metrics: Metrics, health: Health, host: str, port: int) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    self._send(200, owner.metrics.render(), CONTENT_TYPE_LATEST)
                elif self.path.split("?")[0] == "/healthz":
                    status, body = owner.health.report()
                    self._send(status, json.dumps(body).encode(), "application/json")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.metrics = metrics
        self.health = health
        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="archiver-monitoring", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> MonitoringServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
