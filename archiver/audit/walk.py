"""Read a job's history rows in chain order, a bounded number at a time, and walk its chain.

Why streamed: a job's history grows without bound (a job polled for months has 100,000 rows), and
holding all of it to verify it cost about 3 KB a row. Here memory is bounded whatever the length:

* ``Reader`` reads at most ``BUDGET`` rows per table at once. Jobs with small histories are read
  together (several jobs per query, up to ``BUDGET`` rows in all); a job with more is read by
  pages ordered by ``chain_seq`` from its four tables (keyset pagination on the unique index
  ``(workflow_id, job_id, chain_seq)``), merged in Python: at most 4 x ``BUDGET`` rows are held,
  and pagination needs no server-side cursor, which MariaDB could not hold four of at once.
* ``JobWalk`` sees each row once, in chain order, and keeps O(1) state per row walked: the last
  row's hash and position, the last row per table (id order) and a small window of recent hashes.
  A link break is classified (``reordered`` when the row it names is still in the job, else
  ``deleted``) from that window, else by looking the named hash up in the database: at most
  ``LOOKUPS`` times per job, so a shuffled chain cannot cost a query per row.
* What the current tables are checked against is kept per task and per validation error (their
  last version, presence and state), never per history row: it is as large as the current tables.

A break is classified from which of the row's own hash and its link fail, as ``verify``'s module
docstring explains; ``Flags`` keeps one break per row, the most telling one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, false, func, or_, select
from sqlalchemy.orm import Session

from archiver.archive.chain import GENESIS, UnknownEncoding, all_covered, row_hash
from archiver.archive.changelog import as_text
from archiver.archive.payload import identify
from archiver.audit.breaks import Break
from archiver.errors import PayloadError
from archiver.models import CHANGES, JOB_VERSIONS, SNAPSHOTS, TASK_VERSIONS

JobKey = tuple[str, str]
Row = dict[str, Any]
Lookup = Callable[[JobKey, str], "tuple[str, int, int] | None"]

BUDGET = 1000  # history rows read per table at once
RECENT = 256  # hashes of the last rows walked, to classify a link break without a query
LOOKUPS = 64  # link breaks per job classified by a query; past it, by the recent window alone

HISTORY: dict[str, Table] = {
    "job_snapshots": SNAPSHOTS,
    "job_versions": JOB_VERSIONS,
    "task_versions": TASK_VERSIONS,
    "job_changes": CHANGES,
}
_EXTRA = {"job_snapshots": ("body",), "job_versions": ("valid_to",), "task_versions": ("valid_to",)}

# which finding names a row when several do (lowest wins): the chain's own verdict first
WALK, ORDER, SNAPSHOT, CLOSING, CURRENT = range(5)


def _columns(name: str, t: Table) -> list[Any]:
    covered = all_covered(name) + _EXTRA.get(name, ())
    chain = [t.c.id, t.c.chain_seq, t.c.prev_sha256, t.c.row_sha256, t.c.chain_version]
    return [*chain, *(t.c[c] for c in covered)]


def of_jobs(t: Table, keys: Sequence[JobKey]) -> Any:
    """The rows of ``t`` of the jobs of ``keys``, spelled so that every database seeks its index:
    SQLite scans the whole index for a row-value ``IN``, once per query."""
    by_workflow: dict[str, list[str]] = {}
    for wf, jid in keys:
        by_workflow.setdefault(wf, []).append(jid)
    if not by_workflow:
        return false()
    return or_(
        *(and_(t.c.workflow_id == wf, t.c.job_id.in_(jids)) for wf, jids in by_workflow.items())
    )


def _order(item: tuple[str, Row]) -> tuple[int, int, int]:
    """Chain order; rows with no position (foreign) first, by id within a position."""
    row = item[1]
    seq = row["chain_seq"]
    return (0, 0, row["id"]) if seq is None else (1, seq, row["id"])


class Reader:
    """Each job's history rows in chain order, never more than a bounded number held."""

    def __init__(self, session: Session, budget: int | None = None) -> None:
        self.session = session
        self.budget = BUDGET if budget is None else budget

    def jobs(self, keys: Sequence[JobKey]) -> Iterator[tuple[JobKey, Iterator[tuple[str, Row]]]]:
        """``(key, rows)`` for every key, in the order given; consume ``rows`` before the next."""
        sizes, unchained = self._sizes(keys)
        group: list[JobKey] = []
        held = 0
        for key in keys:
            size = sizes.get(key, 0)
            if size > self.budget:
                yield from self._group(group, held)
                group, held = [], 0
                yield key, self._pages(key, key in unchained)
                continue
            if held + size > self.budget:
                yield from self._group(group, held)
                group, held = [], 0
            group.append(key)
            held += size
        yield from self._group(group, held)

    def _sizes(self, keys: Sequence[JobKey]) -> tuple[dict[JobKey, int], set[JobKey]]:
        """Rows per job, and the jobs with rows that have no chain position."""
        sizes: dict[JobKey, int] = {}
        unchained: set[JobKey] = set()
        for t in HISTORY.values():
            query = (
                select(t.c.workflow_id, t.c.job_id, func.count(), func.count(t.c.chain_seq))
                .where(of_jobs(t, keys))
                .group_by(t.c.workflow_id, t.c.job_id)
            )
            for wf, jid, rows, chained in self.session.execute(query):
                sizes[(wf, jid)] = sizes.get((wf, jid), 0) + rows
                if chained != rows:
                    unchained.add((wf, jid))
        return sizes, unchained

    def _group(
        self, keys: list[JobKey], held: int
    ) -> Iterator[tuple[JobKey, Iterator[tuple[str, Row]]]]:
        """Jobs whose rows together fit the budget: one query per table for all of them."""
        rows: dict[JobKey, list[tuple[str, Row]]] = {}
        if held:
            for name, t in HISTORY.items():
                query = select(*_columns(name, t)).where(of_jobs(t, keys))
                for row in self.session.execute(query).mappings():
                    rows.setdefault((row["workflow_id"], row["job_id"]), []).append(
                        (name, dict(row))
                    )
        for key in keys:
            job_rows = rows.pop(key, [])
            job_rows.sort(key=_order)
            yield key, iter(job_rows)

    def _pages(self, key: JobKey, unchained: bool) -> Iterator[tuple[str, Row]]:
        """One long job: pages by ``chain_seq`` from each table, merged up to where the first
        full page ends (rows past it are read again with the next page)."""
        wf, jid = key
        if unchained:  # foreign rows: each is a break; read once, apart
            foreign: list[tuple[str, Row]] = []
            for name, t in HISTORY.items():
                query = select(*_columns(name, t)).where(
                    t.c.workflow_id == wf, t.c.job_id == jid, t.c.chain_seq.is_(None)
                )
                foreign.extend((name, dict(r)) for r in self.session.execute(query).mappings())
            foreign.sort(key=_order)
            yield from foreign
            del foreign
        after: int | None = None
        while True:
            page: list[tuple[str, Row]] = []
            upto: int | None = None
            for name, t in HISTORY.items():
                seq = t.c.chain_seq
                where = seq.is_not(None) if after is None else seq > after
                query = (
                    select(*_columns(name, t))
                    .where(t.c.workflow_id == wf, t.c.job_id == jid, where)
                    .order_by(seq)
                    .limit(self.budget)
                )
                got = [(name, dict(r)) for r in self.session.execute(query).mappings()]
                if len(got) == self.budget:
                    last = got[-1][1]["chain_seq"]
                    upto = last if upto is None else min(upto, last)
                page.extend(got)
            if upto is not None:
                page = [item for item in page if item[1]["chain_seq"] <= upto]
            page.sort(key=_order)
            yield from page
            del page
            if upto is None:
                return
            after = upto

    def lookup(self, key: JobKey, sha: str) -> tuple[str, int, int] | None:
        """The row of the job whose hash is ``sha``, if any: (table, id, chain_seq)."""
        for name, t in HISTORY.items():
            query = (
                select(t.c.id, t.c.chain_seq)
                .where(t.c.workflow_id == key[0], t.c.job_id == key[1], t.c.row_sha256 == sha)
                .limit(1)
            )
            found = self.session.execute(query).first()
            if found is not None:
                return name, found.id, found.chain_seq
        return None


