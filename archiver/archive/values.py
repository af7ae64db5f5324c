"""Lenient parsers for the loosely typed scalars of a job payload.

Each parser returns ``Parsed(value, problem)``: ``value`` is what goes into the typed column
(``None`` when nothing trustworthy can be made of the input) and ``problem`` says why the input was
not taken as is. The raw payload is always kept in ``job_snapshots``, so a ``None`` here never
loses data; it only keeps a doubtful number out of a column finance will sum.

Rules (documented in the README, pinned by tests/archive/test_values.py):

* progress: ``"75%"``, ``" 7 %"``, ``"42.5%"``, ``75``, ``"75"`` are percentages; ``"3/4"`` is a
  fraction (75 %). A bare number is *always* a percentage, so ``"0.75"`` is 0.75 %, not 75 %: the
  API documents percentages, and guessing by magnitude would make 1 mean 100 % but 1.5 mean 1.5 %.
  Outside 0-100 is a problem.
* durations: Go (``"1h2m3.5s"``, ``"754s"``, ``"250ms"``), clock (``"00:12:34"``, ``"1:02:03.5"``,
  ``"12:34"`` = minutes:seconds), Python timedelta (``"2 days, 1:02:03"``), ISO-8601
  (``"PT1H2M"``, ``"P1DT2H"``), and bare seconds (``754``, ``"754.5"``).
* timestamps: ISO-8601 with ``Z`` or an offset, a space instead of ``T``, any number of fraction
  digits (truncated to microseconds), naive taken as UTC, numbers as Unix seconds; ``""``, ``null``
  and Go's zero time ``0001-01-01T00:00:00Z`` mean "not set".
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any, Generic, TypeVar

T = TypeVar("T")

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
PCT_QUANTUM = Decimal("0.0001")  # matches Numeric(9, 4)
SECONDS_QUANTUM = Decimal("0.001")  # matches Numeric(20, 3)
MAX_SECONDS = Decimal("1e12")  # 31,700 years; keeps 15 digits, exact even in a double


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    value: T | None
    problem: str | None = None


def _describe(raw: Any) -> str:
    return type(raw).__name__ if not isinstance(raw, str) else "string"


# --- numbers -------------------------------------------------------------------------------------

_DECIMAL_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def _to_decimal(raw: Any) -> Decimal | None:
    """A finite Decimal from an int, float or numeric string; None otherwise (bools excluded)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, Decimal):
        return raw if raw.is_finite() else None
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        return Decimal(repr(raw)) if math.isfinite(raw) else None
    if isinstance(raw, str):
        text = raw.strip()
        if len(text) > 64 or not _DECIMAL_RE.match(text):
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            return None
        return value if value.is_finite() else None
    return None


OUT_OF_RANGE = "integer outside the 64-bit range"
FLOAT_EXACT = 2**53  # beyond this a JSON number with a decimal point has lost its last digits


def parse_int(raw: Any) -> Parsed[int]:
    """An integer column (cost, estimated durations): ints, integral floats, digit strings."""
    if raw is None:
        return Parsed(None)
    if isinstance(raw, str) and len(raw.strip()) > 64 and raw.strip().lstrip("+-").isdigit():
        return Parsed(None, OUT_OF_RANGE)
    if isinstance(raw, float) and math.isfinite(raw) and abs(raw) >= FLOAT_EXACT:
        if not INT64_MIN <= raw <= INT64_MAX:
            return Parsed(None, OUT_OF_RANGE)
        return Parsed(None, "integer written with a decimal point beyond 2^53: not exact")
    number = _to_decimal(raw)
    if number is None:
        return Parsed(None, f"expected an integer, got {_describe(raw)}")
    if number != number.to_integral_value():
        return Parsed(None, "expected an integer, got a fraction")
    value = int(number)
    if not INT64_MIN <= value <= INT64_MAX:
        return Parsed(None, OUT_OF_RANGE)
    if isinstance(raw, str):
        return Parsed(value, "integer given as a string; read as its number")
    return Parsed(value)


