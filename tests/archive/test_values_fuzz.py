"""Hostile numbers for the lenient parsers: never an unforeseen error, never unbounded work.

Work is bounded structurally, not by the clock (which flakes on a shared machine): every call is
run under ``tracemalloc`` and may allocate at most a small constant plus the size of its input.
Converting a huge number is what costs time (1e1000000 to an int, a million-digit int to a
Decimal: quadratic in the digits), and each conversion allocates its result, so a parser that
converts before judging the size blows the allocation budget long before it would blow a timer.
``read_number``, the guard every numeric parser goes through, is also tested directly.
"""

from __future__ import annotations

import json
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import factories
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archiver.archive.payload import parse_payload
from archiver.archive.values import (
    MAX_EXPONENT,
    MAX_NUMBER_TEXT,
    OUT_OF_RANGE,
    PCT_QUANTUM,
    SECONDS_QUANTUM,
    Parsed,
    clean_json,
    clean_text,
    parse_duration,
    parse_int,
    parse_number,
    parse_progress,
    parse_timestamp,
    read_number,
)
from archiver.errors import PayloadError

# bytes a call may allocate beyond a few copies of its input; a normal call takes about 2 KB
WORK_BUDGET = 16 * 1024


@pytest.fixture(scope="module", autouse=True)
def _traced() -> Iterator[None]:
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    yield
    if started:
        tracemalloc.stop()


def shown(raw: Any) -> str:
    """A test id: a few characters of the value (repr refuses ints past 4,300 digits)."""
    if isinstance(raw, int) and raw.bit_length() > 256:
        return f"int_{raw.bit_length()}_bits"
    return repr(raw)[:30]


def bounded(parser: Callable[[Any], Parsed[Any]], raw: Any) -> Parsed[Any]:
    """``parser(raw)``, asserting it returned a Parsed and allocated within the work budget."""
    # a few copies of a string are linear work (strip, json.dumps, encode); nothing else may grow
    budget = WORK_BUDGET + (4 * sys.getsizeof(raw) if isinstance(raw, str) else 0)
    # tracemalloc counts every thread's allocations: a thread left running by another test (a
    # server, a pool) can allocate during one call. A parser's own work is the same each time,
    # so the least of three measurements is its own; a real overrun repeats every time.
    peaks = []
    for _ in range(3):
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        parsed = parser(raw)
        peaks.append(tracemalloc.get_traced_memory()[1] - before)
        if peaks[-1] <= budget:
            break
    assert isinstance(parsed, Parsed)
    peak = min(peaks)
    assert peak <= budget, f"{getattr(parser, '__name__', parser)} allocated {peak} bytes"
    return parsed


def progress_of(raw: Any) -> Parsed[Decimal]:
    return parse_progress(raw)


def task_progress(raw: Any) -> Parsed[Decimal]:
    """How payload.py reads a task's progress."""
    return parse_number(raw, PCT_QUANTUM, Decimal(0), Decimal(100))


def check_int(parsed: Parsed[Any]) -> None:
    assert parsed.value is None or (type(parsed.value) is int and -(2**63) <= parsed.value < 2**63)


def check_decimal(lo: Decimal, hi: Decimal, quantum: Decimal) -> Callable[[Parsed[Any]], None]:
    def check(parsed: Parsed[Any]) -> None:
        if parsed.value is not None:
            assert isinstance(parsed.value, Decimal) and parsed.value.is_finite()
            assert lo <= parsed.value <= hi
            assert parsed.value.as_tuple().exponent == quantum.as_tuple().exponent

    return check


def check_timestamp(parsed: Parsed[Any]) -> None:
    assert parsed.value is None or (
        isinstance(parsed.value, datetime) and parsed.value.tzinfo is not None
    )


def check_text(parsed: Parsed[Any]) -> None:
    if parsed.value is not None:
        assert isinstance(parsed.value, str)
        parsed.value.encode("utf-8")  # storable in every database


# Every lenient parser of values.py, with what its value must look like when it has one.
PARSERS: dict[str, tuple[Callable[[Any], Parsed[Any]], Callable[[Parsed[Any]], None]]] = {
    "int": (parse_int, check_int),
    "progress": (progress_of, check_decimal(Decimal(0), Decimal(100), PCT_QUANTUM)),
    "task_progress": (task_progress, check_decimal(Decimal(0), Decimal(100), PCT_QUANTUM)),
    "duration": (parse_duration, check_decimal(Decimal(0), Decimal("1e12"), SECONDS_QUANTUM)),
    "timestamp": (parse_timestamp, check_timestamp),
    "text": (clean_text, check_text),
    "text_limited": (lambda raw: clean_text(raw, 255), check_text),
}

