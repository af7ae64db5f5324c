"""Each entity's reading plan compiled into one function: the generic field reader, specialized.

Why: a payload holds one job and some twenty tasks of thirty fields each, so the generic reader
(``archiver.archive.payload._read_generic``) runs its per-field dispatch on kind and derivation,
and builds a ``Parsed`` per value, some six hundred times a job. Most values need nothing done:
text that is plain ASCII within its length, an integer within 64 bits, a list of small ints, a
timestamp text seen before. The compiled reader tests for exactly those cases inline and gives
every other value to the same parser the generic reader calls, in the same order, so each typed
value, each problem and its message are the generic reader's (``tests/archive/test_readers.py``
reads payloads both ways). The source is generated from the declaration when the plan is made,
as ``dataclasses`` generates ``__init__``; a declaration it does not know how to compile (a kind
or derivation added later) keeps the generic reader.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from archiver.archive.values import (
    INT64_MAX,
    INT64_MIN,
    clean_json,
    clean_text,
    go_seconds,
    parse_duration,
    parse_int,
    parse_number,
    parse_progress,
    parse_timestamp,
    parse_timestamp_text,
)
from archiver.fields import Derive, Field, Kind
from archiver.statuses import StatusClassifier

# (the entity's data, the problem collector, the task's id or None) -> the state, in column order
Reader = Callable[[Mapping[str, Any], Any, "str | None"], dict[str, Any]]
Step = Field | tuple[str, tuple[Field, ...]]

CLASSES_CACHED = 1024  # distinct status texts remembered per classifier; a real API has a dozen


class Unsupported(Exception):
    """The declaration has a field this compiler does not know: the generic reader reads it."""


class _Source:
    """The lines of the generated function, and the objects it refers to by name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {}
        self.var_of: dict[str, str] = {}  # state field name -> the local holding its value
        self.text: set[str] = set()  # the state fields whose value is text or None, as read

    def const(self, value: Any) -> str:
        name = f"_c{len(self.names)}"
        self.names[name] = value
        return name

    def var(self, field_name: str) -> str:
        if field_name not in self.var_of:
            self.var_of[field_name] = f"v{len(self.var_of)}"
        return self.var_of[field_name]

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


def _plain(src: _Source, ind: int, f: Field, raw: str, target: str) -> None:
    """``target = payload._plain(f, raw, out, task_id)``, the usual values tested inline."""
    key = repr(str(f.key))
    src.emit(ind, f"if {raw} is None:")
    src.emit(ind + 1, f"{target} = None")
    kind = f.kind
    if kind is Kind.TEXT:
        # clean_text takes ASCII text without NUL within the length as it is
        within = "" if f.length is None else f" and len({raw}) <= {f.length}"
        src.emit(
            ind, f"elif type({raw}) is str and {raw}.isascii(){within} and '\\x00' not in {raw}:"
        )
        src.emit(ind + 1, f"{target} = {raw}")
        src.emit(ind, "else:")
        src.emit(
            ind + 1, f"{target} = take(clean_text({raw}, {f.length!r}), {key}, {raw}, task_id)"
        )
    elif kind is Kind.TIMESTAMP:
        # parse_timestamp of text is parse_timestamp_text, cached
        src.emit(ind, f"elif type({raw}) is str:")
        src.emit(ind + 1, f"{target}, problem = parse_timestamp_text({raw})")
        src.emit(ind + 1, "if problem:")
        src.emit(ind + 2, f"add({key}, {raw}, problem, task_id)")
        src.emit(ind, "else:")
        src.emit(ind + 1, f"{target} = take(parse_timestamp({raw}), {key}, {raw}, task_id)")
    elif kind is Kind.INTEGER:
        # parse_int gives back an int within 64 bits as it is
        src.emit(ind, f"elif type({raw}) is int and {INT64_MIN} <= {raw} <= {INT64_MAX}:")
        src.emit(ind + 1, f"{target} = {raw}")
        src.emit(ind, "else:")
        src.emit(ind + 1, f"{target} = take(parse_int({raw}), {key}, {raw}, task_id)")
    elif kind is Kind.JSON:
        # clean_json gives back a list of ints (or bools) as it is; bytes() converts only those
        # 0..255, the usual array of bytes, faster than a scan of their types (and problems of
        # JSON values never repeat the value)
        src.emit(ind, f"elif type({raw}) is list:")
        src.emit(ind + 1, "try:")
        src.emit(ind + 2, f"bytes({raw})")
        src.emit(ind + 2, f"{target} = {raw}")
        src.emit(ind + 1, "except (TypeError, ValueError):")
        src.emit(ind + 2, f"{target} = take(clean_json({raw}), {key}, None, task_id)")
        src.emit(ind, "else:")
        src.emit(ind + 1, f"{target} = take(clean_json({raw}), {key}, None, task_id)")
    else:
        raise Unsupported(kind)


