"""Every lenient parsing rule, table-driven: input -> typed value, and whether it is a problem."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import factories
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from archiver.archive import values
from archiver.archive.payload import parse_payload
from archiver.archive.values import (
    clean_json,
    clean_text,
    parse_duration,
    parse_int,
    parse_progress,
    parse_timestamp,
)
from archiver.errors import PayloadError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("75%", Decimal("75")),
        ("42.5%", Decimal("42.5")),
        (" 7 %", Decimal("7")),
        (75, Decimal("75")),
        (75.25, Decimal("75.25")),
        ("75", Decimal("75")),
        ("0.75", Decimal("0.75")),  # a bare number is always a percentage
        ("3/4", Decimal("75")),
        ("1/3", Decimal("33.3333")),
        ("100%", Decimal("100")),
        ("0%", Decimal("0")),
        (None, None),
        ("", None),
    ],
)
def test_progress_forms(raw: object, expected: Decimal | None) -> None:
    parsed = parse_progress(raw)
    assert parsed.value == expected
    assert parsed.problem is None


@pytest.mark.parametrize("raw", ["abc", ">100", "101%", "-1%", "3/0", True, [], {}, "NaN", "5/4"])
def test_progress_unreadable_is_null_with_problem(raw: object) -> None:
    parsed = parse_progress(raw)
    assert parsed.value is None
    assert parsed.problem


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("1h2m3.5s", "3723.5"),
        ("754s", "754"),
        ("250ms", "0.25"),
        ("1m30s", "90"),
        ("2h", "7200"),
        ("1.5h", "5400"),
        ("00:12:34", "754"),
        ("1:02:03.5", "3723.5"),
        ("12:34", "754"),
        ("2 days, 1:02:03", "176523"),
        ("1 day, 0:00:01", "86401"),
        ("PT1H2M", "3720"),
        ("PT1H2M3.5S", "3723.5"),
        ("P1DT2H", "93600"),
        ("pt5s", "5"),
        ("754", "754"),
        ("754.5", "754.5"),
        (754, "754"),
        (0, "0"),
        ("0s", "0"),
        ("1500us", "0.002"),  # quantized to milliseconds, half-even
    ],
)
def test_duration_forms(raw: object, seconds: str) -> None:
    parsed = parse_duration(raw)
    assert parsed.problem is None
    assert parsed.value == Decimal(seconds)


@pytest.mark.parametrize(
    "raw",
    # the signed forms: review defect, "++5" and "--5" were 5 s and "+-5" a clean -5 refused late
    [
        *("soon", "1h2x", "-5s", "12:99", "1:60:00", "P", "PT", True, [1], "1e400", "h"),
        *("++5", "--5", "+-5", "-+5", "+-1h", "--1h2m"),
    ],
)
def test_duration_unreadable(raw: object) -> None:
    parsed = parse_duration(raw)
    assert parsed.value is None
    assert parsed.problem


@pytest.mark.parametrize(("raw",), [(None,), ("",), ("   ",)])
def test_duration_absent_is_not_a_problem(raw: object) -> None:
    assert parse_duration(raw).value is None
    assert parse_duration(raw).problem is None


UTC_NOON = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-10-01T12:00:00Z", UTC_NOON),
        ("2026-10-01T12:00:00z", UTC_NOON),
        ("2026-10-01T17:30:00+05:30", UTC_NOON),
        ("2026-10-01T08:00:00-04:00", UTC_NOON),
        ("2026-10-01 12:00:00", UTC_NOON),  # naive: taken as UTC
        ("2026-10-01T12:00:00", UTC_NOON),
        ("2026-10-01 12:00:00 UTC", UTC_NOON),
        ("2026-10-01T12:00:00.123456Z", UTC_NOON + timedelta(microseconds=123456)),
        ("2026-10-01T12:00:00.123456789Z", UTC_NOON + timedelta(microseconds=123456)),
        ("2026-10-01T12:00:00.5+00:00", UTC_NOON + timedelta(milliseconds=500)),
        (1790856000, UTC_NOON),  # Unix seconds
        ("", None),
        (None, None),
        ("0001-01-01T00:00:00Z", None),  # Go's zero time: never happened
        ("0001-01-01T00:00:00.000000Z", None),
    ],
)
def test_timestamp_forms(raw: object, expected: datetime | None) -> None:
    parsed = parse_timestamp(raw)
    assert parsed.problem is None
    assert parsed.value == expected
    if parsed.value is not None:
        assert parsed.value.tzinfo is not None
        assert parsed.value.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "raw", ["yesterday", "2026-13-01T00:00:00Z", "2026-10-01T25:00:00Z", True, [], -5, "x" * 100]
)
def test_timestamp_unreadable(raw: object) -> None:
    parsed = parse_timestamp(raw)
    assert parsed.value is None
    assert parsed.problem


def test_timestamp_keeps_instant_across_offsets() -> None:
    ist = timezone(timedelta(hours=5, minutes=30))
    parsed = parse_timestamp("2026-10-01T17:30:00+05:30")
    assert parsed.value == datetime(2026, 10, 1, 17, 30, tzinfo=ist)


@pytest.mark.parametrize(
    ("raw", "value", "problem"),
    [
        (123, 123, False),
        (12.0, 12, False),
        ("123", 123, True),  # coerced, and recorded
        (-5, -5, False),
        (2**63 - 1, 2**63 - 1, False),
        (2**63, None, True),
        (-(2**63) - 1, None, True),
        (12.5, None, True),
        (True, None, True),  # bool is an int in Python, never a cost
        ([], None, True),
        ("12abc", None, True),
        (None, None, False),
    ],
)
def test_integers(raw: object, value: int | None, problem: bool) -> None:
    parsed = parse_int(raw)
    assert parsed.value == value
    assert bool(parsed.problem) is problem


@pytest.mark.parametrize(
    ("raw", "value", "problem"),
    [
        ("plain", "plain", False),
        ("ünïcödé ✓ 𝄞", "ünïcödé ✓ 𝄞", False),
        ("'; DROP TABLE jobs; --", "'; DROP TABLE jobs; --", False),
        ("a\x00b", "a\ufffdb", True),
        ("a\ud800b", "a\ufffdb", True),
        (42, "42", False),
        (True, "true", True),
        ({"a": 1}, None, True),
    ],
)
def test_clean_text(raw: object, value: str | None, problem: bool) -> None:
    parsed = clean_text(raw)
    assert parsed.value == value
    assert bool(parsed.problem) is problem


def test_clean_text_length_limit() -> None:
    assert clean_text("x" * 65, 64).value is None
    assert clean_text("x" * 64, 64).value == "x" * 64


def test_clean_json_keeps_shape_and_cleans_strings() -> None:
    parsed = clean_json({"a": [1, "b\x00", {"c": None}], "d": 1.5})
    assert parsed.value == {"a": [1, "b\ufffd", {"c": None}], "d": 1.5}
    assert parsed.problem == "NUL character replaced"


def test_costs_that_lost_digits_or_overflow() -> None:
    """Review defect: a cost that lost digits as a float, or past 64 bits, is a problem or a
    rejection, never a wrong number."""
    assert parse_int(12345678901234567.0).value is None
    assert parse_int(12345678901234567.0).problem
    assert parse_int(12.0).value == 12
    with pytest.raises(PayloadError, match="beyond the 64-bit"):
        parse_payload(factories.job(tasks=0, cost=1e30))
    with pytest.raises(PayloadError, match="beyond the 64-bit"):
        parse_payload(factories.job(tasks=0, cost="9" * 80))


@pytest.mark.parametrize("text", ["0ms", "0m0s", "PT0S", "0.0s", "0h", "0", "00:00:00"])
def test_zero_durations_are_zero(text: str) -> None:
    """Review defect: a zero duration, in every form, is zero and not a problem."""
    assert parse_duration(text).value == Decimal(0) and parse_duration(text).problem is None


class _CountingPattern:
    """Stands in for a compiled pattern: records the length of every text it is asked to match."""

    def __init__(self, pattern: re.Pattern[str], seen: list[int]) -> None:
        self._pattern, self._seen = pattern, seen

    def match(self, text: str) -> re.Match[str] | None:
        self._seen.append(len(text))
        return self._pattern.match(text)


def test_a_long_digit_run_in_a_duration_is_read_in_linear_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Counted, not timed: the duration readers (regular expressions that are not linear in their
    input) are handed at most 64 characters, whether the text is 4,000 or 40,000 digits long."""
    seen: list[int] = []

    def counting(reader: Callable[[str], Decimal | None]) -> Callable[[str], Decimal | None]:
        def read(text: str) -> Decimal | None:
            seen.append(len(text))
            return reader(text)

        return read

    for name in ("_go_duration", "_iso_upper", "_clock_duration"):
        monkeypatch.setattr(values, name, counting(getattr(values, name)))
    monkeypatch.setattr(values, "_DECIMAL_RE", _CountingPattern(values._DECIMAL_RE, seen))
    assert parse_duration("1h2m").value == Decimal(3720) and seen  # the hooks do see the readers
    for digits in (4000, 40_000):
        seen.clear()
        assert parse_duration("1" * digits + "x").problem
        assert max(seen, default=0) <= 64, seen


