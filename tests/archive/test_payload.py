"""Payload -> records: flattening, leniency with recorded problems, and clear rejections."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import factories
import pytest

import archiver
from archiver.archive.jsonload import MAX_DEPTH, JsonError, loads
from archiver.archive.payload import identify, parse_payload
from archiver.errors import PayloadError
from archiver.statuses import StatusClassifier


def test_flattens_block_info_dependencies_and_val_errors() -> None:
    parsed = parse_payload(json.dumps(factories.job(tasks=3, val_errors=2)))
    assert (parsed.workflow_id, parsed.job_id) == ("wf-1", "job-1")
    t2 = parsed.tasks[2].state
    assert (t2["block_id"], t2["block_name"], t2["block_version"]) == (
        "blk-t02",
        "ortho-rectify",
        "1.4.2",
    )
    assert parsed.dependencies == [("t01", "t00"), ("t02", "t00"), ("t02", "t01")]
    first = parsed.val_errors[0].fields
    assert first["source_component"] == "comp-0" and first["target_component"] == "comp-1"
    assert parsed.problems == []


def test_body_is_kept_verbatim_and_hash_ignores_formatting() -> None:
    payload = factories.job(tasks=1)
    compact = json.dumps(payload, separators=(",", ":"))
    pretty = json.dumps(payload, indent=2, sort_keys=True)
    a, b = parse_payload(compact), parse_payload(pretty)
    assert a.body == compact and b.body == pretty
    assert a.sha256 == b.sha256
    assert parse_payload(json.dumps({**payload, "cost": 1})).sha256 != a.sha256


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[1, 2]", "expected a JSON object, got list"),
        ('"job"', "expected a JSON object, got str"),
        ("<html><body>502 Bad Gateway</body></html>", "looks like an HTML page"),
        ('{"id": "j", "workflow_id": "w", "cost": 1', "not valid JSON"),
        ('{"id": "j", "workflow_id": "w", "cost": NaN}', "NaN"),
        ('{"workflow_id": "w"}', "no job id"),
        ('{"id": "", "workflow_id": "w"}', "no job id"),
        ('{"id": null, "workflow_id": "w"}', "no job id"),
        ('{"id": "j"}', "no workflow_id"),
        ('{"id": "j", "workflow_id": "w", "cost": 18446744073709551616}', "beyond the 64-bit"),
        ('{"id": "j", "workflow_id": "w", "cost": ' + "9" * 5000 + "}", "not a usable JSON"),
        ('{"id": "' + "x" * 300 + '", "workflow_id": "w"}', "not a usable identifier"),
        (b'{"id": "j\xff", "workflow_id": "w"}', "not UTF-8"),
    ],
)
def test_rejections_say_why(raw: str | bytes, message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        parse_payload(raw)


def test_expected_ids_guard_against_the_wrong_job() -> None:
    body = json.dumps(factories.job("j1", "w1", tasks=0))
    assert parse_payload(body, workflow_id="w1", job_id="j1").job_id == "j1"
    with pytest.raises(PayloadError, match="expected 'j2'"):
        parse_payload(body, job_id="j2")
    with pytest.raises(PayloadError, match="belongs to workflow 'w1', expected 'w2'"):
        parse_payload(body, workflow_id="w2")
    no_wf = {k: v for k, v in factories.job(tasks=0).items() if k != "workflow_id"}
    assert parse_payload(no_wf, workflow_id="w9").workflow_id == "w9"


def test_numeric_ids_become_text() -> None:
    parsed = parse_payload({"id": 42, "workflow_id": 7, "tasks": [{"id": 1}]})
    assert (parsed.workflow_id, parsed.job_id, parsed.tasks[0].task_id) == ("7", "42", "1")


def test_unknown_fields_are_kept_not_errors() -> None:
    parsed = parse_payload({**factories.job(tasks=1), "region": "eu", "priority": 3})
    assert parsed.job["extra"] == {"region": "eu", "priority": 3}
    assert parsed.problems == []


@pytest.mark.parametrize(
    ("overrides", "field", "column", "value"),
    [
        ({"cost": "123"}, "cost", "cost", 123),
        ({"cost": True}, "cost", "cost", None),
        ({"cost": []}, "cost", "cost", None),
        ({"cost": 12.5}, "cost", "cost", None),
        ({"progress": "abc"}, "progress", "progress_pct", None),
        ({"progress": ">100"}, "progress", "progress_pct", None),
        ({"time_taken": "forever"}, "time_taken", "time_taken_s", None),
        ({"created_at": "last tuesday"}, "created_at", "created_at", None),
        ({"status": "Exploded"}, "status", "status_class", "unknown"),
        ({"estimated_duration": "soon"}, "estimated_duration", "estimated_duration", None),
    ],
)
def test_unparsable_values_are_recorded(
    overrides: dict, field: str, column: str, value: object
) -> None:
    parsed = parse_payload(factories.job(tasks=0, **overrides))
    assert parsed.job[column] == value
    assert [p.field for p in parsed.problems] == [field]


def test_swapped_types_inside_tasks_and_errors() -> None:
    payload = factories.job(tasks=2, val_errors=1)
    payload["tasks"][0]["block_info"] = "ndvi"
    payload["tasks"][1]["depends_on"] = "t00"
    payload["tasks"].append("not a task")
    payload["tasks"].append({"name": "no id"})
    payload["val_errors"].append(42)
    parsed = parse_payload(payload)
    assert [t.task_id for t in parsed.tasks] == ["t00", "t01"]
    assert parsed.tasks[0].state["block_name"] is None
    assert parsed.tasks[1].state["depends_on"] is None
    assert len(parsed.val_errors) == 1
    assert sorted(p.field for p in parsed.problems) == [
        "block_info",
        "depends_on",
        "tasks[2]",
        "tasks[3].id",
        "val_errors[1]",
    ]


def test_tasks_absent_null_and_wrong_type_mean_not_reported() -> None:
    base = factories.job(tasks=0)
    del base["tasks"]
    assert parse_payload(base).tasks is None
    assert parse_payload({**base, "tasks": None}).tasks is None
    wrong = parse_payload({**base, "tasks": {"t1": {}}})
    assert wrong.tasks is None and wrong.problems[0].field == "tasks"
    assert parse_payload({**base, "tasks": []}).tasks == []


def test_val_errors_null_is_empty_absent_is_not_reported() -> None:
    base = factories.job(tasks=0)
    assert parse_payload({**base, "val_errors": None}).val_errors == []
    del base["val_errors"]
    assert parse_payload(base).val_errors is None


def test_duplicate_val_errors_count_occurrences() -> None:
    payload = factories.job(tasks=0, val_errors=1)
    payload["val_errors"] *= 3
    parsed = parse_payload(payload)
    assert len(parsed.val_errors) == 1 and parsed.val_errors[0].occurrences == 3


def test_duplicate_json_keys_keep_last_and_are_recorded() -> None:
    parsed = parse_payload('{"id": "j", "workflow_id": "w", "cost": 1, "cost": 2}')
    assert parsed.job["cost"] == 2
    assert [(p.field, p.message) for p in parsed.problems] == [
        ("cost", "duplicate JSON key; the last value was kept")
    ]


@pytest.mark.parametrize(
    ("status", "klass", "terminal"),
    [
        ("completed", "succeeded", True),
        ("COMPLETED", "succeeded", True),
        (" In-Progress ", "running", False),
        ("canceled", "cancelled", True),
        ("failed", "failed", True),
        ("queued", "queued", False),
        ("mystery", "unknown", False),
    ],
)
def test_status_classes(status: str, klass: str, terminal: bool) -> None:
    job = parse_payload(factories.job(tasks=0, status=status)).job
    assert (job["status"], job["status_class"], job["is_terminal"]) == (status, klass, terminal)


def test_status_map_overrides() -> None:
    classifier = StatusClassifier.with_overrides({"Archived": "succeeded", "running": "queued"})
    job = parse_payload(factories.job(tasks=0, status="archived"), classifier=classifier).job
    assert (job["status_class"], job["is_terminal"]) == ("succeeded", True)
    with pytest.raises(Exception, match="not one of"):
        StatusClassifier.with_overrides({"x": "done-ish"})


def lines_run(call: Callable[[], object]) -> int:
    """Lines of archiver code that ``call`` executes: a measure of work that no load on the machine
    changes (work hidden inside one C call, a regular expression's, is not seen)."""
    root = str(Path(archiver.__file__).parent)
    count = 0

    def trace(frame: FrameType, event: str, arg: object) -> Callable[..., object] | None:
        nonlocal count
        if not frame.f_code.co_filename.startswith(root):
            return None  # no line events for other code
        if event == "line":
            count += 1
        return trace

    previous = sys.gettrace()
    sys.settrace(trace)
    try:
        call()
    finally:
        sys.settrace(previous)
    return count


class _CountedId(str):
    """A task id that counts its comparisons: a scan of a list per dependency shows as n**2."""

    compared = 0

    def __eq__(self, other: object) -> bool:
        _CountedId.compared += 1
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_a_long_depends_on_list_is_read_in_linear_time() -> None:
    """Counted, not timed: ten times the dependencies cost at most about ten times the lines run
    and the id comparisons made (a mapping payload keeps the counting ids as they are)."""

    def doc(n: int, ids: Callable[[str], str] = str) -> dict[str, Any]:
        doc = factories.job(tasks=1)
        doc["tasks"][0]["depends_on"] = [ids(f"d{i}") for i in range(n)]
        return doc

    small, large = json.dumps(doc(1000)), json.dumps(doc(10_000))
    ratio = lines_run(lambda: parse_payload(large)) / lines_run(lambda: parse_payload(small))
    assert ratio < 11, ratio
    compared = []
    for n in (1000, 10_000):
        _CountedId.compared = 0
        parse_payload(doc(n, _CountedId))
        compared.append(_CountedId.compared)
    assert 0 < compared[1] < 11 * compared[0], compared


def test_problems_recorded_per_payload_are_bounded() -> None:
    doc = factories.job(tasks=0)
    doc["tasks"] = [0] * 20_000
    assert len(parse_payload(json.dumps(doc)).problems) <= 1000


def nested(depth: int, text: str) -> Any:
    """A value ``depth`` containers deep (lists and objects in turn), ``text`` at the bottom."""
    value: Any = text
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


@pytest.mark.parametrize("where", ["job", "task", "val_error", "tasks"])
@pytest.mark.parametrize("text", ["x", "[[{{" * 40])  # brackets in a string are not nesting
@pytest.mark.parametrize("extra", [-1, 0, 1])
def test_nesting_is_refused_past_the_limit_wherever_it_stands(
    where: str, text: str, extra: int
) -> None:
    """``identify`` checks the nesting from the canonical texts, walking the tree only where they
    do not show it shallow enough: it refuses exactly what ``loads`` refuses, with its reason."""
    job = factories.job(tasks=2, val_errors=1)
    below = {"job": 1, "task": 3, "val_error": 3, "tasks": 2}[where]  # containers above it
    value = nested(MAX_DEPTH - below + extra, text)
    if where == "job":
        job["x"] = value
    elif where == "task":
        job["tasks"][1]["x"] = value
    elif where == "val_error":
        job["val_errors"][0]["x"] = value
    else:
        job["tasks"].append(value)
    body = json.dumps(job)
    try:
        loads(body)
    except JsonError as exc:
        with pytest.raises(PayloadError, match=re.escape(str(exc))):
            identify(body)
        assert extra > 0
    else:
        identify(body)
        assert extra <= 0
