"""Raw job payload -> typed records for the job, its tasks, dependencies and validation errors.

Pure: no I/O, no database. Lenient where the API is loose (see ``archiver.archive.values``), strict
where storing would be wrong: a payload that is not a JSON object, has no usable ``id`` or
``workflow_id``, or carries a value no column may hold without truncation (a cost beyond 64 bits)
raises ``PayloadError``. Everything else is archived, with each doubtful value recorded as a
``Problem`` and the original kept in the snapshot.

``tasks`` absent or ``null`` means "not reported": archived tasks are kept (absent is not empty).
``val_errors: null`` means none (Go encodes an empty slice as ``null``), absent means not reported.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from archiver.archive.jsonload import JsonError, canonical, loads
from archiver.archive.values import (
    OUT_OF_RANGE,
    Parsed,
    clean_json,
    clean_text,
    parse_duration,
    parse_int,
    parse_number,
    parse_progress,
    parse_timestamp,
)
from archiver.errors import PayloadError
from archiver.statuses import DEFAULT_CLASSIFIER, StatusClassifier

ID_MAX = 191  # the id columns' length (see models.ID)
SHORT_TEXT_MAX = 255
STATUS_MAX = 64
RAW_VALUE_MAX = 500  # a problem row shows this much of the value; the snapshot has all of it

JOB_TIMESTAMPS = ("created_at", "updated_at", "finished_at", "exec_created_at", "exec_updated_at")
TASK_TIMESTAMPS = (
    "created_at",
    "updated_at",
    "finished_at",
    "recv_time",
    "send_time",
    "block_inf_start_time",
    "block_inf_end_time",
)
TASK_ARRAYS = ("info_logs", "inputs", "result", "disclaimer")

# The typed state of a job and a task, in column order. A version row is written when any of
# these differ; each differing one gets a job_changes row. Shared with the models.
JOB_FIELDS: tuple[str, ...] = (
    "status",
    "status_class",
    "is_terminal",
    "progress",
    "progress_pct",
    "cost",
    "time_taken",
    "time_taken_s",
    "estimated_duration",
    "created_by",
    *JOB_TIMESTAMPS,
    "spec",
    "extra",
)
TASK_FIELDS: tuple[str, ...] = (
    "name",
    "status",
    "status_class",
    "is_terminal",
    "progress",
    "estimated_time_duration",
    "time_taken",
    "time_taken_s",
    "state_msg",
    "err_msg",
    "failure_type",
    *TASK_TIMESTAMPS,
    "block_id",
    "block_name",
    "block_version",
    "depends_on",
    *TASK_ARRAYS,
    "extra",
)
VAL_ERROR_FIELDS = ("source_component", "target_component", "err", "reason", "component_name")

_JOB_KEYS = frozenset(
    {
        "id",
        "workflow_id",
        "status",
        "progress",
        "cost",
        "time_taken",
        "estimated_duration",
        "created_by",
        "spec",
        "tasks",
        "val_errors",
        *JOB_TIMESTAMPS,
    }
)
_TASK_KEYS = frozenset(
    {
        "id",
        "name",
        "status",
        "progress",
        "estimated_time_duration",
        "time_taken",
        "state_msg",
        "err_msg",
        "failure_type",
        "block_info",
        "depends_on",
        *TASK_TIMESTAMPS,
        *TASK_ARRAYS,
    }
)
_BLOCK_KEYS = {"id": "block_id", "name": "block_name", "version": "block_version"}
_VAL_ERROR_KEYS = {
    "from": "source_component",
    "to": "target_component",
    "err": "err",
    "reason": "reason",
    "component_name": "component_name",
}


@dataclass(frozen=True, slots=True)
class Problem:
    """A value that could not be taken as is; the typed column got None or a coerced value."""

    field: str
    raw_value: str | None
    message: str
    task_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    task_id: str
    state: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ValErrorRecord:
    fingerprint: str
    fields: dict[str, str | None]
    occurrences: int


@dataclass(slots=True)
class ParsedPayload:
    workflow_id: str
    job_id: str
    sha256: str
    body: str
    job: dict[str, Any]
    tasks: list[TaskRecord] | None  # None: not reported, keep what is archived
    val_errors: list[ValErrorRecord] | None  # None: not reported
    problems: list[Problem] = field(default_factory=list)

    @property
    def updated_at(self) -> datetime | None:
        return self.job["updated_at"]

    @property
    def parsed(self) -> ParsedPayload:
        return self

    @property
    def dependencies(self) -> list[tuple[str, str]]:
        tasks = self.tasks or ()
        return [(t.task_id, dep) for t in tasks for dep in t.state["depends_on"] or ()]


def _raw_repr(raw: Any) -> str | None:
    if raw is None:
        return None
    text = raw if isinstance(raw, str) else canonical(raw)
    return text if len(text) <= RAW_VALUE_MAX else text[:RAW_VALUE_MAX] + "…"


MAX_PROBLEMS = 1000  # per payload: beyond this, one summary row (the snapshot has it all)


class _Collector:
    """Accumulates problems while a payload is read, tagging each with its task."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.dropped = 0

    def take(self, parsed: Parsed[Any], name: str, raw: Any, task_id: str | None = None) -> Any:
        if parsed.problem:
            self.add(name, raw, parsed.problem, task_id)
        return parsed.value

    def add(self, name: str, raw: Any, message: str, task_id: str | None = None) -> None:
        if len(self.problems) >= MAX_PROBLEMS - 1:  # one row is kept for the summary
            self.dropped += 1
            return
        try:
            shown = _raw_repr(raw)
        except (TypeError, ValueError):
            shown = None
        if shown is not None:
            shown = clean_text(shown).value
        self.problems.append(Problem(name, shown, message, task_id))


