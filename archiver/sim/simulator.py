"""A local fake of the Pixxel jobs endpoint, so the archiver can be demoed, tested and benchmarked
without credentials, network access or a provider's rate limits.

It serves, for a seeded population of ``archiver.sim.jobgen`` jobs in ``archiver.sim.workflows``
workflows whose lifecycles advance with an injectable clock:

- ``GET /v0/workflows/{workflow_id}/jobs/{job_id}`` (a job);
- ``GET /v0/workflows?offset=&limit=&project_id=&id=&name=&created_by=&created_on=&updated_at=``
  (listWorkflows: always a pagination block, default limit 50);
- ``GET /v0/workflows/{workflow_id}?project_id=`` (getWorkflowsById, with ``estimated_cost``);
- ``GET /v0/workflows/{workflow_id}/estimate`` (``{"estimated_cost": int}``);
- ``GET /v0/workflows/{workflow_id}/jobs?status=&created_by=&id=&created_on=`` (listJobs: job
  summaries, no pagination, equal to the job's own payload at the same instant).

Time: plans are drawn ``time_scale`` times faster (``jobgen.plan_job(pace=...)``) and evaluated
in real seconds, so every timestamp served is at most ``start`` plus the real seconds elapsed,
and ``time_taken`` agrees with the periods an observer sees. New jobs keep appearing
(``new_jobs_per_minute``): a job is neither listed nor served (404) before it is created.

It answers auth and routing errors with the documented ``{"error": {...}}`` bodies, and can
inject the faults a real API shows (5xx, 429 with ``Retry-After``, latency, malformed 200s,
dropped connections) on every ``/v0/`` route. Every fault decision is a hash of (seed, request
path, how many times that path was asked), so a run is reproducible whatever the thread
interleaving. It binds loopback only: it is a test double, not a service. Stdlib only (no
requests, no SQLAlchemy), so the simulator never drags the archiver in.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import hmac
import ipaddress
import json
import math
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from archiver.errors import ConfigError
from archiver.sim import jobgen, listing, payloads
from archiver.sim.events import EventTimes
from archiver.sim.workflows import WorkflowPlan, change_every

JOB_PATH_PREFIX = "/v0/workflows/"
WORKFLOWS_PATH = "/v0/workflows"
IDS_PATH = "/_sim/jobs"
MALFORMED_KINDS = ("truncated", "html", "error_body", "wrong_job")


@dataclass(frozen=True)
class Faults:
    """Fault injection for job requests; all off by default.

    Rates are fractions of ``/v0/`` requests and are exclusive slices of one draw, so their sum
    must be at most 1. ``malformed_rate`` only hits requests that would otherwise have been a 200.
    """

    error_rate: float = 0.0  # answered 500, 502 or 503
    rate_limit_rate: float = 0.0  # answered 429 with Retry-After: retry_after
    retry_after: int = 1
    latency: float = 0.0  # seconds added to every job request ...
    latency_jitter: float = 0.0  # ... plus uniform(0, latency_jitter)
    malformed_rate: float = 0.0  # 200 with a truncated/HTML/error/other-job body
    drop_rate: float = 0.0  # connection closed without an answer

    def __post_init__(self) -> None:
        rates = (self.error_rate, self.rate_limit_rate, self.malformed_rate, self.drop_rate)
        if any(not 0.0 <= r <= 1.0 for r in rates) or sum(rates) > 1.0 + 1e-9:
            raise ConfigError("fault rates must be in [0, 1] and sum to at most 1")
        if self.latency < 0 or self.latency_jitter < 0 or self.retry_after < 0:
            raise ConfigError("latency, latency_jitter and retry_after must not be negative")


@dataclass
class _Job:
    """A drawn plan and its rendering cache."""

    plan: jobgen.JobPlan
    # (state_time, body) in one attribute: a reader never pairs a new time with an old body
    state: tuple[float, bytes]
    tasks: list[tuple[str, str] | None]  # (phase, JSON) of tasks in a time-independent phase
    summary: tuple[float, dict[str, Any], str] = (math.nan, {}, "")  # listJobs item and its JSON


def _dumps(doc: Any) -> str:
    # the first key that can hold '"tasks":[]' is "tasks" itself: strings escape their quotes
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Response:
    """One answer of the fake API (what ``Simulator.respond`` decided, before HTTP framing)."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def _error(status: int, code: str, message: str, details: Any = None) -> Response:
    doc = {"error": {"code": code, "message": message, "details": details}}
    return Response(status, json.dumps(doc).encode())


