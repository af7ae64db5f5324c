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
* numbers: judged by their size before they are converted (``read_number``): numeric text over
  64 characters is not read, and a magnitude of 1E+40 or more is too large for every column, so
  ``"1e1000000"`` costs what ``"1e10"`` costs.
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
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation
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
_INTEGER_RE = re.compile(r"^[+-]?\d+$")

# Numbers are judged by their size before they are converted: turning 1e1000000 into an int, or a
# million-digit int into a Decimal, takes time that grows with the square of the digits (minutes
# for an 11-byte string). No column needs anything near these bounds.
MAX_NUMBER_TEXT = 64  # characters of numeric text read at all; longer text is never converted
MAX_EXPONENT = 40  # |x| >= 10**40 fits no column: int64 < 10**19, seconds <= 10**12, percent <= 100
MAX_INT_BITS = 133  # 2**133 > 10**40: an int with more bits is too large, known without converting
_TOO_LARGE = Decimal("Infinity")
_ZERO = Decimal(0)
# The arithmetic on parsed numbers (a progress fraction) runs in this context, not the thread's:
# the same precision and rounding as Python's default, and no traps (read_number then judges what
# came out).
_ARITHMETIC = Context(prec=28, rounding=ROUND_HALF_EVEN, Emax=999_999, Emin=-999_999, traps=[])


