"""The compiled readers read every value, and find every problem, as the generic reader does.

``archiver.archive.readers`` compiles each entity's reading plan into one function that tests the
usual values inline; the generic, field-by-field reader (``payload._read_generic``) says what
reading means. So both read the same tasks and jobs, hostile ones included, and must give the
same state (values, their types, the key order) and the same problems in the same order.
"""

from __future__ import annotations

import ast
import functools
from decimal import Decimal
from pathlib import Path
from typing import Any

import factories
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver import fields as declared
from archiver.archive import digests, readers
from archiver.archive import payload as reader
from archiver.archive.payload import _Collector, _plan, _read_generic
from archiver.fields import Derive, Field, Kind
from archiver.sim import jobgen
from archiver.sim.payloads import job_payload
from archiver.statuses import DEFAULT_CLASSIFIER, StatusClassifier

CUSTOM = StatusClassifier.with_overrides({"running": "queued"})
ENTITIES = {
    "job": (declared.JOB, declared.JOB_OTHER_KEYS),
    "task": (declared.TASK, declared.TASK_OTHER_KEYS),
}


def both_ways(
    entity: str, data: dict[str, Any], classifier: StatusClassifier = DEFAULT_CLASSIFIER
) -> None:
    plan = _plan(*ENTITIES[entity])
    task_id = None if entity == "job" else "t-1"
    compiled = plan.reader(classifier)
    assert not isinstance(compiled, functools.partial), "the declaration is compiled"
    fast, slow = _Collector(), _Collector()
    assert outcome(compiled, data, fast, task_id) == outcome(
        functools.partial(_read_generic, plan, classifier=classifier), data, slow, task_id
    )
    assert fast.problems == slow.problems and fast.dropped == slow.dropped


def outcome(read: Any, data: dict[str, Any], out: _Collector, task_id: str | None) -> Any:
    """The state as compared (keys in order, each value's type and exact text), or the error."""
    try:
        state = read(data, out, task_id)
    except (TypeError, ValueError, KeyError) as exc:
        return type(exc), str(exc)
    return [(k, type(v).__name__, repr(v)) for k, v in state.items()]


# values of every type each field may meet, the usual ones and the doubtful ones
EDGES = [
    *(2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 2**53, 2**200, 0, -1, 100, 101, 50),
    *(True, False, 0.0, -0.0, 100.0, 100.5, 1e300, 2.0**53, 75.25, None),
    *("", " ", "\x00", "a\x00b", "\ud800", "héllo", "x" * 255, "x" * 256, "é" * 256),
    *("75%", "3/4", "1h2m3.5s", "-0s", "00:12:34", "1e400", "-0.0", "0.75", " 7 %"),
    *("2025-03-03T08:02:03.001928Z", "0001-01-01T00:00:00Z", "2025-03-03 08:02:03+02:00"),
    *("2025-03-03T08:02:03.0019281234Z", "2025-13-03T08:02:03Z", "1741000000"),
    *("running", "Completed", " In-Progress ", "weird-status", "t01"),
    *([], [1, 2, 255], [1, "a"], ["t01", "t01"], ["t01", 3, None, "", "\x07"], [[1]], {}),
    {"id": "b", "name": "n", "version": "1"},
    {"id": 1, "other": "\x00"},
    {"a": "\ud800"},
]
scalars = st.one_of(
    st.sampled_from(EDGES),
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-5, max_value=105),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=-1, max_value=101),
    st.text(max_size=12),
    st.text(alphabet=st.characters(codec="ascii"), min_size=250, max_size=260),
    st.sampled_from(
        [
            "",
            " ",
            "\x00",
            "a\x00b",
            "\ud800",
            "héllo",
            "75%",
            "3/4",
            "1h2m3.5s",
            "-0s",
            "00:12:34",
            "2025-03-03T08:02:03.001928Z",
            "0001-01-01T00:00:00Z",
            "2025-03-03 08:02:03+02:00",
            "running",
            "Completed",
            "weird-status",
            "t01",
            "-0.0",
            "1e400",
        ]
    ),
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner)
)
field_values = st.one_of(
    scalars,
    st.lists(st.integers(min_value=0, max_value=255), max_size=5),
    st.lists(st.sampled_from(["t01", "t02", "t01", 3, None, "", "\x07"]), max_size=4),
    json_values,
)


