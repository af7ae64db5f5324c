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

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from archiver import fields as declared
from archiver.archive.digests import task_digester, val_errors_digester
from archiver.archive.jsonload import (
    MAX_DEPTH,
    CanonicalParts,
    JsonError,
    canonical,
    canonical_parts,
    check_depth,
    loads,
)
from archiver.archive.readers import Reader, Unsupported, compile_reader
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
from archiver.fields import Derive, Field, Kind
from archiver.ids import id_problem, shown_id
from archiver.statuses import DEFAULT_CLASSIFIER, StatusClassifier

RAW_VALUE_MAX = 500  # a problem row shows this much of the value; the snapshot has all of it

# The typed state of a job and a task, in column order, from ``archiver.fields``. A version row
# is written when any of these differ; each differing one gets a job_changes row.
JOB_FIELDS: tuple[str, ...] = declared.names(declared.JOB)
TASK_FIELDS: tuple[str, ...] = declared.names(declared.TASK)
VAL_ERROR_FIELDS: tuple[str, ...] = declared.names(declared.VAL_ERROR)
JOB_TIMESTAMPS = tuple(f.name for f in declared.JOB if f.kind is Kind.TIMESTAMP)
TASK_TIMESTAMPS = tuple(f.name for f in declared.TASK if f.kind is Kind.TIMESTAMP)
TASK_ARRAYS = tuple(f.name for f in declared.TASK if f.kind is Kind.JSON and f.derive is None)
_VAL_ERROR_KEYS = declared.payload_keys(declared.VAL_ERROR)