class Flags:
    """The breaks found in one job: one per row (or per missing row), the most telling kept."""

    def __init__(self, workflow_id: str, job_id: str) -> None:
        self.workflow_id, self.job_id = workflow_id, job_id
        self._found: dict[Hashable, tuple[int, Break]] = {}

    def add(
        self,
        where: Hashable,
        rank: int,
        table: str,
        row_id: int | None,
        kind: str,
        detail: str,
        seq: int | None = None,
    ) -> None:
        old = self._found.get(where)
        if old is None or rank < old[0]:
            brk = Break(table, row_id, self.workflow_id, self.job_id, kind, detail, seq)
            self._found[where] = (rank, brk)

    def row(self, name: str, row: Row, kind: str, detail: str, rank: int = WALK) -> None:
        self.add((name, row["id"]), rank, name, row["id"], kind, detail, row["chain_seq"])

    def breaks(self) -> list[Break]:
        return [brk for _, brk in self._found.values()]


@dataclass
class Version:
    """What the walk keeps of a version row: enough to check its closing; of the last version of
    the job and of each task, the row itself, for the current row (O(tasks), not O(history))."""

    id: int
    chain_seq: int
    version: int
    valid_to: datetime | None
    row: Row


@dataclass
class TaskTrail:
    """A task's history as far as the current tables need it."""

    last: Version | None = None
    depends_on: frozenset[str] = frozenset()
    presence: str | None = None
    removed_at: datetime | None = None  # when the task was last seen disappearing