def _identifier(raw: Any, what: str) -> str | None:
    """Ids are text; integers are accepted as their decimal text."""
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip():
        return None
    cleaned = clean_text(raw)
    if cleaned.problem or len(raw) > ID_MAX:
        raise PayloadError(f"{what} {_raw_repr(raw)!r} is not a usable identifier")
    return raw


def decode(raw: str | bytes | Mapping[str, Any]) -> tuple[dict[str, Any], str, list[str]]:
    """(object, verbatim body, duplicate keys) from wire text or an already decoded object."""
    if isinstance(raw, Mapping):
        return dict(raw), canonical(raw), []
    try:
        decoded = loads(raw)
    except JsonError as exc:
        raise PayloadError(f"payload rejected: {exc}") from None
    if not isinstance(decoded.value, dict):
        raise PayloadError(
            f"payload rejected: expected a JSON object, got {type(decoded.value).__name__}"
        )
    body = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
    return decoded.value, body, decoded.duplicate_keys


@dataclass(slots=True)
class Identified:
    """A payload decoded, identified and hashed, but not yet read field by field.

    Most polls return what is already archived; comparing hashes first lets those skip the
    (comparatively expensive) typed parsing entirely.
    """

    workflow_id: str
    job_id: str
    sha256: str
    body: str
    data: dict[str, Any]
    duplicates: list[str]
    classifier: StatusClassifier
    _parsed: ParsedPayload | None = None

    @property
    def updated_at(self) -> datetime | None:
        return parse_timestamp(self.data.get("updated_at")).value

    @property
    def parsed(self) -> ParsedPayload:
        if self._parsed is None:
            self._parsed = _read_fields(self)
        return self._parsed


def identify(
    raw: str | bytes | Mapping[str, Any],
    *,
    workflow_id: str | None = None,
    job_id: str | None = None,
    classifier: StatusClassifier = DEFAULT_CLASSIFIER,
) -> Identified:
    """Decode, check the ids (``workflow_id``/``job_id``, when given, must match) and hash."""
    data, body, duplicates = decode(raw)
    got_job = _identifier(data.get("id"), "job id")
    if got_job is None:
        raise PayloadError("payload rejected: no job id (the 'id' field is missing or empty)")
    if job_id is not None and got_job != job_id:
        raise PayloadError(
            f"payload rejected: it is job {got_job!r}, expected {job_id!r}", job_id=job_id
        )
    got_wf = _identifier(data.get("workflow_id"), "workflow id") or workflow_id
    if got_wf is None:
        raise PayloadError(
            f"payload for job {got_job!r} rejected: no workflow_id in the payload or given",
            job_id=got_job,
        )
    if workflow_id is not None and got_wf != workflow_id:
        raise PayloadError(
            f"payload rejected: job {got_job!r} belongs to workflow {got_wf!r}, "
            f"expected {workflow_id!r}",
            workflow_id=workflow_id,
            job_id=got_job,
        )
    digest = hashlib.sha256(canonical(data).encode("ascii")).hexdigest()
    return Identified(got_wf, got_job, digest, body, data, duplicates, classifier)


def parse_payload(
    raw: str | bytes | Mapping[str, Any],
    *,
    workflow_id: str | None = None,
    job_id: str | None = None,
    classifier: StatusClassifier = DEFAULT_CLASSIFIER,
) -> ParsedPayload:
    """Read one job payload completely (see ``identify`` for the checks)."""
    return identify(raw, workflow_id=workflow_id, job_id=job_id, classifier=classifier).parsed