@dataclass(frozen=True, slots=True)
class Problem:
    """A value that could not be taken as is; the typed column got None or a coerced value."""

    field: str
    raw_value: str | None
    message: str
    task_id: str | None = None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task as read. ``as_archived``: its digest is the archived one, so it was not typed and
    ``state`` holds only ``depends_on`` (what the job's edges need); see
    ``archiver.archive.digests``. ``digest``: of what it was read from, None if reading it found a
    problem (such a task is read again every time, so its problems are recorded every time)."""

    task_id: str
    state: dict[str, Any]
    digest: str | None = None
    as_archived: bool = False


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
    val_errors: list[ValErrorRecord] | None  # None: not reported (or as archived, below)
    problems: list[Problem] = field(default_factory=list)
    # reported, and their digest is the archived one: the archived open errors stand, seen again
    val_errors_as_archived: bool = False
    # of the reported val_errors member, when reading it found no problem
    val_errors_sha256: str | None = None

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

    @property
    def count(self) -> int:
        """Problems so far, listed or not: a reading that leaves it alone found none."""
        return len(self.problems) + self.dropped

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
    """Ids are text; integers are accepted as their decimal text. The rule is ``archiver.ids``."""
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        raw = str(raw)
    if not isinstance(raw, str) or not raw.strip():
        return None
    problem = id_problem(raw)
    if problem:
        raise PayloadError(f"{what} {shown_id(raw)} is not a usable identifier: it {problem}")
    return raw


ERROR_SHOWN_MAX = 200  # of an error envelope's ``error`` member, in the refusal's message


@dataclass(frozen=True, slots=True)
class ErrorEnvelope:
    """What the API answers instead of a job: ``{"error": {"code": …, "message": …}}``."""

    code: str | None
    message: str | None


def error_envelope(data: Any) -> ErrorEnvelope | None:
    """The error ``data`` carries if it is an error envelope, else None. An envelope is never a job.

    The rule, for every path (the HTTP client and every archived payload, through ``identify``):
    a JSON object whose top-level ``error`` member is present and not ``null`` is an error
    envelope, whatever else it holds, ids included, and whatever the member's type (an object
    as the API sends it, or a string, number, list). Strict on purpose: the history is append-only,
    so an envelope archived as a job would be a false version (status, cost, progress NULL) that
    nothing can take back, whereas a job refused by mistake is recorded and counted, and loud.
    ``"error": null`` carries no error and is not an envelope.
    """
    if not isinstance(data, Mapping) or data.get("error") is None:
        return None
    error = data["error"]
    if not isinstance(error, Mapping):
        return ErrorEnvelope(None, None)
    code, message = error.get("code"), error.get("message")
    return ErrorEnvelope(
        str(code) if isinstance(code, str | int) and not isinstance(code, bool) else None,
        message if isinstance(message, str) else None,
    )


def _refuse_envelope(data: dict[str, Any], workflow_id: str | None, job_id: str | None) -> None:
    if error_envelope(data) is None:
        return
    shown = canonical(data["error"])  # JSON text, ASCII: no control character survives in it
    if len(shown) > ERROR_SHOWN_MAX:
        shown = shown[: ERROR_SHOWN_MAX - 1] + "…"
    raise PayloadError(
        f"payload rejected: it is an API error envelope, not a job (error: {shown})",
        workflow_id=workflow_id,
        job_id=job_id,
    )


def decode(raw: str | bytes | Mapping[str, Any]) -> tuple[dict[str, Any], str, list[str]]:
    """(object, verbatim body, duplicate keys) from wire text or an already decoded object."""
    data, body, duplicates, _ = _decode(raw)
    return data, body, duplicates


def _decode(
    raw: str | bytes | Mapping[str, Any],
) -> tuple[dict[str, Any], str, list[str], CanonicalParts]:
    """``decode``, and the object's canonical parts (``identify`` hashes them).

    The nesting is checked as ``loads`` checks it, before anything else is, but the walk over
    the tree is left out where the canonical texts, built here anyway, show it shallow enough.
    """
    if isinstance(raw, Mapping):
        data = dict(raw)
        return data, canonical(data), [], _parts(data)
    try:
        decoded = loads(raw, depth=False)
        value = decoded.value
        if not isinstance(value, dict):
            check_depth(value)
            raise PayloadError(
                f"payload rejected: expected a JSON object, got {type(value).__name__}"
            )
        try:
            parts = _parts(value)
        except RecursionError:  # nested too deep for the encoder: the walk says how
            check_depth(value)
            raise
        if parts.nesting > MAX_DEPTH:
            check_depth(value)
    except JsonError as exc:
        raise PayloadError(f"payload rejected: {exc}") from None
    body = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
    return value, body, decoded.duplicate_keys, parts


def _parts(data: dict[str, Any]) -> CanonicalParts:
    return canonical_parts(data, "tasks", ("val_errors",))


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
    # digests of each element of ``tasks`` (None: not an object) and of ``val_errors``
    task_digests: list[str | None] | None = None
    val_errors_digest: str | None = None
    _parsed: ParsedPayload | None = None

    @property
    def updated_at(self) -> datetime | None:
        return parse_timestamp(self.data.get("updated_at")).value

    @property
    def parsed(self) -> ParsedPayload:
        if self._parsed is None:
            self._parsed = _read_fields(self)
        return self._parsed

    def read(self, tasks: Mapping[str, str], val_errors: str | None) -> ParsedPayload:
        """Read against what is archived: the digests of its present tasks (task id -> digest)
        and of its validation errors. Parts whose digest matches are not typed.

        Not kept, unlike ``parsed``: a batch run again after a conflict may see other digests.
        """
        if not tasks and val_errors is None:
            return self.parsed
        return _read_fields(self, tasks, val_errors)


def identify(
    raw: str | bytes | Mapping[str, Any],
    *,
    workflow_id: str | None = None,
    job_id: str | None = None,
    classifier: StatusClassifier = DEFAULT_CLASSIFIER,
) -> Identified:
    """Decode, refuse an error envelope, check the ids (``workflow_id``/``job_id``, when given,
    must match) and hash."""
    data, body, duplicates, parts = _decode(raw)
    _refuse_envelope(data, workflow_id, job_id)
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
    digest = hashlib.sha256(parts.text.encode("ascii")).hexdigest()
    task_digests = None
    if parts.elements is not None:
        of_task = task_digester(classifier)
        tasks = data["tasks"]
        task_digests = [
            of_task(text) if type(task) is dict else None
            for task, text in zip(tasks, parts.elements, strict=True)
        ]
    val_text = parts.members.get("val_errors")
    val_digest = None if val_text is None else val_errors_digester()(val_text)
    return Identified(
        got_wf, got_job, digest, body, data, duplicates, classifier, task_digests, val_digest
    )


def parse_payload(
    raw: str | bytes | Mapping[str, Any],
    *,
    workflow_id: str | None = None,
    job_id: str | None = None,
    classifier: StatusClassifier = DEFAULT_CLASSIFIER,
) -> ParsedPayload:
    """Read one job payload completely (see ``identify`` for the checks)."""
    return identify(raw, workflow_id=workflow_id, job_id=job_id, classifier=classifier).parsed


def _read_fields(
    ident: Identified,
    archived_tasks: Mapping[str, str] | None = None,
    archived_val_errors: str | None = None,
) -> ParsedPayload:
    data, classifier = ident.data, ident.classifier
    got_wf, got_job = ident.workflow_id, ident.job_id
    out = _Collector()
    for key in ident.duplicates:
        out.add(key, None, "duplicate JSON key; the last value was kept")
    job = _read_state(_plan(declared.JOB, declared.JOB_OTHER_KEYS), data, out, classifier, None)
    cost = data.get("cost")
    if job["cost"] is None and cost is not None and parse_int(cost).problem == OUT_OF_RANGE:
        raise PayloadError(
            f"job {got_wf}/{got_job}: cost {_raw_repr(data['cost'])} is beyond the 64-bit "
            "range of the cost column; refusing to store a truncated cost",
            workflow_id=got_wf,
            job_id=got_job,
        )
    tasks = _tasks(data, out, classifier, ident.task_digests, archived_tasks or {})
    val_digest = ident.val_errors_digest
    as_archived = val_digest is not None and val_digest == archived_val_errors
    val_errors = None
    if not as_archived:
        before = out.count
        val_errors = _val_errors(data, out)
        if val_errors is None or out.count != before:
            val_digest = None
    if out.dropped:
        out.problems.append(
            Problem(
                "*", None, f"{out.dropped} more problems in this payload, not listed one by one"
            )
        )
    return ParsedPayload(
        got_wf,
        got_job,
        ident.sha256,
        ident.body,
        job,
        tasks,
        val_errors,
        out.problems,
        val_errors_as_archived=as_archived,
        val_errors_sha256=val_digest,
    )


class _Plan:
    """How one entity's declared fields are read: built once per declaration."""

    __slots__ = ("dependencies", "entity", "known", "readers", "steps")

    def __init__(self, entity: tuple[Field, ...], other_keys: tuple[str, ...]) -> None:
        self.entity = entity
        self.known = declared.payload_keys(entity, other_keys)
        # the key of the field that lists a task's dependencies: read even when the rest is not
        self.dependencies = next(
            (f.key for f in entity if f.derive is Derive.DEPENDENCIES and f.key), None
        )
        # fields read inside an object of the payload ("block_info.id") are read as one group,
        # where the first of them stands, so the object's own problems are reported once
        self.steps: list[Field | tuple[str, tuple[Field, ...]]] = []
        grouped: set[str] = set()
        for f in entity:
            top = f.top_key
            if top is None or top == f.key:
                self.steps.append(f)
            elif top not in grouped:
                grouped.add(top)
                self.steps.append((top, tuple(g for g in entity if g.top_key == top)))
        # the compiled readers of these steps, by classifier (``archiver.archive.readers``)
        self.readers: dict[int, tuple[StatusClassifier, Reader]] = {}

    def reader(self, classifier: StatusClassifier) -> Reader:
        """The steps compiled for ``classifier``, or the generic reader where they cannot be."""
        hit = self.readers.get(id(classifier))
        if hit is not None and hit[0] is classifier:
            return hit[1]
        try:
            made = compile_reader(self.steps, self.known, classifier, _HELPERS)
        except Unsupported:
            made = functools.partial(_read_generic, self, classifier=classifier)
        if len(self.readers) >= READERS_KEPT:
            self.readers.clear()
        self.readers[id(classifier)] = (classifier, made)
        return made