# The extremes named in the report of issue 14, and their neighbours.
EXTREMES: list[Any] = [
    "1e1000000",
    "-1e1000000",
    "1e999999999",
    "1e-999999999",
    "-0e99999",
    "0e999999999",
    "1e99999999999999999999",
    "-1e-99999999999999999999",
    "0.5e99999999999999999999",
    "0e-99999999999999999999",
    "9" * 5000,
    "-" + "9" * 5000,
    "1" * 64,
    "1" * 65,
    "0." + "0" * 62 + "1",
    "1/0",
    "0/0",
    "1/0." + "0" * 1_000_000 + "1",
    "1/0." + "0" * 60 + "1",
    "9" * 30 + "/0." + "0" * 30 + "1",
    "1." + "1" * 5000 + "%",
    "1." + "1" * 5000,
    "1" * 100_000 + "s",
    "P" + "9" * 60 + "D",
    "9" * 60 + "h",
    "Infinity",
    "-Infinity",
    "nan",
    "NaN%",
    "sNaN",
    "\u0661\u0662\u0663",  # Arabic-Indic 123: Decimal reads these digits
    "\u0661e" + "\u0669" * 9,  # and 1e999999999 in them
    "\uff11\uff12\uff13",  # fullwidth 123
    "²³",
    "\ud800",
    "1\udfff",
    "12\x00",
    " 75 %",
    "1e1000000%",
    "-1e1000000s",
    "2026-10-01T12:00:00." + "1" * 100 + "Z",
    10**4299,
    -(10**4299),
    10**5000,  # not from JSON (it refuses past 4,300 digits), but a caller may hand one in
    2**63,
    2**133,
    2**134,
    -(2**134),
    1e308,
    -1e308,
    5e-324,
    float("inf"),
    float("nan"),
    Decimal("1e999999999"),
    Decimal("-1e999999999"),
    Decimal("NaN"),
    Decimal("sNaN"),
    Decimal("Infinity"),
    True,
    None,
    [],
    {},
]


@pytest.mark.parametrize("raw", EXTREMES, ids=shown)
@pytest.mark.parametrize("name", sorted(PARSERS))
def test_extremes_give_a_value_or_a_problem_with_bounded_work(name: str, raw: Any) -> None:
    parser, check = PARSERS[name]
    check(bounded(parser, raw))


@pytest.mark.parametrize(
    "raw",
    ["1e1000000", "1e999999999", "-1e1000000", "1e100000", "1" + "0" * 40 + "e999", 10**100_000],
    ids=shown,
)
def test_a_huge_exponent_is_beyond_64_bits_without_conversion(raw: Any) -> None:
    """Issue 14 #19: "1e1000000" took 55 s of CPU in parse_int, "1e999999999" never ended."""
    assert bounded(parse_int, raw) == Parsed(None, OUT_OF_RANGE)


def test_an_unreadable_progress_fraction_is_null_and_a_problem() -> None:
    """Issue 14 #20: a million zeros in the denominator raised decimal.Overflow."""
    parsed = bounded(parse_progress, "1/0." + "0" * 1_000_000 + "1")
    assert parsed.value is None
    assert parsed.problem and parsed.problem.startswith("unreadable progress")
    huge = bounded(parse_progress, "1/0." + "0" * 58 + "1")  # short enough to read: > 100
    assert huge.value is None and huge.problem == (
        f"unreadable progress: 1/0.{'0' * 58}1 is outside 0..100"
    )


@pytest.mark.parametrize("raw", ["-1e999999999", "-1e99999999999999999999", "-1e1000000s"])
def test_a_negative_huge_duration_is_a_problem(raw: str) -> None:
    """A plain minus on 1e999999999 overflowed the thread's context (decimal.Overflow)."""
    parsed = bounded(parse_duration, raw)
    assert parsed.value is None and parsed.problem


def test_an_integer_timestamp_past_1e308_is_a_problem() -> None:
    """Found by the fuzz below: math.isfinite turned a JSON integer of 310 digits or more into an
    OverflowError, out of parse_payload."""
    for raw in (10**309, 10**4299, -(10**400)):
        assert bounded(parse_timestamp, raw) == Parsed(None, "epoch timestamp out of range")