def _read_fields(ident: Identified) -> ParsedPayload:
    data, classifier = ident.data, ident.classifier
    got_wf, got_job = ident.workflow_id, ident.job_id
    out = _Collector()
    for key in ident.duplicates:
        out.add(key, None, "duplicate JSON key; the last value was kept")
    job = _job_state(data, out, classifier)
    cost = data.get("cost")
    if job["cost"] is None and cost is not None and parse_int(cost).problem == OUT_OF_RANGE:
        raise PayloadError(
            f"job {got_wf}/{got_job}: cost {_raw_repr(data['cost'])} is beyond the 64-bit "
            "range of the cost column; refusing to store a truncated cost",
            workflow_id=got_wf,
            job_id=got_job,
        )
    tasks = _tasks(data, out, classifier)
    val_errors = _val_errors(data, out)
    if out.dropped:
        out.problems.append(
            Problem(
                "*", None, f"{out.dropped} more problems in this payload, not listed one by one"
            )
        )
    return ParsedPayload(
        got_wf, got_job, ident.sha256, ident.body, job, tasks, val_errors, out.problems
    )


def _status(raw: Any, out: _Collector, classifier: StatusClassifier, task_id: str | None) -> dict:
    status = out.take(clean_text(raw, STATUS_MAX), "status", raw, task_id)
    status_class = classifier.classify(status)
    if status_class == "unknown":
        out.add("status", raw, "unknown status; classed as unknown", task_id)
    return {
        "status": status,
        "status_class": status_class,
        "is_terminal": classifier.is_terminal(status_class),
    }


def _extra(data: Mapping[str, Any], known: frozenset[str], out: _Collector, task: str | None):
    extra = {k: v for k, v in data.items() if k not in known}
    if not extra:
        return None
    return out.take(clean_json(extra), "extra", None, task)


def _job_state(data: dict[str, Any], out: _Collector, classifier: StatusClassifier) -> dict:
    get = data.get
    progress_raw = get("progress")
    state: dict[str, Any] = {
        **_status(get("status"), out, classifier, None),
        "progress": out.take(clean_text(progress_raw, SHORT_TEXT_MAX), "progress", progress_raw),
        "progress_pct": out.take(parse_progress(progress_raw), "progress", progress_raw),
        "cost": out.take(parse_int(get("cost")), "cost", get("cost")),
        "time_taken": out.take(clean_text(get("time_taken"), SHORT_TEXT_MAX), "time_taken", None),
        "time_taken_s": out.take(
            parse_duration(get("time_taken")), "time_taken", get("time_taken")
        ),
        "estimated_duration": out.take(
            parse_int(get("estimated_duration")), "estimated_duration", get("estimated_duration")
        ),
        "created_by": out.take(
            clean_text(get("created_by"), SHORT_TEXT_MAX), "created_by", get("created_by")
        ),
    }
    for name in JOB_TIMESTAMPS:
        state[name] = out.take(parse_timestamp(get(name)), name, get(name))
    state["spec"] = out.take(clean_json(get("spec")), "spec", None)
    state["extra"] = _extra(data, _JOB_KEYS, out, None)
    return state


def _tasks(data: dict[str, Any], out: _Collector, classifier: StatusClassifier):
    raw_tasks = data.get("tasks")
    if raw_tasks is None:
        return None
    if not isinstance(raw_tasks, list):
        out.add("tasks", raw_tasks, "tasks is not a list; archived tasks kept")
        return None
    by_id: dict[str, TaskRecord] = {}
    for index, raw in enumerate(raw_tasks):
        if not isinstance(raw, dict):
            out.add(f"tasks[{index}]", raw, "task is not an object; skipped")
            continue
        try:
            task_id = _identifier(raw.get("id"), "task id")
        except PayloadError as exc:
            out.add(f"tasks[{index}].id", raw.get("id"), f"{exc}; task skipped")
            continue
        if task_id is None:
            out.add(f"tasks[{index}].id", raw.get("id"), "task without an id; skipped")
            continue
        if task_id in by_id:
            out.add("id", task_id, "duplicate task id; the last one was kept", task_id)
        by_id[task_id] = TaskRecord(task_id, _task_state(raw, task_id, out, classifier))
    _check_dependencies(by_id, out)
    return list(by_id.values())