def _status_class(src: _Source, ind: int, key: str, target: str) -> None:
    """``target = classifier.classify(state[key])``, remembered per status text."""
    source = src.var_of.get(key)
    if source is None:
        raise Unsupported(key)  # the generic reader's KeyError, at read time
    if key not in src.text:  # not text: not a key to remember it by
        src.emit(ind, f"{target} = classify({source})")
        return
    src.emit(ind, f"{target} = classes.get({source}, MISSING)")
    src.emit(ind, f"if {target} is MISSING:")
    src.emit(ind + 1, f"{target} = classify({source})")
    src.emit(ind + 1, f"if len(classes) < {CLASSES_CACHED}:")
    src.emit(ind + 2, f"classes[{source}] = {target}")


def _derived(src: _Source, ind: int, f: Field, derive: Derive, target: str) -> None:
    """``target = payload._derived(f, derive, raw, state, out, classifier, task_id)``."""
    if f.key is None:
        raise Unsupported(f.name)
    key = repr(f.key)
    if derive is Derive.STATUS_CLASS:
        _status_class(src, ind, f.key, target)
        src.emit(ind, f"if {target} == 'unknown':")
        src.emit(ind + 1, f"add({key}, get({key}), 'unknown status; classed as unknown', task_id)")
        return
    if derive is Derive.IS_TERMINAL:
        _status_class(src, ind, f.key, "klass")
        src.emit(ind, f"{target} = is_terminal(klass)")
        return
    if derive is Derive.DEPENDENCIES:
        src.emit(ind, f"{target} = depends_on(get({key}), task_id, out)")
        return
    src.emit(ind, f"raw = get({key})")
    src.emit(ind, "if raw is None:")
    src.emit(ind + 1, f"{target} = None")
    if derive is Derive.PERCENT:
        src.emit(ind, "else:")
        src.emit(ind + 1, f"{target} = take(parse_progress(raw), {key}, raw, task_id)")
    elif derive is Derive.PERCENT_NUMBER:
        quantum = Decimal(10) ** -(f.digits[1] if f.digits else 0)
        lo, hi = Decimal(0), Decimal(100)
        # what parse_number makes of each whole percent, made by parse_number itself
        whole = [parse_number(n, quantum, lo, hi).value for n in range(101)]
        args = f"{src.const(quantum)}, {src.const(lo)}, {src.const(hi)}"
        src.emit(ind, "elif type(raw) is int and 0 <= raw <= 100:")
        src.emit(ind + 1, f"{target} = {src.const(whole)}[raw]")
        src.emit(ind, "else:")
        src.emit(ind + 1, f"{target} = take(parse_number(raw, {args}), {key}, raw, task_id)")
    elif derive is Derive.SECONDS:
        src.emit(ind, "elif type(raw) is str and (seconds := go_seconds(raw)) is not None:")
        src.emit(ind + 1, f"{target} = seconds")
        src.emit(ind, "else:")
        src.emit(ind + 1, f"{target} = take(parse_duration(raw), {key}, raw, task_id)")
    else:
        raise Unsupported(derive)