def keys_of(entity: str) -> list[str]:
    fields, other = ENTITIES[entity]
    tops = [f.top_key for f in fields if f.top_key is not None]
    return sorted({*tops, *other, "surprise"})


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
@pytest.mark.parametrize("entity", sorted(ENTITIES))
def test_hostile_entities_are_read_alike(entity: str, data: st.DataObject) -> None:
    keys = keys_of(entity)
    chosen = data.draw(st.dictionaries(st.sampled_from(keys), field_values, max_size=len(keys)))
    block = data.draw(
        st.none()
        | st.dictionaries(st.sampled_from(["id", "name", "version", "other"]), field_values)
        | field_values
    )
    if block is not None:
        chosen["block_info"] = block
    classifier = data.draw(st.sampled_from([DEFAULT_CLASSIFIER, CUSTOM]))
    both_ways(entity, chosen, classifier)


@pytest.mark.parametrize("entity", sorted(ENTITIES))
def test_each_field_reads_each_edge_alike(entity: str) -> None:
    for key in keys_of(entity):
        for value in EDGES:
            both_ways(entity, {key: value})
            both_ways(entity, {"status": "running", "block_info": {"id": value}, key: value})


@pytest.mark.parametrize("classifier", [DEFAULT_CLASSIFIER, CUSTOM], ids=["default", "custom"])
def test_simulated_jobs_are_read_alike(classifier: StatusClassifier) -> None:
    for plan in jobgen.population(5, 12, tasks=(3, 8)):
        for share in (0.0, 0.4, 1.0, 1.3):
            body = job_payload(plan, plan.end * share)
            both_ways("job", body, classifier)
            for task in body["tasks"]:
                both_ways("task", task, classifier)


def test_factories_jobs_are_read_alike() -> None:
    body = factories.job(tasks=4, val_errors=1, surprise=1)
    body["tasks"][0].update(progress=100.0, status=None, block_info="x", cost=2**64)
    body["tasks"][1].update(progress=-0.0, status="  In-Progress ", time_taken=3.5)
    body["tasks"][2].update(progress=Decimal("50.5"), name=7, created_at=1.5e9)
    both_ways("job", body)
    for task in body["tasks"]:
        both_ways("task", task)


def test_a_declaration_it_cannot_compile_is_read_the_generic_way() -> None:
    """A kind with no plain reader compiles to the generic reader, and fails as it does."""
    entity = (*declared.TASK, Field("weight", Kind.DECIMAL, "weight"))
    plan = _plan(entity, declared.TASK_OTHER_KEYS)
    with pytest.raises(readers.Unsupported):
        readers.compile_reader(plan.steps, plan.known, DEFAULT_CLASSIFIER, reader._HELPERS)
    with pytest.raises(TypeError, match="no plain reader"):
        plan.reader(DEFAULT_CLASSIFIER)({"weight": 1}, _Collector(), "t-1")
    derived = (Field("status_class", Kind.TEXT, "status", Derive.STATUS_CLASS),)  # no status
    plan = _plan(derived, ())
    with pytest.raises(KeyError):
        plan.reader(DEFAULT_CLASSIFIER)({"status": "running"}, _Collector(), None)


def test_the_code_that_reads_is_in_the_digests() -> None:
    """A task's digest covers the code that types it: every module of ours the reading imports
    (errors aside: a refusal stores nothing), so a release that reads otherwise reads again."""
    package = Path(reader.__file__).parent.parent
    covered = {Path(package, *parts) for parts in digests._READING}
    for module in (reader, readers):
        tree = ast.parse(Path(str(module.__file__)).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("archiver"):
                names = [node.module] if node.module != "archiver" else []
                names += [f"archiver.{a.name}" for a in node.names if node.module == "archiver"]
                for name in names:
                    if name == "archiver.errors":
                        continue
                    path = Path(package.parent, *name.split("."))
                    assert path.with_suffix(".py") in covered, name