def parse_number(raw: Any, quantum: Decimal, lo: Decimal, hi: Decimal) -> Parsed[Decimal]:
    if raw is None:
        return Parsed(None)
    number = _to_decimal(raw)
    if number is None:
        return Parsed(None, f"expected a number, got {_describe(raw)}")
    if not lo <= number <= hi:
        return Parsed(None, f"{number} is outside {lo}..{hi}")
    return Parsed(number.quantize(quantum, rounding=ROUND_HALF_EVEN))


# --- progress ------------------------------------------------------------------------------------

_PERCENT_RE = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*%\s*$")
_FRACTION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")
_HUNDRED = Decimal(100)


def parse_progress(raw: Any) -> Parsed[Decimal]:
    """A percentage 0-100 from the forms in the module docstring."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return Parsed(None)
    if isinstance(raw, str):
        match = _PERCENT_RE.match(raw)
        if match:
            raw = match.group(1)
        else:
            fraction = _FRACTION_RE.match(raw)
            if fraction:
                num, den = Decimal(fraction.group(1)), Decimal(fraction.group(2))
                if den == 0:
                    return Parsed(None, "progress fraction with a zero denominator")
                raw = num / den * _HUNDRED
    parsed = parse_number(raw, PCT_QUANTUM, Decimal(0), _HUNDRED)
    if parsed.problem:
        return Parsed(None, f"unreadable progress: {parsed.problem}")
    return parsed


# --- durations -----------------------------------------------------------------------------------

_GO_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "μs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
    "d": Decimal(86400),
}
_GO_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h|d)")
_CLOCK_RE = re.compile(
    r"^(?:(?P<days>\d+) days?, )?(?:(?P<h>\d+):)?(?P<m>\d{1,2}):(?P<s>\d{1,2}(?:\.\d+)?)$"
)
_ISO_RE = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def _go_duration(text: str) -> Decimal | None:
    pos, total = 0, Decimal(0)
    for match in _GO_RE.finditer(text):
        if match.start() != pos:
            return None
        total += Decimal(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) and pos > 0 else None


def _clock_duration(text: str) -> Decimal | None:
    match = _CLOCK_RE.match(text)
    if not match:
        return None
    minutes, seconds = int(match["m"]), Decimal(match["s"])
    if match["h"] is not None and (minutes >= 60 or seconds >= 60):
        return None
    if seconds >= 60:
        return None
    hours = int(match["h"] or 0) + 24 * int(match["days"] or 0)
    return Decimal(hours * 3600 + minutes * 60) + seconds


def _iso_duration(text: str) -> Decimal | None:
    match = _ISO_RE.match(text)
    if not match or text in ("P", "PT") or text.endswith("T"):
        return None
    parts = {k: Decimal(v) for k, v in match.groupdict().items() if v is not None}
    if not parts:
        return None
    return (
        parts.get("d", Decimal(0)) * 86400
        + parts.get("h", Decimal(0)) * 3600
        + parts.get("m", Decimal(0)) * 60
        + parts.get("s", Decimal(0))
    )


def _iso_upper(text: str) -> Decimal | None:
    return _iso_duration(text.upper())


def parse_duration(raw: Any) -> Parsed[Decimal]:
    """Seconds (3 decimals) from the duration forms in the module docstring."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return Parsed(None)
    if isinstance(raw, str):
        text = raw.strip()
        if len(text) > 64:  # no real duration is this long; the readers are not linear in it
            return Parsed(None, "unreadable duration")
        negative = text.startswith("-")
        body = text.lstrip("+-")
        seconds = _to_decimal(body) if _DECIMAL_RE.match(body) else None
        for reader in (_go_duration, _iso_upper, _clock_duration):
            if seconds is not None:
                break
            seconds = reader(body)
        if seconds is None:
            return Parsed(None, "unreadable duration")
        raw = -seconds if negative else seconds
    parsed = parse_number(raw, SECONDS_QUANTUM, Decimal(0), MAX_SECONDS)
    if parsed.problem:
        return Parsed(None, f"unreadable duration: {parsed.problem}")
    return parsed