def _nested(src: _Source, ind: int, top: str, group: tuple[Field, ...]) -> None:
    """``payload._nested``: the fields read inside one object of the payload."""
    targets = [src.var(f.name) for f in group]
    src.text.difference_update(f.name for f in group)
    none = " = ".join(dict.fromkeys(targets)) + " = None"
    src.emit(ind, f"obj = get({top!r})")
    src.emit(ind, "if obj is None:")
    src.emit(ind + 1, none)
    src.emit(ind, "elif not isinstance(obj, dict):")
    src.emit(ind + 1, none)
    src.emit(ind + 1, f"add({top!r}, obj, {f'{top} is not an object'!r}, task_id)")
    src.emit(ind, "else:")
    src.emit(ind + 1, none)
    inner = {str(f.key).split(".", 1)[1]: f for f in group}
    for key, f in inner.items():
        src.emit(ind + 1, f"raw = obj.get({key!r})")
        _plain(src, ind + 1, f, "raw", src.var(f.name))
    src.emit(ind + 1, f"if not obj.keys() <= {src.const(frozenset(inner))}:")
    message = f"unknown {top} keys (kept in the snapshot)"
    src.emit(ind + 2, f"add({top!r}, obj, {message!r}, task_id)")


def compile_reader(
    steps: list[Step],
    known: frozenset[str],
    classifier: StatusClassifier,
    helpers: Mapping[str, Any],
) -> Reader:
    """The function that reads ``steps`` as ``payload._read_generic`` does; raises Unsupported.

    ``helpers``: ``depends_on`` and ``extra``, the payload module's own readers of those fields.
    """
    src = _Source()
    body = 1
    for step in steps:
        if isinstance(step, tuple):
            _nested(src, body, *step)
            continue
        f, derive = step, step.derive
        target = f"t{len(src.lines)}"  # the value, until the field's own local takes it
        if derive is None:
            src.emit(body, f"raw = get({f.key!r})" if f.key is not None else "raw = None")
            _plain(src, body, f, "raw", target)
            if f.kind is Kind.TEXT:
                src.text.add(f.name)
            else:
                src.text.discard(f.name)
        elif derive is Derive.EXTRA:
            known_name = src.const(known)
            src.emit(body, f"if data.keys() <= {known_name}:")  # no key but declared ones
            src.emit(body + 1, f"{target} = None")
            src.emit(body, "else:")
            src.emit(body + 1, f"{target} = extra(data, {known_name}, out, task_id)")
        else:
            _derived(src, body, f, derive, target)
        if derive is not None:
            src.text.discard(f.name)
        src.emit(body, f"{src.var(f.name)} = {target}")
    state = ", ".join(f"{name!r}: {var}" for name, var in src.var_of.items())
    lines = [
        "def read(data, out, task_id):",
        "    get = data.get",
        "    add = out.add",
        "    take = out.take",
        *src.lines,
        f"    return {{{state}}}",
    ]
    namespace: dict[str, Any] = {
        **src.names,
        "MISSING": object(),
        "classes": {},
        "classify": classifier.classify,
        "is_terminal": classifier.is_terminal,
        "clean_text": clean_text,
        "clean_json": clean_json,
        "parse_int": parse_int,
        "parse_number": parse_number,
        "parse_progress": parse_progress,
        "parse_duration": parse_duration,
        "go_seconds": go_seconds,
        "parse_timestamp": parse_timestamp,
        "parse_timestamp_text": parse_timestamp_text,
        "depends_on": helpers["depends_on"],
        "extra": helpers["extra"],
    }
    exec(compile("\n".join(lines), "<archiver.archive.readers>", "exec"), namespace)  # noqa: S102
    reader: Reader = namespace["read"]
    reader.source = "\n".join(lines)  # type: ignore[attr-defined]
    return reader