def _task_state(raw: dict, task_id: str, out: _Collector, classifier: StatusClassifier) -> dict:
    get = raw.get

    def text(name: str, limit: int | None = None) -> str | None:
        return out.take(clean_text(get(name), limit), name, get(name), task_id)

    progress = parse_number(get("progress"), Decimal("0.0001"), Decimal(0), Decimal(100))
    state: dict[str, Any] = {
        "name": text("name"),
        **_status(get("status"), out, classifier, task_id),
        "progress": out.take(progress, "progress", get("progress"), task_id),
        "estimated_time_duration": out.take(
            parse_int(get("estimated_time_duration")),
            "estimated_time_duration",
            get("estimated_time_duration"),
            task_id,
        ),
        "time_taken": text("time_taken", SHORT_TEXT_MAX),
        "time_taken_s": out.take(
            parse_duration(get("time_taken")), "time_taken", get("time_taken"), task_id
        ),
        "state_msg": text("state_msg"),
        "err_msg": text("err_msg"),
        "failure_type": text("failure_type", SHORT_TEXT_MAX),
    }
    for name in TASK_TIMESTAMPS:
        state[name] = out.take(parse_timestamp(get(name)), name, get(name), task_id)
    state.update(_block_info(get("block_info"), task_id, out))
    state["depends_on"] = _depends_on(get("depends_on"), task_id, out)
    for name in TASK_ARRAYS:
        state[name] = out.take(clean_json(get(name)), name, None, task_id)
    state["extra"] = _extra(raw, _TASK_KEYS, out, task_id)
    return state


def _block_info(raw: Any, task_id: str, out: _Collector) -> dict[str, Any]:
    block: dict[str, Any] = dict.fromkeys(_BLOCK_KEYS.values())
    if raw is None:
        return block
    if not isinstance(raw, dict):
        out.add("block_info", raw, "block_info is not an object", task_id)
        return block
    for key, column in _BLOCK_KEYS.items():
        block[column] = out.take(
            clean_text(raw.get(key), SHORT_TEXT_MAX), f"block_info.{key}", raw.get(key), task_id
        )
    if set(raw) - set(_BLOCK_KEYS):
        out.add("block_info", raw, "unknown block_info keys (kept in the snapshot)", task_id)
    return block


def _depends_on(raw: Any, task_id: str, out: _Collector) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        out.add("depends_on", raw, "depends_on is not a list", task_id)
        return None
    deps: list[str] = []
    seen: set[str] = set()
    for item in raw:
        try:
            dep = _identifier(item, "dependency")
        except PayloadError:
            dep = None
        if dep is None:
            out.add("depends_on", item, "dependency is not a task id; dropped", task_id)
        elif dep in seen:
            out.add("depends_on", dep, "duplicate dependency", task_id)
        else:
            deps.append(dep)
            seen.add(dep)
    return deps


def _check_dependencies(tasks: dict[str, TaskRecord], out: _Collector) -> None:
    """Edges to unknown tasks, self-edges and cycles are kept (they are data) but reported."""
    graph = {tid: task.state["depends_on"] or [] for tid, task in tasks.items()}
    for tid, deps in graph.items():
        for dep in deps:
            if dep == tid:
                out.add("depends_on", dep, "task depends on itself", tid)
            elif dep not in graph:
                out.add("depends_on", dep, "depends on a task not in this job", tid)
    # iterative three-colour DFS: recursion would overflow on long chains
    colour = dict.fromkeys(graph, 0)
    for root in graph:
        if colour[root]:
            continue
        stack = [(root, iter(graph[root]))]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            for child in children:
                if child not in graph or child == node:
                    continue
                if colour[child] == 1:
                    out.add("depends_on", child, "dependency cycle", node)
                elif colour[child] == 0:
                    colour[child] = 1
                    stack.append((child, iter(graph[child])))
                    break
            else:
                colour[node] = 2
                stack.pop()


def _val_errors(data: dict[str, Any], out: _Collector) -> list[ValErrorRecord] | None:
    if "val_errors" not in data:
        return None
    raw_list = data["val_errors"]
    if raw_list is None:
        return []
    if not isinstance(raw_list, list):
        out.add("val_errors", raw_list, "val_errors is not a list; archived errors kept")
        return None
    found: dict[str, ValErrorRecord] = {}
    for index, raw in enumerate(raw_list):
        if not isinstance(raw, dict):
            out.add(f"val_errors[{index}]", raw, "validation error is not an object; skipped")
            continue
        fields = {
            column: out.take(clean_text(raw.get(key)), f"val_errors[{index}].{key}", raw.get(key))
            for key, column in _VAL_ERROR_KEYS.items()
        }
        if set(raw) - set(_VAL_ERROR_KEYS):
            out.add(f"val_errors[{index}]", raw, "unknown validation error keys (in snapshot)")
        fingerprint = hashlib.sha256(
            canonical([fields[c] for c in VAL_ERROR_FIELDS]).encode("ascii")
        ).hexdigest()
        count = found[fingerprint].occurrences + 1 if fingerprint in found else 1
        found[fingerprint] = ValErrorRecord(fingerprint, fields, count)
    return list(found.values())
