"""The fast JSON texts of the write path spell every value exactly as ``json`` does: the stored
JSON columns and every history row's hash depend on it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from archiver.archive.changelog import as_text
from archiver.archive.jsonload import canonical
from archiver.archive.jsontext import dumps, fast_encode

VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -7,
    2**80,
    1.5,
    1e-7,
    float("nan"),
    "",
    "plain",
    'quote " back \\ slash',
    "é ü \u2028 \U0001f600 \x00",
    [],
    {},
    [0, 1, 255, 1023],
    [1023, 1024, -1],  # beyond the table of small ints, and negative
    [True, 1, False],  # bools are not ints in JSON
    [1, 1.0],
    [1, [2, 3]],
    ["a", 1, None],
    {"b": 1, "a": [1, 2], "é": {"z": None, "y": "x"}},
    [{"k": [10, 20]}, "s"],
    list(range(300)),
]


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_dumps_is_json_dumps(value: Any) -> None:
    assert dumps(value) == json.dumps(value)


@pytest.mark.parametrize("value", VALUES, ids=range(len(VALUES)))
def test_other_options_spell_as_their_encoder(value: Any) -> None:
    for options in (
        {"sort_keys": True, "separators": (",", ":")},
        {"ensure_ascii": False},
        {"separators": (",", ":"), "ensure_ascii": True},
    ):
        encoder = json.JSONEncoder(**options)  # type: ignore[arg-type]
        assert fast_encode(encoder)(value) == encoder.encode(value)


@pytest.mark.parametrize("value", [v for v in VALUES if isinstance(v, list | dict)])
def test_as_text_of_json_is_canonical(value: Any) -> None:
    assert as_text(value) == canonical(value)


def test_errors_are_jsons_own() -> None:
    circular: list[Any] = []
    circular.append(circular)
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(circular)
    with pytest.raises(TypeError, match="Decimal is not JSON serializable"):
        dumps([Decimal(1)])
    with pytest.raises(ValueError, match="Out of range"):
        fast_encode(json.JSONEncoder(allow_nan=False))([float("inf")])
    # after an error the encoder is as good as new (no circular-reference bookkeeping left)
    assert dumps([1, {"a": circular[1:]}]) == json.dumps([1, {"a": []}])
