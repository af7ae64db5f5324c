"""The state fields of a job, a task and a validation error, declared once.

Each ``Field`` says what its column holds and where its value comes from in a payload. The
parser's key sets and field tuples (``archiver.archive.payload``), the hash chain's coverage
(``archiver.archive.chain``) and the change log's fields are derived from these tuples;
``tests/test_fields.py`` pins the models' typed columns (which mypy needs written out) to them.
Adding a field to the API is one line here, one migration and the model's column; a field first
hashed by a later chain encoding says so in ``since`` (see ``docs/audit.md``).

At the package root because ``archiver.models`` (also at the root) must not import subpackages.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# 191: four utf8mb4 ids in one unique key stay under MySQL's 3,072-byte index limit
ID_MAX = 191
SHORT_TEXT_MAX = 255
STATUS_MAX = 64
STATUS_CLASS_MAX = 16


class Kind(StrEnum):
    """What a column holds; each kind has one plain reader in the parser."""

    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    BOOLEAN = "boolean"
    TIMESTAMP = "timestamp"
    JSON = "json"


class Derive(StrEnum):
    """How a value is derived from its payload key rather than read as its kind."""

    STATUS_CLASS = "status_class"  # the status's class (statuses.StatusClassifier)
    IS_TERMINAL = "is_terminal"  # whether that class is terminal
    PERCENT = "percent"  # a job's progress text ("45%", "9/20") as a percentage
    PERCENT_NUMBER = "percent_number"  # a task's progress number, 0..100
    SECONDS = "seconds"  # a duration text ("1h2m3.5s") in seconds
    DEPENDENCIES = "dependencies"  # a list of task ids, de-duplicated
    EXTRA = "extra"  # every payload key no field reads


@dataclass(frozen=True, slots=True)
class Field:
    """One state column: its name is also the parser's output key and the change log's field."""

    name: str
    kind: Kind
    # the payload key the value is read from; "block_info.id" reads "id" inside "block_info";
    # None: no one key (``extra``)
    key: str | None
    derive: Derive | None = None
    length: int | None = None  # text: the column's length; None is unbounded (LongText)
    digits: tuple[int, int] | None = None  # decimal: (precision, scale)
    since: int = 1  # the chain encoding that first hashes it (``archiver.archive.chain``)

    @property
    def top_key(self) -> str | None:
        """The payload's own key this field takes its value from (``block_info`` for block_id)."""
        return None if self.key is None else self.key.split(".", 1)[0]


def _text(name: str, length: int | None = SHORT_TEXT_MAX, key: str | None = None) -> Field:
    return Field(name, Kind.TEXT, key or name, length=length)


def _time(name: str) -> Field:
    return Field(name, Kind.TIMESTAMP, name)


def _json(name: str) -> Field:
    return Field(name, Kind.JSON, name)


PCT = (9, 4)
SECONDS = (20, 3)

_STATUS = (
    _text("status", STATUS_MAX),
    Field("status_class", Kind.TEXT, "status", Derive.STATUS_CLASS, length=STATUS_CLASS_MAX),
    Field("is_terminal", Kind.BOOLEAN, "status", Derive.IS_TERMINAL),
)
_TIME_TAKEN = (
    _text("time_taken"),
    Field("time_taken_s", Kind.DECIMAL, "time_taken", Derive.SECONDS, digits=SECONDS),
)
_EXTRA = Field("extra", Kind.JSON, None, Derive.EXTRA)

# In column order, which is also the order a payload is read in (so its problems are listed in it).
JOB: tuple[Field, ...] = (
    *_STATUS,
    _text("progress"),
    Field("progress_pct", Kind.DECIMAL, "progress", Derive.PERCENT, digits=PCT),
    Field("cost", Kind.INTEGER, "cost"),
    *_TIME_TAKEN,
    Field("estimated_duration", Kind.INTEGER, "estimated_duration"),
    _text("created_by"),
    _time("created_at"),
    _time("updated_at"),
    _time("finished_at"),
    _time("exec_created_at"),
    _time("exec_updated_at"),
    _json("spec"),
    _EXTRA,
)
TASK: tuple[Field, ...] = (
    _text("name", None),
    *_STATUS,
    Field("progress", Kind.DECIMAL, "progress", Derive.PERCENT_NUMBER, digits=PCT),
    Field("estimated_time_duration", Kind.INTEGER, "estimated_time_duration"),
    *_TIME_TAKEN,
    _text("state_msg", None),
    _text("err_msg", None),
    _text("failure_type"),
    _time("created_at"),
    _time("updated_at"),
    _time("finished_at"),
    _time("recv_time"),
    _time("send_time"),
    _time("block_inf_start_time"),
    _time("block_inf_end_time"),
    _text("block_id", key="block_info.id"),
    _text("block_name", key="block_info.name"),
    _text("block_version", key="block_info.version"),
    Field("depends_on", Kind.JSON, "depends_on", Derive.DEPENDENCIES),
    _json("info_logs"),
    _json("inputs"),
    _json("result"),
    _json("disclaimer"),
    _EXTRA,
)
VAL_ERROR: tuple[Field, ...] = (
    _text("source_component", None, key="from"),
    _text("target_component", None, key="to"),
    _text("err", None),
    _text("reason", None),
    _text("component_name", None),
)

# payload keys that are no state field but are not "extra" either: identities and nested lists
JOB_OTHER_KEYS = ("id", "workflow_id", "tasks", "val_errors")
TASK_OTHER_KEYS = ("id",)


def names(fields: tuple[Field, ...]) -> tuple[str, ...]:
    return tuple(f.name for f in fields)


def payload_keys(fields: tuple[Field, ...], other: tuple[str, ...] = ()) -> frozenset[str]:
    """The payload's own keys these fields (and ``other``) read: any other key is extra."""
    return frozenset({*other, *(f.top_key for f in fields if f.top_key is not None)})