def read_number(raw: Any) -> Decimal | None:
    """A Decimal from a JSON number or numeric text, judged by its size before any conversion.

    None when ``raw`` is not a finite number (bools, NaN, other types, text that is not a plain
    decimal or is longer than ``MAX_NUMBER_TEXT``). A number of magnitude ``10**MAX_EXPONENT`` or
    more comes back as signed Infinity, decided from an int's bit length or a Decimal's exponent
    alone; zero comes back as a plain (signed) zero whatever its exponent. So every finite result
    has an exponent below ``MAX_EXPONENT`` and, read from an int, a float or text, at most 64
    digits (a Decimal is only handed in by this module's own arithmetic, rounded to 28): whatever
    a parser then does with it (compare, quantize, ``int``) is bounded work.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        if raw.bit_length() > MAX_INT_BITS:
            return _TOO_LARGE if raw > 0 else -_TOO_LARGE
        return Decimal(raw)
    if isinstance(raw, float):
        if not math.isfinite(raw):
            return None
        number = Decimal(repr(raw))  # repr: at most 24 characters
    elif isinstance(raw, Decimal):
        number = raw
    elif isinstance(raw, str):
        text = raw.strip()
        if len(text) > MAX_NUMBER_TEXT or not _DECIMAL_RE.match(text):
            return None
        try:
            number = Decimal(text)  # exact and linear: no context, no rounding
        except InvalidOperation:  # an exponent of 19 digits or more: beyond what Decimal holds
            number = _beyond_decimal(text)
    else:
        return None
    if number.is_nan():
        return None
    if number.is_infinite():
        return number  # only our own arithmetic hands one in: it is the too-large mark
    if number.is_zero():
        return _ZERO.copy_sign(number)
    if number.adjusted() >= MAX_EXPONENT:
        return _TOO_LARGE.copy_sign(number)
    return number


def _beyond_decimal(text: str) -> Decimal:
    """What stands for a plain decimal whose exponent Decimal cannot hold (the regex matched)."""
    mantissa_text, _, exponent = text.lower().partition("e")
    mantissa = Decimal(mantissa_text)  # the same text without its exponent: small and exact
    if mantissa.is_zero():
        return _ZERO.copy_sign(mantissa)
    if exponent.startswith("-"):  # nonzero but below any quantum: a fraction that rounds to 0
        return Decimal((mantissa.is_signed(), (1,), -2 * MAX_EXPONENT))
    return _TOO_LARGE.copy_sign(mantissa)


def _shown(number: Decimal, raw: Any) -> str:
    """The number for a problem message: a too-large one as it was written, never converted."""
    if number.is_finite():
        return str(number)
    if isinstance(raw, str):
        return raw.strip()  # at most MAX_NUMBER_TEXT characters, or read_number refused it
    if isinstance(raw, float):
        return repr(raw)
    return f"{'-' if number < 0 else ''}a number of magnitude 1E+{MAX_EXPONENT} or more"


OUT_OF_RANGE = "integer outside the 64-bit range"
FLOAT_EXACT = 2**53  # beyond this a JSON number with a decimal point has lost its last digits


def parse_int(raw: Any) -> Parsed[int]:
    """An integer column (cost, estimated durations): ints, integral floats, digit strings."""
    if raw is None:
        return Parsed(None)
    if isinstance(raw, str) and len(raw) > MAX_NUMBER_TEXT:
        text = raw.strip()
        if len(text) > MAX_NUMBER_TEXT and _INTEGER_RE.match(text):
            return Parsed(None, OUT_OF_RANGE)
    if isinstance(raw, float) and math.isfinite(raw) and abs(raw) >= FLOAT_EXACT:
        if not INT64_MIN <= raw <= INT64_MAX:
            return Parsed(None, OUT_OF_RANGE)
        return Parsed(None, "integer written with a decimal point beyond 2^53: not exact")
    number = read_number(raw)
    if number is None:
        return Parsed(None, f"expected an integer, got {_describe(raw)}")
    if number.is_infinite():
        return Parsed(None, OUT_OF_RANGE)
    if number != number.to_integral_value():
        return Parsed(None, "expected an integer, got a fraction")
    value = int(number)  # bounded: read_number keeps the exponent below MAX_EXPONENT
    if not INT64_MIN <= value <= INT64_MAX:
        return Parsed(None, OUT_OF_RANGE)
    if isinstance(raw, str):
        return Parsed(value, "integer given as a string; read as its number")
    return Parsed(value)


def parse_number(raw: Any, quantum: Decimal, lo: Decimal, hi: Decimal) -> Parsed[Decimal]:
    if raw is None:
        return Parsed(None)
    number = read_number(raw)
    if number is None:
        return Parsed(None, f"expected a number, got {_describe(raw)}")
    return _within(number, raw, quantum, lo, hi)


def _within(
    number: Decimal, raw: Any, quantum: Decimal, lo: Decimal, hi: Decimal
) -> Parsed[Decimal]:
    """``number`` (from ``read_number``) quantized, or a problem when it is outside lo..hi."""
    if not lo <= number <= hi:
        return Parsed(None, f"{_shown(number, raw)} is outside {lo}..{hi}")
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
        parsed = _progress_text(raw.strip())
    else:
        parsed = parse_number(raw, PCT_QUANTUM, _ZERO, _HUNDRED)
    if parsed.problem:
        return Parsed(None, f"unreadable progress: {parsed.problem}")
    return parsed


def _progress_text(text: str) -> Parsed[Decimal]:
    if len(text) > MAX_NUMBER_TEXT:  # before any regex or arithmetic: see read_number
        return Parsed(None, f"longer than {MAX_NUMBER_TEXT} characters")
    match = _PERCENT_RE.match(text)
    if match:
        return parse_number(match.group(1), PCT_QUANTUM, _ZERO, _HUNDRED)
    fraction = _FRACTION_RE.match(text)
    if not fraction:
        return parse_number(text, PCT_QUANTUM, _ZERO, _HUNDRED)
    num, den = read_number(fraction.group(1)), read_number(fraction.group(2))
    if num is None or den is None:  # not reached: the regex admits plain decimals only
        return Parsed(None, "unreadable fraction")
    if den.is_zero():
        return Parsed(None, "progress fraction with a zero denominator")
    # Both sides have at most 64 digits and no exponent, so the quotient is far inside what the
    # context holds; the context is our own so a caller's thread context cannot make it trap.
    percent = _ARITHMETIC.multiply(_ARITHMETIC.divide(num, den), _HUNDRED)
    number = read_number(percent)
    if number is None:
        return Parsed(None, "unreadable fraction")
    return _within(number, text, PCT_QUANTUM, _ZERO, _HUNDRED)


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


# The form the API writes ("4m10.644s"): whole milliseconds, small enough that every column holds
# them. Read as an integer, it gives what the general reading below gives, without its Decimal
# arithmetic (``tests/archive/test_values.py`` compares the two).
_GO_MILLIS_RE = re.compile(r"(?:(\d{1,6})h)?(?:(\d{1,6})m)?(\d{1,6})(?:\.(\d{1,3}))?s")


def go_seconds(text: str) -> Decimal | None:
    """``parse_duration(text).value`` if ``text`` is in the API's own form, else None."""
    match = _GO_MILLIS_RE.fullmatch(text)
    if match is None:
        return None
    hours, minutes, seconds, fraction = match.groups()
    millis = int(seconds) * 1000 + int((fraction or "").ljust(3, "0"))
    millis += (int(hours or 0) * 60 + int(minutes or 0)) * 60_000
    return Decimal(millis).scaleb(-3)  # the quantum's exponent, as quantize gives it