_PLANS: dict[int, _Plan] = {}


def _plan(entity: tuple[Field, ...], other_keys: tuple[str, ...]) -> _Plan:
    """The plan of the declaration as it is now (a test may extend the declaration)."""
    plan = _PLANS.get(id(entity))
    if plan is None or plan.entity is not entity:
        plan = _PLANS[id(entity)] = _Plan(entity, other_keys)
    return plan


READERS_KEPT = 8  # compiled readers per plan: one per classifier in use


def _read_state(
    plan: _Plan,
    data: Mapping[str, Any],
    out: _Collector,
    classifier: StatusClassifier,
    task_id: str | None,
) -> dict[str, Any]:
    """Every declared field of one job or task, in declaration order (problems follow it)."""
    return plan.reader(classifier)(data, out, task_id)


def _read_generic(
    plan: _Plan,
    data: Mapping[str, Any],
    out: _Collector,
    task_id: str | None,
    *,
    classifier: StatusClassifier,
) -> dict[str, Any]:
    """``_read_state`` field by field: what the compiled reader does, written plainly."""
    get = data.get
    state: dict[str, Any] = {}
    for step in plan.steps:
        if isinstance(step, tuple):
            top, group = step
            state.update(_nested(get(top), top, group, out, task_id))
            continue
        f, derive = step, step.derive
        raw = get(f.key) if f.key is not None else None
        if derive is None:
            state[f.name] = _plain(f, raw, out, task_id)
        elif derive is Derive.EXTRA:
            state[f.name] = _extra(data, plan.known, out, task_id)
        else:
            state[f.name] = _derived(f, derive, raw, state, out, classifier, task_id)
    return state