@dataclass
class ErrorTrail:
    """A validation error's state from the change log."""

    state: str | None = None
    state_at: datetime | None = None
    state_seq: int | None = None
    occurrences: str | None = None  # as the change log spells it, when a change was logged


@dataclass
class JobWalk:
    """One job's chain walked row by row (``feed``), then its head checked (``finish``)."""

    key: JobKey
    head: Any  # the jobs row, or None
    tasks: dict[str, Any]  # current tasks rows by task id
    lookup: Lookup
    flags: Flags = field(init=False)
    rows: int = 0
    snapshots: int = 0
    last: tuple[int, str] | None = None  # (chain_seq, row_sha256) of the last row walked
    job_version: Version | None = None
    # what the jobs row's own bookkeeping must say: the archiving plan dates every later change
    # from last_changed_at, so a forged one would shift the dates of all later history
    first_valid_from: datetime | None = None  # version 1's: the row's first_seen_at
    last_change_at: datetime | None = None  # the last change row's: the row's last_changed_at
    last_applied_sha: str | None = None  # the last applied snapshot's: the row's payload_sha256
    task_trails: dict[str, TaskTrail] = field(default_factory=dict)
    error_trails: dict[str, ErrorTrail] = field(default_factory=dict)
    _expected: tuple[str, int] = (GENESIS, 1)  # the link and position the next row should have
    _recent: OrderedDict[str, tuple[str, int, int]] = field(default_factory=OrderedDict)
    _lookups: int = 0
    _table_last: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.flags = Flags(*self.key)

    def feed(self, name: str, row: Row) -> None:
        self.rows += 1
        if name == "job_snapshots":
            self.snapshots += 1
            if _snapshot_hash(self.key, row["body"]) != row["sha256"]:
                detail = "the payload no longer hashes to the snapshot's sha256"
                self.flags.row(name, row, "edited", detail, SNAPSHOT)
        if row["chain_seq"] is None or row["row_sha256"] is None or row["prev_sha256"] is None:
            detail = "the row has no chain hash: the archiver did not write it"
            self.flags.row(name, row, "inserted", detail)
            return
        try:
            content_ok = row_hash(row["prev_sha256"], name, row) == row["row_sha256"]
        except UnknownEncoding as exc:  # edited, or written by a newer archiver: not provable
            self.flags.row(name, row, "edited", f"its {exc}, so its hash cannot be checked")
            content_ok = False
        self._check_id_order(name, row)
        seq = row["chain_seq"]
        if self.last is not None and seq == self.last[0]:
            self.flags.row(name, row, "inserted", f"a second row claims seq {seq} of the chain")
            return
        self._link(name, row, content_ok)
        self.last = (seq, row["row_sha256"])
        self._expected = (row["row_sha256"], seq + 1)
        self._recent[row["row_sha256"]] = (name, row["id"], seq)
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        if name == "job_versions":
            self._job_version(row)
        elif name == "task_versions":
            self._task_version(row)
        elif name == "job_changes":
            self.last_change_at = row["observed_at"]
            self._change(row)
        elif row["applied"]:  # a snapshot the job's state was taken from
            self.last_applied_sha = row["sha256"]

    def _link(self, name: str, row: Row, content_ok: bool) -> None:
        expected_prev, expected_seq = self._expected
        link_ok = row["prev_sha256"] == expected_prev
        if not content_ok and link_ok:
            self.flags.row(name, row, "edited", "its content no longer matches its hash")
        elif content_ok and not link_ok:
            before = self._before(row["prev_sha256"])
            if before is not None:
                other, other_id, other_seq = before
                detail = (
                    f"it was written after {other} row {other_id} (seq {other_seq}), "
                    "not where it now stands"
                )
                self.flags.row(name, row, "reordered", detail)
            elif row["prev_sha256"] == GENESIS:
                self.flags.row(name, row, "reordered", "it was the chain's first row")
            else:
                missing = max(row["chain_seq"] - expected_seq, 1)
                detail = (
                    f"the row it was written after is gone ({missing} row(s) removed before it)"
                )
                if self._lookups > LOOKUPS:
                    detail += f"; not looked up, past {LOOKUPS} link breaks in this job"
                self.flags.row(name, row, "deleted", detail)
        elif not content_ok and not link_ok:
            detail = "neither its content nor its link matches the chain"
            self.flags.row(name, row, "inserted", detail)

    def _before(self, sha: str) -> tuple[str, int, int] | None:
        """The row a link names, if the job still has it: the recent window, else a query."""
        recent = self._recent.get(sha)
        if recent is not None:
            return recent
        self._lookups += 1
        if self._lookups > LOOKUPS:
            return None
        return self.lookup(self.key, sha)

    def _check_id_order(self, name: str, row: Row) -> None:
        """Within a table, ids grow in write order: a swap of two rows' contents shows here."""
        before = self._table_last.get(name)
        if before is not None and row["id"] < before[0]:
            detail = f"its id comes after row {row['id']} but it was written before it"
            self.flags.add(
                (name, before[0]), ORDER, name, before[0], "reordered", detail, before[1]
            )
        self._table_last[name] = (row["id"], row["chain_seq"])

    def _job_version(self, row: Row) -> None:
        if row["version"] == 1:
            self.first_valid_from = row["valid_from"]
        if self.job_version is not None:
            self._closing("job_versions", self.job_version, row, None)
        self.job_version = _version(row)

    def _task_version(self, row: Row) -> None:
        trail = self.task_trails.setdefault(row["task_id"], TaskTrail())
        if trail.last is not None:
            self._closing("task_versions", trail.last, row, trail.removed_at)
        trail.last = _version(row)
        deps = row["depends_on"]
        trail.depends_on = frozenset(d for d in deps if isinstance(d, str)) if deps else frozenset()

    def _change(self, row: Row) -> None:
        entity, name = row["entity"], row["field"]
        if entity == "task" and name == "presence" and row["task_id"] is not None:
            trail = self.task_trails.setdefault(row["task_id"], TaskTrail())
            trail.presence = row["new_value"]
            if row["new_value"] == "removed":
                trail.removed_at = row["observed_at"]
        elif entity == "val_error" and row["entity_key"] is not None:
            error = self.error_trails.setdefault(row["entity_key"], ErrorTrail())
            if name == "state":
                error.state, error.state_at = row["new_value"], row["observed_at"]
                error.state_seq = row["chain_seq"]
            elif name == "occurrences":
                error.occurrences = row["new_value"]

    def _closing(self, name: str, before: Version, after: Row, gap: datetime | None) -> None:
        """``valid_to`` is outside the hashes: it must be the next version's ``valid_from`` (or
        the moment the task disappeared, when it came back later)."""
        end = before.valid_to
        if end != after["valid_from"] and not (
            gap is not None and end == gap <= after["valid_from"]
        ):
            detail = (
                f"valid_to {as_text(end)} is not where version {after['version']} begins "
                f"({as_text(after['valid_from'])})"
            )
            self.flags.add(
                (name, before.id), CLOSING, name, before.id, "edited", detail, before.chain_seq
            )

    def finish(self) -> tuple[int, str]:
        """Check the head and the last versions' closing; returns the head (seq, hash)."""
        if self.job_version is not None:
            self._last_closing("job_versions", self.job_version, None)
        for trail in self.task_trails.values():
            if trail.last is not None:
                gone = trail.removed_at if trail.presence == "removed" else None
                self._last_closing("task_versions", trail.last, gone)
        last_seq, last_hash = self.last if self.last is not None else (0, GENESIS)
        if self.head is None:
            return last_seq, last_hash
        head_seq, head_hash = self.head["chain_seq"] or 0, self.head["chain_sha256"] or GENESIS
        broken: tuple[str, str] | None = None
        if head_seq > last_seq:
            broken = (
                "deleted",
                f"the chain ends at seq {last_seq} but the job's head is seq {head_seq}: "
                f"the last {head_seq - last_seq} history rows were removed",
            )
        elif (head_seq, head_hash) != (last_seq, last_hash):
            broken = (
                "inserted" if head_seq < last_seq else "edited",
                f"the job's head (seq {head_seq}) does not name the chain's last row "
                f"(seq {last_seq})",
            )
        if broken is not None:  # keyed apart from the current-row check of the same jobs row
            kind, detail = broken
            self.flags.add(("jobs", "head"), WALK, "jobs", self.head["id"], kind, detail, head_seq)
        return head_seq, head_hash

    def _last_closing(self, name: str, last: Version, closed_at: datetime | None) -> None:
        if last.valid_to != closed_at:
            detail = (
                f"the last version's valid_to is {as_text(last.valid_to)}, expected "
                f"{as_text(closed_at) or 'NULL'}"
            )
            self.flags.add(
                (name, last.id), CLOSING, name, last.id, "edited", detail, last.chain_seq
            )


def _version(row: Row) -> Version:
    return Version(row["id"], row["chain_seq"], row["version"], row["valid_to"], row)


def _snapshot_hash(key: JobKey, body: str) -> str | None:
    try:
        return identify(body, workflow_id=key[0], job_id=key[1]).sha256
    except PayloadError:
        return None