@given(
    st.one_of(st.none(), st.integers(0, 10**6)),
    st.one_of(st.none(), st.integers(0, 10**6)),
    st.integers(0, 10**6),
    st.one_of(st.none(), st.text(alphabet="0123456789", min_size=1, max_size=3)),
)
@example(None, None, 0, None)
@example(999_999, 999_999, 999_999, "999")
def test_the_apis_duration_form_reads_as_every_other(
    hours: int | None, minutes: int | None, seconds: int, fraction: str | None
) -> None:
    """``4m10.644s`` is read without Decimal arithmetic: to exactly what the general reading
    gives (value and exponent), as it gives it for text with a sign or spaces around."""
    text = "".join(
        (
            "" if hours is None else f"{hours}h",
            "" if minutes is None else f"{minutes:02d}m",
            str(seconds),
            "" if fraction is None else f".{fraction}",
            "s",
        )
    )
    general = values._parse_duration(text)
    assert repr(parse_duration(text)) == repr(general)
    assert repr(parse_duration(f" +{text} ")) == repr(general)


@pytest.mark.parametrize(
    "text", ["2025-03-03T08:02:03.001928Z", "2025-03-03T08:02:03.0019281Z", "2025-03-03T08:02:03Z"]
)
def test_fraction_digits_past_microseconds_are_cut_or_left(text: str) -> None:
    expected = datetime(2025, 3, 3, 8, 2, 3, 1928 if "." in text else 0, tzinfo=UTC)
    assert parse_timestamp(text) == values.Parsed(expected)