def test_an_int_past_the_text_limit_is_a_problem_not_a_value_error() -> None:
    parsed = bounded(clean_text, 10**5000)
    assert parsed == Parsed(None, "an integer too long to write as text")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1e39", Decimal("1e39")),
        ("9.99e39", Decimal("9.99e39")),
        ("1e40", Decimal("Infinity")),
        ("-1e40", Decimal("-Infinity")),
        ("1e999999999", Decimal("Infinity")),
        ("1e99999999999999999999", Decimal("Infinity")),  # beyond what Decimal can hold
        ("-0.5e99999999999999999999", Decimal("-Infinity")),
        ("-0e99999999999999999999", Decimal("-0")),
        ("0e999999999", Decimal("0")),
        (10**39, Decimal(10**39)),
        (2**133, Decimal("Infinity")),  # 133 bits, over 1e40: judged by its exponent
        (2**134, Decimal("Infinity")),  # judged by its bit length alone
        (-(2**134), Decimal("-Infinity")),
        (1e300, Decimal("Infinity")),
        ("1" * MAX_NUMBER_TEXT, Decimal("Infinity")),
        ("1" * (MAX_NUMBER_TEXT + 1), None),
        ("nan", None),
        ("Infinity", None),
        (float("inf"), None),
        (True, None),
        ("1_000", None),
    ],
    ids=shown,
)
def test_read_number_judges_size_before_converting(raw: Any, expected: Decimal | None) -> None:
    number = read_number(raw)
    if expected is None:
        assert number is None
    else:
        assert number is not None
        assert str(number) == str(expected)


def test_read_number_keeps_tiny_numbers_nonzero() -> None:
    """Below any quantum but not zero: an integer column still calls it a fraction."""
    for raw in ("1e-999999999", "-1e-99999999999999999999"):
        number = read_number(raw)
        assert number is not None and not number.is_zero() and number.adjusted() < -MAX_EXPONENT
        assert parse_int(raw).problem == "expected an integer, got a fraction"
    assert parse_progress("1e-999999999").value == Decimal(0)  # rounded to the column's quantum


# --- Hypothesis ------------------------------------------------------------------------------

_ANY_CHAR = st.characters(exclude_categories=[])  # surrogates included
_DIGITS = st.text(
    st.sampled_from("0123456789\u0660\u0661\u0669\uff11\uff12"), min_size=1, max_size=80
)
_EXPONENT = st.one_of(
    st.integers(-50, 50),
    st.integers(-(10**25), 10**25),
    st.sampled_from([999_999_999, -999_999_999, 10**18, -(10**18), 10**6, -(10**6)]),
)
_NUMERIC_TEXT = st.builds(
    lambda sign, whole, frac, exp, suffix, pad: f"{pad}{sign}{whole}{frac}{exp}{suffix}{pad}",
    st.sampled_from(["", "-", "+", "--"]),
    _DIGITS,
    st.one_of(st.just(""), _DIGITS.map(lambda d: "." + d)),
    st.one_of(st.just(""), _EXPONENT.map(lambda e: f"e{e}")),
    st.sampled_from(["", "%", " %", "s", "ms", "h", "x"]),
    st.sampled_from(["", " ", "\t"]),
)
_FRACTION_TEXT = st.builds(lambda a, b: f"{a}/{b}", _DIGITS, _DIGITS | _DIGITS.map("0.{}".format))
_BIG_INTS = st.one_of(
    st.integers(),
    st.integers(-(2**200), 2**200),
    st.integers(1, 4299).map(lambda n: 10**n - 1),
    st.integers(1, 4299).map(lambda n: -(10**n)),
)
# What a JSON decoder can hand over (ints up to 4,300 digits), and then the rest of the extremes.
JSON_EXTREMES = [
    raw
    for raw in EXTREMES
    if not isinstance(raw, Decimal) and not (isinstance(raw, int) and abs(raw) >= 10**4300)
]
_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    _BIG_INTS.filter(lambda raw: abs(raw) < 10**4300),
    st.floats(),
    st.text(_ANY_CHAR, max_size=100),
    _NUMERIC_TEXT,
    _FRACTION_TEXT,
    st.sampled_from(JSON_EXTREMES),
)
# sampled by index: Hypothesis writes its strategies' repr, and repr refuses 10**5000
_SCALARS = _JSON_SCALARS | st.integers(0, len(EXTREMES) - 1).map(EXTREMES.__getitem__)


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(raw=_SCALARS)
def test_every_parser_gives_its_parsed_and_bounded_work(raw: Any) -> None:
    for parser, check in PARSERS.values():
        check(bounded(parser, raw))
    if not isinstance(raw, Decimal):  # not a JSON value: no payload holds one
        json_value = bounded(clean_json, raw)
        assert json_value.value == raw or json_value.problem or raw != raw  # NaN is not itself


