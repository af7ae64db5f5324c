"""``loads_streaming`` decodes what ``loads`` decodes, refuses what it refuses, in the same words.

The streaming path only ever sees a plain object with an array member; everything else goes to
``loads`` itself. Table-driven: each document is decoded both ways and the outcomes compared.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from archiver.archive.jsonload import MAX_DEPTH, JsonError, loads, loads_streaming

NESTED_OK = "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2)  # an element as deep as allowed
NESTED_BAD = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)

DOCUMENTS = {
    "plain": '{"jobs": [{"id": "a"}, {"id": "b", "n": 1.5}], "x": 1}',
    "members around": '{"a": {"b": [1]}, "jobs": [1, "two", null, [3]], "z": null}',
    "empty array": '{"jobs": []}',
    "empty array with space": '{ "jobs" : [ ] }',
    "empty object": "{}",
    "bom": '\ufeff{"jobs": [1]}',
    "whitespace everywhere": ' \n{ "jobs" :\t[ 1 ,\r\n 2 ] , "k" : [ ] } \n',
    "null member": '{"jobs": null}',
    "object member": '{"jobs": {"id": "a"}}',
    "duplicate other key": '{"a": 1, "jobs": [{"id": "x", "id": "y"}], "a": 2}',
    "duplicate jobs": '{"jobs": [1], "jobs": [2, 3]}',
    "not an object": '[{"jobs": [1]}]',
    "a string": '"jobs"',
    "truncated": '{"jobs": [{"id": "a"}, {"id": "b"',
    "trailing comma": '{"jobs": [1, 2,]}',
    "trailing data": '{"jobs": [1]} {"jobs": [2]}',
    "missing colon": '{"jobs" [1]}',
    "unquoted key": "{jobs: [1]}",
    "nan in an element": '{"jobs": [{"cost": NaN}]}',
    "nan elsewhere": '{"jobs": [1], "x": Infinity}',
    "huge float": '{"jobs": [1e400]}',
    "huge integer": '{"jobs": [' + "9" * 5000 + "]}",
    "deep element allowed": '{"jobs": [' + NESTED_OK + "]}",
    "deep element refused": '{"jobs": [' + NESTED_BAD + "]}",
    "deep member refused": '{"x": ' + NESTED_BAD + ', "jobs": []}',
    "very deep": '{"jobs": [' + "[" * 100_000 + "]" * 100_000 + "]}",
    "html": "<html>busy</html>",
    "empty": "",
}


def outcome_of_loads(text: str) -> tuple[str, Any]:
    try:
        decoded = loads(text)
    except JsonError as exc:
        return "error", str(exc)
    return "value", (decoded.value, decoded.duplicate_keys)


def outcome_of_streaming(text: str) -> tuple[str, Any]:
    seen: list[Any] = []
    try:
        decoded, streamed = loads_streaming(text, "jobs", seen.append)
    except JsonError as exc:
        return "error", str(exc)
    value = decoded.value
    if streamed:
        assert value.get("jobs") == [] or not isinstance(value.get("jobs"), list)
        if "jobs" in value and value["jobs"] == []:
            value = {**value, "jobs": seen}
    return "value", (value, decoded.duplicate_keys)


@pytest.mark.parametrize("text", DOCUMENTS.values(), ids=DOCUMENTS.keys())
def test_streaming_decodes_and_refuses_as_loads_does(text: str) -> None:
    assert outcome_of_streaming(text) == outcome_of_loads(text)


@pytest.mark.parametrize(
    ("name", "streamed"),
    [
        ("plain", True),
        ("empty array", True),
        ("null member", True),
        ("bom", True),
        ("duplicate jobs", False),
        ("not an object", False),
        ("object member", True),
    ],
)
def test_only_a_plain_object_is_streamed(name: str, streamed: bool) -> None:
    _, got = loads_streaming(DOCUMENTS[name], "jobs", lambda element: None)
    assert got is streamed


def test_elements_are_handed_over_in_order_and_not_kept() -> None:
    items = [{"id": f"j{i}", "n": i} for i in range(1000)]
    seen: list[Any] = []
    decoded, streamed = loads_streaming(json.dumps({"jobs": items}), "jobs", seen.append)
    assert streamed and seen == items
    assert decoded.value == {"jobs": []}