def _html(status: int, title: str) -> bytes:
    return (
        f"<!DOCTYPE html><html><head><title>{title}</title></head>"
        f"<body><center><h1>{title}</h1></center><hr><center>nginx</center></body></html>\n"
    ).encode()


def _uniforms(key: str, count: int) -> list[float]:
    digest = hashlib.blake2b(key.encode(), digest_size=8 * count).digest()
    return [int.from_bytes(digest[i : i + 8], "big") / 2**64 for i in range(0, 8 * count, 8)]


class Simulator:
    """A seeded population of jobs and the HTTP fake that serves it."""

    def __init__(
        self,
        seed: int = 0,
        jobs: int = 50,
        api_key: str = "sim-key",
        time_scale: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        faults: Faults | None = None,
        tasks: tuple[int, int] = (10, 30),
        *,
        workflows: int = 8,
        forbidden: Iterable[tuple[str, str]] = (),
        ids: Sequence[tuple[str, str]] | None = None,
        start: datetime = jobgen.DEFAULT_START,
        cache_jobs: int = 2048,
        new_jobs_per_minute: float = 0.0,
        workflow_changes: float = 3600.0,
    ) -> None:
        """``time_scale`` makes lifecycles that many times shorter than drawn (60: a job drawn to
        run 20 minutes runs 20 real seconds and says so); timestamps follow ``clock`` from
        ``start``. ``jobs`` exist at the start; ``new_jobs_per_minute`` more appear on average
        each real minute after it (at deterministic instants), each in an existing workflow.
        ``ids`` replaces the generated (workflow_id, job_id) pairs of the starting jobs (e.g. ids
        needing escapes); ``forbidden`` jobs answer 403 ``forbidden``; ``start`` is the instant
        at which the simulation starts (timestamps served are never later than ``start`` plus the
        real seconds elapsed). ``workflow_changes``: mean *simulated* seconds between a
        workflow's renames or re-estimates (``math.inf``: never)."""
        if time_scale <= 0:
            raise ConfigError("time_scale must be positive")
        if not 0 <= new_jobs_per_minute < math.inf:
            raise ConfigError("new_jobs_per_minute must be a non-negative number")
        if not workflow_changes > 0:
            raise ConfigError("workflow_changes must be positive (math.inf: never)")
        if not 1 <= tasks[0] <= tasks[1]:
            raise ConfigError(f"tasks must be (min, max) with 1 <= min <= max, not {tasks!r}")
        self.seed = seed
        self.api_key = api_key
        self.time_scale = time_scale
        self.faults = faults or Faults()
        self._clock = clock
        self._t0 = clock()
        self.start = start
        self._plan_args: dict[str, Any] = {"tasks": tasks, "workflows": workflows, "start": start}
        self._plan_args["pace"] = time_scale
        if ids is not None:
            self._keys = list(ids)
        else:
            self._keys = [jobgen.job_ids(seed, i, workflows=workflows) for i in range(jobs)]
        self._initial = len(self._keys)
        self._index = {key: i for i, key in enumerate(self._keys)}
        generated = [jobgen.workflow_id(seed, w) for w in range(max(1, workflows))]
        names = dict.fromkeys([w for w, _ in self._keys] if ids is not None else generated)
        every = change_every(time_scale, workflow_changes)
        self._workflows = {w: WorkflowPlan(seed, w, start, every) for w in names}
        self._by_workflow: dict[str, list[int]] = {w: [] for w in self._workflows}
        for i, (w, _) in enumerate(self._keys):
            self._by_workflow.setdefault(w, []).append(i)
        self.new_jobs_per_minute = new_jobs_per_minute
        every_job = 60.0 / new_jobs_per_minute if new_jobs_per_minute > 0 else math.inf
        self._arrivals = EventTimes(f"{seed}:arrivals", every_job)
        self.forbidden = frozenset(forbidden)
        # Tests may change these while serving: a workflow the key may not see (403 on every
        # route under it, left out of listWorkflows), and one that was deleted (404, likewise).
        self.forbidden_workflows: set[str] = set()
        self.gone_workflows: set[str] = set()
        # Plans are drawn lazily (about 1 ms each) and kept with their rendering cache for the
        # cache_jobs most recently asked jobs (about 80 KB each with 10-30 tasks).
        self.cache_jobs = max(1, cache_jobs)
        self._jobs: OrderedDict[int, _Job] = OrderedDict()
        self._lock = threading.Lock()
        self._asked: dict[str, int] = {}

    # --- the population ------------------------------------------------------------------

    def job_ids(self, t: float | None = None) -> list[tuple[str, str]]:
        """(workflow_id, job_id) of every job created by now (or by ``t``), in creation order
        of the new ones after the starting ones."""
        return self._keys[: self._existing(self.elapsed() if t is None else t)]

    def workflow_ids(self) -> list[str]:
        """Every workflow's id, in listing order."""
        return list(self._workflows)

    def workflow(self, workflow_id: str) -> WorkflowPlan | None:
        """The workflow's plan (its versions over time), or None for an unknown id."""
        return self._workflows.get(workflow_id)

    def elapsed(self) -> float:
        """Real seconds since the population started (by the injected clock)."""
        return self._clock() - self._t0

    def created_at(self, index: int) -> float:
        """When job ``index`` is created, in real seconds after the start (negative: before)."""
        if index < self._initial:
            return -math.inf  # drawn at some minutes before the start: exists from the start
        return self._arrivals.time(index - self._initial)

    def _existing(self, t: float) -> int:
        """How many jobs exist at ``t``; the index learns the ids of those that appeared."""
        count = self._initial + self._arrivals.count_until(t)
        if count > len(self._keys):
            with self._lock:
                for i in range(len(self._keys), count):
                    key = self._new_key(i)
                    self._keys.append(key)
                    self._index[key] = i
                    self._by_workflow[key[0]].append(i)
        return count

    def _new_key(self, index: int) -> tuple[str, str]:
        """(workflow_id, job_id) of a job appearing after the start: an existing workflow."""
        wf_ids = list(self._workflows)
        workflow_id, job_id = jobgen.job_ids(self.seed, index, workflows=len(wf_ids))
        if workflow_id not in self._workflows:  # the starting ids were given: pick among them
            pick = int(hashlib.blake2b(f"{self.seed}:{index}".encode()).hexdigest(), 16)
            workflow_id = wf_ids[pick % len(wf_ids)]
        return workflow_id, job_id

    def plan(self, index: int) -> jobgen.JobPlan:
        """The plan of job ``index`` (cached; drawing one takes about a millisecond)."""
        return self._job(index).plan

    def _draw(self, index: int) -> jobgen.JobPlan:
        created = None if index < self._initial else self.created_at(index)
        return jobgen.plan_job(
            self.seed, index, ids=self._keys[index], created_at=created, **self._plan_args
        )

    def _job(self, index: int) -> _Job:
        with self._lock:
            job = self._jobs.get(index)
            if job is not None:
                self._jobs.move_to_end(index)
                return job
        # drawn outside the lock: a race only draws the same pure plan twice
        plan = self._draw(index)
        job = _Job(plan, (math.nan, b""), [None] * len(plan.tasks))
        with self._lock:
            job = self._jobs.setdefault(index, job)
            while len(self._jobs) > self.cache_jobs:
                self._jobs.popitem(last=False)
        return job

    def _lookup(self, workflow_id: str, job_id: str, t: float) -> int | None:
        """The index of a job that exists at ``t``, else None."""
        self._existing(t)
        index = self._index.get((workflow_id, job_id))
        if index is None or self.created_at(index) > t:
            return None
        return index

    def payload(
        self, workflow_id: str, job_id: str, *, t: float | None = None
    ) -> dict[str, Any] | None:
        """The job's payload now (or at ``t`` real seconds), or None for a job unknown then."""
        when = self.elapsed() if t is None else t
        index = self._lookup(workflow_id, job_id, when)
        if index is None:
            return None
        return payloads.job_payload(self.plan(index), when)

    def payload_bytes(self, index: int, t: float) -> bytes:
        """The JSON body for job ``index`` at ``t``, re-rendered only when the job's state moved.

        Encoding dominates rendering (the byte-array fields), so besides the whole body the cache
        keeps the JSON of every task whose part no longer depends on time (queued or final):
        a running job re-encodes only its running tasks and its job-level fields.
        """
        entry = self._job(index)
        plan = entry.plan
        eff = payloads.state_time(plan, t)
        if entry.state[0] == eff:
            return entry.state[1]
        parts = []
        for i, task in enumerate(plan.tasks):
            phase = payloads.task_phase(task, eff)
            cached = entry.tasks[i]
            if cached is not None and cached[0] == phase:
                parts.append(cached[1])
                continue
            text = _dumps(payloads.task_payload(plan, task, eff))
            if phase != "running":
                entry.tasks[i] = (phase, text)
            parts.append(text)
        head = _dumps(payloads.payload_at(plan, eff, with_tasks=False))
        body = head.replace('"tasks":[]', '"tasks":[' + ",".join(parts) + "]", 1).encode()
        entry.state = (eff, body)
        return body

    def summary(self, index: int, t: float) -> tuple[dict[str, Any], str]:
        """Job ``index``'s listJobs item at ``t`` and its JSON (cached until the state moves).

        Callers must not mutate the dict. Subclasses that replace ``payload_bytes`` replace this
        too, so that the list and the job endpoint keep agreeing."""
        entry = self._job(index)
        eff = payloads.state_time(entry.plan, t)
        cached = entry.summary
        if cached[0] == eff:
            return cached[1], cached[2]
        doc = payloads.summary_at(entry.plan, eff)
        entry.summary = (eff, doc, _dumps(doc))
        return doc, entry.summary[2]

    def jobs_of(self, workflow_id: str, t: float) -> list[int]:
        """Indexes of the workflow's jobs that exist at ``t``, oldest first."""
        self._existing(t)
        with self._lock:
            indexes = list(self._by_workflow.get(workflow_id, ()))
        return [i for i in indexes if self.created_at(i) <= t]

    def settle_time(self) -> float:
        """Real seconds after the start from which no starting job's payload changes any more
        (jobs appearing later, with ``new_jobs_per_minute``, settle later)."""
        # drawn without caching, so that a large population does not flush the cache
        last = max((self._draw(i).settled_at for i in range(self._initial)), default=0.0)
        return max(0.0, last)

    def write_ids_csv(self, path: str | Path) -> None:
        """Write ``workflow_id,job_id`` lines with a header, for ``archiver track --file``."""
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(("workflow_id", "job_id"))
            writer.writerows(self.job_ids())

    # --- HTTP ----------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> SimServer:
        """Start serving in a background thread; refuses anything but a loopback address."""
        family, address = _loopback(host)
        server_cls = type("_BoundServer", (_HTTPServer,), {"address_family": family})
        httpd = server_cls((address, port), _Handler)
        httpd.sim = self
        return SimServer(httpd)

    def _decide(self, path: str) -> tuple[str, float, float]:
        """(fault kind, a uniform for sub-choices, latency) for this request of ``path``."""
        with self._lock:
            n = self._asked.get(path, 0)
            self._asked[path] = n + 1
        u, sub, jitter = _uniforms(f"{self.seed}:{path}:{n}", 3)
        f = self.faults
        delay = f.latency + f.latency_jitter * jitter
        for kind, rate in (
            ("drop", f.drop_rate),
            ("error", f.error_rate),
            ("rate_limit", f.rate_limit_rate),
            ("malformed", f.malformed_rate),
        ):
            if u < rate:
                return kind, sub, delay
            u -= rate
        return "ok", sub, delay

    def respond(self, method: str, raw_path: str, authorization: str | None) -> Response | None:
        """The answer to one request, or None to drop the connection."""
        path, _, query = raw_path.partition("?")
        if path == IDS_PATH and method == "GET":
            ids = [{"workflow_id": w, "job_id": j} for w, j in self.job_ids()]
            return Response(200, json.dumps(ids).encode())
        if not path.startswith("/v0/"):
            return _error(404, "not_found", "no such route")
        kind, sub, delay = self._decide(path)
        if delay > 0:
            time.sleep(delay)
        if kind == "drop":
            return None
        if kind == "error":
            return _server_error(sub)
        if kind == "rate_limit":
            headers = (("Retry-After", str(self.faults.retry_after)),)
            limited = _error(429, "rate_limited", "too many requests")
            return Response(429, limited.body, headers=headers)
        t = self.elapsed()  # one instant per request: a list and its items agree
        answer, target = self._route(method, path, query, authorization, t)
        if kind == "malformed" and answer.status == 200 and target is not None:
            return self._malformed(answer.body, target, sub, t)
        return answer

    def _route(
        self, method: str, path: str, query: str, authorization: str | None, t: float
    ) -> tuple[Response, _Target | None]:
        """The answer, and what it was about (for a malformed variant of a 200)."""
        if method != "GET":
            return _error(405, "method_not_allowed", f"{method} is not allowed"), None
        auth = (authorization or "").strip()
        if auth[:7].lower() == "bearer ":
            auth = auth[7:].strip()
        if not auth or not hmac.compare_digest(auth.encode(), self.api_key.encode()):
            return _error(403, "invalid_api_key", "the API key is not valid"), None
        if path in (WORKFLOWS_PATH, JOB_PATH_PREFIX):
            parts: list[str] = []
        elif path.startswith(JOB_PATH_PREFIX):
            parts = path[len(JOB_PATH_PREFIX) :].split("/")
        else:
            return _error(400, "bad_request", f"no route {path}"), None
        try:
            parts = [unquote(p, errors="strict") for p in parts]
            params = listing.parse_query(query)
        except UnicodeDecodeError:
            return _error(400, "bad_request", "path is not valid percent-encoded UTF-8"), None
        except listing.BadQuery as exc:
            return _error(400, "bad_request", str(exc)), None
        if any(not p for p in parts):
            return _error(400, "bad_request", "workflow_id and job_id must not be empty"), None
        try:
            if not parts:
                return self._list_workflows(params, t), ("workflows", "")
            if parts[0] in self.forbidden_workflows:
                return _error(403, "forbidden", "no access to this workflow or job"), None
            if parts[0] in self.gone_workflows:
                details = {"workflow_id": parts[0]}
                return _error(404, "not_found", "workflow not found", details), None
            if len(parts) == 3 and parts[1] == "jobs":
                return self._job_route(parts[0], parts[2], t)
            workflow = self._workflows.get(parts[0])
            if len(parts) > 2 or (len(parts) == 2 and parts[1] not in ("jobs", "estimate")):
                return _error(
                    400,
                    "bad_request",
                    "expected /v0/workflows/{workflow_id}[/estimate|/jobs[/{job_id}]]",
                ), None
            if workflow is None or (
                params.get("project_id") and params["project_id"] != workflow.project_id
            ):
                details = {"workflow_id": parts[0]}
                return _error(404, "not_found", "workflow not found", details), None
            if len(parts) == 1:
                return _json(workflow.detail_at(t)), ("workflow", workflow.id)
            if parts[1] == "estimate":
                doc = {"estimated_cost": workflow.version_at(t).estimated_cost}
                return _json(doc), ("estimate", workflow.id)
            return self._list_jobs(workflow.id, params, t), ("jobs", workflow.id)
        except listing.BadQuery as exc:
            return _error(400, "bad_request", str(exc)), None

    def _job_route(
        self, workflow_id: str, job_id: str, t: float
    ) -> tuple[Response, _Target | None]:
        key = (workflow_id, job_id)
        if key in self.forbidden:
            return _error(403, "forbidden", "no access to this workflow or job"), None
        index = self._lookup(workflow_id, job_id, t)
        if index is None:
            details = {"workflow_id": workflow_id, "job_id": job_id}
            return _error(404, "not_found", "job not found", details), None
        return Response(200, self.payload_bytes(index, t)), ("job", index)

    def _list_workflows(self, params: dict[str, str], t: float) -> Response:
        keep = listing.item_filter(params, listing.WORKFLOW_FILTERS)
        hidden = self.forbidden_workflows | self.gone_workflows
        items = [
            item
            for w in self._workflows.values()
            if w.id not in hidden and keep(item := w.item_at(t))
        ]
        shown, pagination = listing.page(params, items)
        return _json({"workflows": shown, "pagination": pagination})

    def _list_jobs(self, workflow_id: str, params: dict[str, str], t: float) -> Response:
        keep = listing.item_filter(params, listing.JOB_FILTERS)
        parts = []
        for index in self.jobs_of(workflow_id, t):
            doc, text = self.summary(index, t)
            if keep(doc):
                parts.append(text)
        return Response(200, ('{"jobs":[' + ",".join(parts) + "]}").encode())

    def _malformed(self, body: bytes, target: _Target, sub: float, t: float) -> Response:
        kind = MALFORMED_KINDS[min(int(sub * len(MALFORMED_KINDS)), len(MALFORMED_KINDS) - 1)]
        if kind == "truncated":
            return Response(200, body[: len(body) // 2])
        if kind == "html":
            return Response(200, _html(200, "Service Temporarily Unavailable"), "text/html")
        if kind == "error_body":
            return _error(200, "internal", "upstream returned an error", None)
        what, which = target
        if what == "jobs":  # another workflow's jobs: items naming a workflow not asked for
            wf_ids = list(self._workflows)
            other_wf = wf_ids[(wf_ids.index(str(which)) + 1) % len(wf_ids)]
            if other_wf != which:
                return self._list_jobs(other_wf, {}, t)
            return Response(200, body.replace(b'"workflow_id":"', b'"workflow_id":"other-'))
        if what != "job":  # a list or a workflow: the wrong shape
            return Response(200, b"[" + body + b"]")
        index = int(which)
        other = (index + 1) % self._existing(t)
        if other != index:
            return Response(200, self.payload_bytes(other, t))
        doc = json.loads(body)
        doc["id"] = f"{doc['id']}-other"
        return Response(200, json.dumps(doc).encode())


_Target = tuple[str, int | str]
"""What a 200 was about: ("job", index), ("jobs" | "workflow" | "estimate", workflow id), or
("workflows", "")."""


def _json(doc: Any) -> Response:
    return Response(200, _dumps(doc).encode())


def _server_error(sub: float) -> Response:
    if sub < 1 / 3:
        return _error(500, "internal", "internal server error")
    if sub < 2 / 3:
        return Response(502, _html(502, "502 Bad Gateway"), "text/html")
    unavailable = _error(503, "unavailable", "service temporarily unavailable")
    return Response(503, unavailable.body, headers=(("Retry-After", "1"),))


def _loopback(host: str) -> tuple[socket.AddressFamily, str]:
    if host == "localhost":
        return socket.AF_INET, "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ConfigError(f"the simulator binds loopback addresses only; refusing {host!r}")
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    return family, str(address)


class _HTTPServer(ThreadingHTTPServer):
    """One daemon thread per connection, each tracked so that ``stop()`` can end it."""

    daemon_threads = True
    sim: Simulator

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.request_count = 0
        self.count_lock = threading.Lock()
        self.connections: dict[socket.socket, threading.Thread] = {}

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread, args=(request, client_address), daemon=True
        )
        with self.count_lock:
            self.connections[request] = thread
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self.count_lock:
            self.connections.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hang up (and connections ``stop()`` cuts); the default
        prints a traceback to stderr for each."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self, timeout: float = 5.0) -> None:
        with self.count_lock:
            connections = list(self.connections.items())
        for sock, _ in connections:
            with contextlib.suppress(OSError):  # already closed by its handler
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for _, thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so a client's session is not a TCP handshake each
    disable_nagle_algorithm = True  # else sequential requests crawl at ~40 ms each (STYLE.md)
    server_version = "pixxel-sim/1"
    sys_version = ""
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default one-line-per-request stderr log."""

    def _answer(self) -> None:
        srv = self.server
        with srv.count_lock:
            srv.request_count += 1
        if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # the body is not read, so the stream is unusable
        response = srv.sim.respond(self.command, self.path, self.headers.get("Authorization"))
        if response is None:
            self.close_connection = True
            return
        reason = self.responses.get(response.status, ("",))[0]
        head = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Server: {self.server_version}",
            f"Date: {_http_date()}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
        ]
        head += [f"{name}: {value}" for name, value in response.headers]
        if self.close_connection:
            head.append("Connection: close")
        # one write: status line, headers and body leave in a single send
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class SimServer:
    """A running simulator server; a context manager that stops it on exit."""

    def __init__(self, httpd: _HTTPServer) -> None:
        self._httpd = httpd
        self.host = str(httpd.server_address[0])
        self.port = int(httpd.server_address[1])
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def request_count(self) -> int:
        return self._httpd.request_count

    def stop(self) -> None:
        """Stop serving and close every open connection; safe to call twice."""
        if self._stopped.is_set():
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_connections()
        self._thread.join()
        self._stopped.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until ``stop()`` (from another thread or a signal handler); True if stopped.

        Waits in short slices so that Ctrl-C reaches the main thread promptly.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stopped.is_set():
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                return False
            self._stopped.wait(left)
        return True

    serve_forever = wait

    def __enter__(self) -> SimServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SimServer(url={self.url!r})"