def parse_duration(raw: Any) -> Parsed[Decimal]:
    """Seconds (3 decimals) from the duration forms in the module docstring."""
    if type(raw) is str:
        seconds = go_seconds(raw)
        if seconds is not None:
            return Parsed(seconds)
    return _parse_duration(raw)


def _parse_duration(raw: Any) -> Parsed[Decimal]:
    """``parse_duration`` of any form, the API's own included."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return Parsed(None)
    if isinstance(raw, str):
        text = raw.strip()
        if len(text) > 64:  # no real duration is this long; the readers are not linear in it
            return Parsed(None, "unreadable duration")
        sign = text[:1] if text[:1] in ("+", "-") else ""
        negative = sign == "-"
        body = text[len(sign) :]
        if body[:1] in ("+", "-"):  # one sign at most: "+-5" or "--5" is no duration
            return Parsed(None, "unreadable duration")
        seconds = read_number(body) if _DECIMAL_RE.match(body) else None
        for reader in (_go_duration, _iso_upper, _clock_duration):
            if seconds is not None:
                break
            seconds = reader(body)
        seconds = None if seconds is None else read_number(seconds)
        if seconds is None:
            return Parsed(None, "unreadable duration")
        # copy_negate is exact and quiet: a plain minus would round in the thread's context
        number = seconds.copy_negate() if negative else seconds
        parsed = _within(number, text, SECONDS_QUANTUM, _ZERO, MAX_SECONDS)
    else:
        parsed = parse_number(raw, SECONDS_QUANTUM, _ZERO, MAX_SECONDS)
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
        # compared as they are: math.isfinite would turn an int past 1e308 into an OverflowError
        finite = isinstance(raw, int) or math.isfinite(raw)
        if not finite or not 0 <= raw < 253402300800:  # before year 10000
            return Parsed(None, "epoch timestamp out of range")
        return Parsed(_EPOCH + timedelta(microseconds=round(raw * 1_000_000)))
    if not isinstance(raw, str):
        return Parsed(None, f"expected a timestamp, got {_describe(raw)}")
    return Parsed(*parse_timestamp_text(raw))


@functools.lru_cache(maxsize=8192)
def parse_timestamp_text(raw: str) -> tuple[datetime | None, str | None]:
    """``parse_timestamp`` of text, as (value, problem): a tuple, which costs a tenth of a
    ``Parsed`` to make, for the compiled readers (``archiver.archive.readers``). Cached: a job's
    tasks and its successive polls repeat the same few timestamps."""
    text = raw.strip()
    if not text:
        return None, None
    if len(text) > 64:
        return None, "unreadable timestamp"
    if _FRACTION_DIGITS_RE.search(text):  # rarely: the substitution alone costs more
        text = _FRACTION_DIGITS_RE.sub(r"\1", text)
    if text[-1:] in ("z", "Z"):
        text = text[:-1] + "+00:00"
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None, "unreadable timestamp"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        return None, "timestamp out of range"
    if text.startswith(_ZERO_TIME_PREFIX) and value.year == 1:
        return None, None  # Go's zero time: "never happened"
    return value, None


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
        try:
            text = str(raw)
        except ValueError:  # an int past Python's 4,300-digit limit (not from JSON: it refuses)
            return Parsed(None, "an integer too long to write as text")
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