@settings(max_examples=300, deadline=None, derandomize=True)
@given(raw=st.one_of(_NUMERIC_TEXT, _BIG_INTS, st.floats(), st.decimals()))
def test_read_number_results_are_small(raw: Any) -> None:
    """Every finite number read has at most 64 digits and an exponent below MAX_EXPONENT (so
    any later comparison, quantization or int() is bounded), and zero has no exponent."""
    number = read_number(raw)
    if number is not None and number.is_finite():
        assert len(number.as_tuple().digits) <= MAX_NUMBER_TEXT
        if number.is_zero():
            assert number.as_tuple().exponent == 0
        else:
            assert number.adjusted() < MAX_EXPONENT


# --- the whole payload path ------------------------------------------------------------------

JOB_NUMBERS = ("progress", "cost", "time_taken", "estimated_duration", "created_at", "updated_at")
TASK_NUMBERS = ("progress", "estimated_time_duration", "time_taken", "created_at", "recv_time")
# Tokens written into the JSON text as they are, so the decoder reads them as bare numbers.
BARE_TOKENS = st.sampled_from(
    [
        "1e1000000",
        "-1e1000000",
        "1e999999999",
        "1e-999999999",
        "-0e99999",
        "1e400",
        "9" * 4300,
        "9" * 4301,
        "1." + "1" * 5000,
        "1." + "1" * 5000 + "e308",
        "123.0e-2",
        "-0.0",
    ]
)


def _body(job_values: dict[str, Any], task_values: dict[str, Any]) -> str:
    """A job with one task whose numeric fields hold the values (bare tokens spliced in)."""
    tokens: dict[str, str] = {}

    def slot(value: Any) -> Any:
        if isinstance(value, tuple):  # ("bare", token)
            key = f"@@bare{len(tokens)}@@"
            tokens[f'"{key}"'] = value[1]
            return key
        return value

    doc = factories.job("job-1", "wf-1", tasks=1, val_errors=0)
    doc.update({name: slot(value) for name, value in job_values.items()})
    doc["tasks"][0].update({name: slot(value) for name, value in task_values.items()})
    text = json.dumps(doc)
    for key, token in tokens.items():
        text = text.replace(key, token)
    return text


_PAYLOAD_VALUE = st.one_of(_JSON_SCALARS, BARE_TOKENS.map(lambda token: ("bare", token)))


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    job_values=st.fixed_dictionaries({}, optional=dict.fromkeys(JOB_NUMBERS, _PAYLOAD_VALUE)),
    task_values=st.fixed_dictionaries({}, optional=dict.fromkeys(TASK_NUMBERS, _PAYLOAD_VALUE)),
)
def test_hostile_numbers_in_a_payload_are_archived_or_refused(
    job_values: dict[str, Any], task_values: dict[str, Any]
) -> None:
    body = _body(job_values, task_values)
    try:
        parsed = parse_payload(body.encode("utf-8", "surrogatepass"))
    except PayloadError as exc:
        assert str(exc)
        return
    assert parsed.job_id == "job-1"
    assert parsed.tasks is not None and len(parsed.tasks) == 1


def test_a_huge_exponent_cost_refuses_the_payload_as_beyond_64_bits() -> None:
    """Issue 14 #19: the same refusal as any cost past 64 bits, without converting 1e1000000."""
    for cost in ("1e1000000", "1e999999999", "-1e1000000"):
        with pytest.raises(PayloadError, match="beyond the 64-bit range of the cost column"):
            parse_payload(_body({"cost": cost}, {}))


def test_huge_exponents_in_estimates_and_progress_are_null_with_a_problem() -> None:
    parsed = parse_payload(
        _body(
            {"estimated_duration": "1e999999999", "progress": "1/0." + "0" * 1_000_000 + "1"},
            {"estimated_time_duration": "1e999999999", "progress": "1e999999999"},
        )
    )
    assert parsed.job["estimated_duration"] is None and parsed.job["progress_pct"] is None
    task = parsed.tasks[0] if parsed.tasks else None
    assert task is not None
    assert task.state["estimated_time_duration"] is None and task.state["progress"] is None
    messages = {(p.task_id, p.field): p.message for p in parsed.problems}
    assert messages[(None, "estimated_duration")] == OUT_OF_RANGE
    assert messages[("t00", "estimated_time_duration")] == OUT_OF_RANGE
    assert messages[(None, "progress")].startswith("unreadable progress")
    assert messages[("t00", "progress")] == "1e999999999 is outside 0..100"


def test_a_bare_huge_exponent_is_refused_by_the_decoder() -> None:
    """``1e1000000`` as a JSON number becomes a float infinity: refused before any field."""
    with pytest.raises(PayloadError, match="number 1e1000000 is out of range"):
        parse_payload(_body({"cost": ("bare", "1e1000000")}, {}))
    parsed = parse_payload(_body({"cost": ("bare", "1e-999999999")}, {}))  # a float 0.0
    assert parsed.job["cost"] == 0