def _plain(f: Field, raw: Any, out: _Collector, task_id: str | None) -> Any:
    """A value read as its kind; a JSON value is not repeated in its problem (the snapshot has
    it), other values are."""
    kind = f.kind
    if kind is Kind.TEXT:
        return out.take(clean_text(raw, f.length), str(f.key), raw, task_id)
    if kind is Kind.TIMESTAMP:
        return out.take(parse_timestamp(raw), str(f.key), raw, task_id)
    if kind is Kind.INTEGER:
        return out.take(parse_int(raw), str(f.key), raw, task_id)
    if kind is Kind.JSON:
        return out.take(clean_json(raw), str(f.key), None, task_id)
    raise TypeError(f"field {f.name}: no plain reader for {kind}; declare how it is derived")


def _derived(
    f: Field,
    derive: Derive,
    raw: Any,
    state: dict[str, Any],
    out: _Collector,
    classifier: StatusClassifier,
    task_id: str | None,
) -> Any:
    key = str(f.key)
    if derive is Derive.STATUS_CLASS:
        status_class = classifier.classify(state[key])
        if status_class == "unknown":
            out.add(key, raw, "unknown status; classed as unknown", task_id)
        return status_class
    if derive is Derive.IS_TERMINAL:
        return classifier.is_terminal(classifier.classify(state[key]))
    if derive is Derive.PERCENT:
        return out.take(parse_progress(raw), key, raw, task_id)
    if derive is Derive.PERCENT_NUMBER:
        quantum = Decimal(10) ** -(f.digits[1] if f.digits else 0)
        parsed = parse_number(raw, quantum, Decimal(0), Decimal(100))
        return out.take(parsed, key, raw, task_id)
    if derive is Derive.SECONDS:
        return out.take(parse_duration(raw), key, raw, task_id)
    if derive is Derive.DEPENDENCIES:
        return _depends_on(raw, task_id, out)
    raise TypeError(f"field {f.name}: no reader derives {derive}")