# --- timestamps ----------------------------------------------------------------------------------

_FRACTION_DIGITS_RE = re.compile(r"(\.\d{6})\d+")
_ZERO_TIME_PREFIX = "0001-01-01"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_timestamp(raw: Any) -> Parsed[datetime]:
    """An aware UTC datetime (microsecond precision) from the forms in the module docstring."""
    if raw is None:
        return Parsed(None)
    if isinstance(raw, bool):
        return Parsed(None, "expected a timestamp, got bool")
    if isinstance(raw, int | float):
        if not math.isfinite(raw) or not 0 <= raw < 253402300800:  # before year 10000
            return Parsed(None, "epoch timestamp out of range")
        return Parsed(_EPOCH + timedelta(microseconds=round(raw * 1_000_000)))
    if not isinstance(raw, str):
        return Parsed(None, f"expected a timestamp, got {_describe(raw)}")
    return _parse_timestamp_text(raw)


@functools.lru_cache(maxsize=8192)
def _parse_timestamp_text(raw: str) -> Parsed[datetime]:
    """Cached: a job's tasks and its successive polls repeat the same few timestamps."""
    text = raw.strip()
    if not text:
        return Parsed(None)
    if len(text) > 64:
        return Parsed(None, "unreadable timestamp")
    text = _FRACTION_DIGITS_RE.sub(r"\1", text)
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return Parsed(None, "unreadable timestamp")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        return Parsed(None, "timestamp out of range")
    if text.startswith(_ZERO_TIME_PREFIX) and value.year == 1:
        return Parsed(None)  # Go's zero time: "never happened"
    return Parsed(value)


# --- text ----------------------------------------------------------------------------------------

_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(raw: Any, limit: int | None = None) -> Parsed[str]:
    """Text a column of every supported database can hold.

    NUL (PostgreSQL refuses it) and lone surrogates (not encodable as UTF-8) become U+FFFD and are
    reported; numbers are kept as their JSON text; other types are a problem.
    """
    if raw is None:
        return Parsed(None)
    if isinstance(raw, bool):
        return Parsed("true" if raw else "false", "expected a string, got bool")
    if isinstance(raw, int | float):
        text = str(raw)
        if limit is not None and len(text) > limit:
            return Parsed(None, f"longer than {limit} characters")
        return Parsed(text)
    if not isinstance(raw, str):
        return Parsed(None, f"expected a string, got {_describe(raw)}")
    problem = None
    text = raw
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
        problem = "NUL character replaced"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATES.sub("\ufffd", text)
        problem = "lone surrogate replaced"
    if limit is not None and len(text) > limit:
        return Parsed(None, f"longer than {limit} characters")
    return Parsed(text, problem)


_INT_ONLY = frozenset({int})


def clean_json(raw: Any) -> Parsed[Any]:
    """A JSON value safe for every database's JSON column (strings cleaned like ``clean_text``)."""
    if raw is None or isinstance(raw, bool | int | float):
        return Parsed(raw)
    if isinstance(raw, list) and set(map(type, raw)) <= _INT_ONLY:  # the type test runs in C
        return Parsed(raw)  # the usual shape: bytes of a document as a list of small ints
    # Fast path in C: the arrays are mostly long lists of small ints with nothing to clean.
    text = json.dumps(raw, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        if "\\u0000" not in text:
            return Parsed(raw)
    problems: list[str] = []

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            cleaned = clean_text(value)
            if cleaned.problem:
                problems.append(cleaned.problem)
            return cleaned.value
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {walk(k): walk(v) for k, v in value.items()}
        return value

    cleaned = walk(raw)
    return Parsed(cleaned, problems[0] if problems else None)