def _extra(data: Mapping[str, Any], known: frozenset[str], out: _Collector, task: str | None):
    extra = {k: v for k, v in data.items() if k not in known}
    if not extra:
        return None
    return out.take(clean_json(extra), "extra", None, task)


def _nested(
    raw: Any, top: str, group: tuple[Field, ...], out: _Collector, task_id: str | None
) -> dict[str, Any]:
    """The fields read inside one object of the payload (``block_info``)."""
    values: dict[str, Any] = dict.fromkeys(f.name for f in group)
    if raw is None:
        return values
    if not isinstance(raw, dict):
        out.add(top, raw, f"{top} is not an object", task_id)
        return values
    inner = {str(f.key).split(".", 1)[1]: f for f in group}
    for key, f in inner.items():
        values[f.name] = _plain(f, raw.get(key), out, task_id)
    if set(raw) - set(inner):
        out.add(top, raw, f"unknown {top} keys (kept in the snapshot)", task_id)
    return values


def _tasks(
    data: dict[str, Any],
    out: _Collector,
    classifier: StatusClassifier,
    digests: list[str | None] | None,
    archived: Mapping[str, str],
) -> list[TaskRecord] | None:
    """The tasks; one whose digest is an archived task's (``archived``: id -> digest) is taken as
    that task as archived, untyped."""
    raw_tasks = data.get("tasks")
    if raw_tasks is None:
        return None
    if not isinstance(raw_tasks, list):
        out.add("tasks", raw_tasks, "tasks is not a list; archived tasks kept")
        return None
    plan = _plan(declared.TASK, declared.TASK_OTHER_KEYS)
    by_digest = {digest: task_id for task_id, digest in archived.items()}
    by_id: dict[str, TaskRecord] = {}
    for index, raw in enumerate(raw_tasks):
        digest = digests[index] if digests is not None else None
        task_id = by_digest.get(digest) if digest is not None else None
        if task_id is not None and plan.dependencies is not None:
            # the text an archived task was read from without a problem: its id and its
            # dependencies are valid ids, so they are taken as they are, not checked again
            if task_id in by_id:
                out.add("id", task_id, "duplicate task id; the last one was kept", task_id)
            deps = raw.get(plan.dependencies)
            if deps is not None:
                deps = [d if type(d) is str else str(d) for d in deps]
            by_id[task_id] = TaskRecord(task_id, {"depends_on": deps}, digest, as_archived=True)
            continue
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
        before = out.count
        state = _read_state(plan, raw, out, classifier, task_id)
        by_id[task_id] = TaskRecord(task_id, state, digest if out.count == before else None)
    _check_dependencies(by_id, out)
    return list(by_id.values())


def _depends_on(raw: Any, task_id: str | None, out: _Collector) -> list[str] | None:
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


_HELPERS = {"depends_on": _depends_on, "extra": _extra}


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
            f.name: out.take(
                clean_text(raw.get(f.key), f.length), f"val_errors[{index}].{f.key}", raw.get(f.key)
            )
            for f in declared.VAL_ERROR
        }
        if set(raw) - _VAL_ERROR_KEYS:
            out.add(f"val_errors[{index}]", raw, "unknown validation error keys (in snapshot)")
        fingerprint = hashlib.sha256(
            canonical([fields[c] for c in VAL_ERROR_FIELDS]).encode("ascii")
        ).hexdigest()
        count = found[fingerprint].occurrences + 1 if fingerprint in found else 1
        found[fingerprint] = ValErrorRecord(fingerprint, fields, count)
    return list(found.values())
