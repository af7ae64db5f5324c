"""The floor: exactly what the archiver wrote in a phase, written again with the bare driver.

Why replay instead of writing rows of our own: a floor is only honest if it writes the same rows
the archiver does (jobs, tasks, dependencies, validation errors, versions, snapshots, one change-log
row per changed field), with the same sizes, into the same schema with the same indexes. Deriving
them from the archiver's database after its run gives that by construction, whatever the archiver
decides to write, and keeps working while ``archiver/`` changes: nothing here knows its rules.

How: a second database gets the same migrated schema. After the archiver's phase, for each job,
the rows of every table holding jobs' data are compared between the archiver's database (after)
and the floor's (before, which equals the archiver's before the phase). The differences become the
bare-driver statements a minimal archiver would issue, in one transaction per batch of ``CHUNK``
jobs (the archiver's own batch, ``archiver.archive.ingest.BATCH_JOBS``), each statement run once per
batch with every job's parameter sets:

* one read of the batch's current job rows (any change detection needs the stored state);
* new rows: the dialect upsert on the table's natural key (plain INSERT for append-only tables;
  COPY on PostgreSQL, as the archiver writes them);
* changed rows: an UPDATE of the changed columns only; when every row of a job in a table got
  the same new value (``last_seen_at`` moving), one set-based UPDATE per job instead;
* vanished rows: DELETE by natural key.

Building the statements is not timed; only executing them and committing is. Jobs are replayed
in chunks so that memory stays bounded at 10,000 jobs (the first archive writes ~550 change-log
rows per job). After the phase the row counts of every table must match the archiver's.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import inspect

from archiver import db
from archiver.archive.ingest import BATCH_JOBS
from bench.backends import Database

CHUNK = BATCH_JOBS  # jobs per transaction, as the archiver batches them
JobKey = tuple[str, str]


class FloorMismatch(AssertionError):
    """The replay did not reproduce the archiver's rows: the floor would be dishonest."""


@dataclass(frozen=True)
class Table:
    """A table holding per-job data, as the migrations made it."""

    name: str
    columns: tuple[str, ...]  # every column but the surrogate ``id``, in table order
    key: tuple[str, ...] | None  # the natural key (first unique constraint); None: append-only

    @property
    def key_index(self) -> tuple[int, ...]:
        assert self.key is not None
        return tuple(self.columns.index(c) for c in self.key)


def discover(url: str) -> list[Table]:
    """Every table with ``workflow_id`` and ``job_id`` columns, read from the migrated schema."""
    engine = db.make_engine(url)
    try:
        found = inspect(engine)
        out = []
        for name in sorted(found.get_table_names()):
            columns = tuple(c["name"] for c in found.get_columns(name) if c["name"] != "id")
            if "workflow_id" not in columns or "job_id" not in columns:
                continue
            uniques = found.get_unique_constraints(name)
            key = tuple(uniques[0]["column_names"]) if uniques else None
            out.append(Table(name, columns, key))
        return out
    finally:
        engine.dispose()


@dataclass
class Replay:
    """What one phase's replay did: its timed seconds and the work it contained."""

    seconds: float = 0.0
    jobs: int = 0
    statements: int = 0
    rows: int = 0  # rows inserted, updated or deleted
    per_table: dict[str, int] = field(default_factory=lambda: defaultdict(int))


Op = tuple[str, list[tuple[Any, ...]]]  # SQL, parameter sets


class Floor:
    """Replays each phase of an archive database into a floor database of the same schema."""

    def __init__(self, archive: Database, floor: Database) -> None:
        self.backend = archive.backend
        self.tables = discover(archive.url)
        self.ph = "?" if self.backend == "sqlite" else "%s"
        self.src = archive.connect()
        self.dst = floor.connect()
        if self.backend != "sqlite":
            self.src.autocommit = True  # reads only; never hold a snapshot while the archiver runs
        self.marks: dict[str, int] = {}
        self.reads_jobs = "jobs" in {t.name for t in self.tables}
        # PostgreSQL: the plain INSERT of an append-only table -> its COPY, which the archiver
        # uses for the same tables (``archiver.archive.statements.APPENDED``)
        self.copies: dict[str, str] = {}

    def close(self) -> None:
        self.src.close()
        self.dst.close()

    def mark(self) -> None:
        """Call before the archiver's phase: append-only rows above these ids are the phase's."""
        for table in self.tables:
            if table.key is None:
                row = self.src.execute(f"SELECT COALESCE(MAX(id), 0) FROM {table.name}").fetchone()
                self.marks[table.name] = int(row[0])

    def replay(self, keys: Sequence[JobKey]) -> Replay:
        """Write what the archiver wrote for ``keys`` (in archive order); returns the timing."""
        result = Replay()
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            reads, plans = self._plan(chunk, result)
            began = time.perf_counter()
            self._write(reads, plans)
            result.seconds += time.perf_counter() - began
            result.jobs += len(chunk)
        self.verify()
        return result

    def verify(self) -> None:
        """Every table holds as many rows in the floor as in the archive."""
        for table in self.tables:
            sql = f"SELECT COUNT(*) FROM {table.name}"
            ours, theirs = self.dst.execute(sql).fetchone()[0], self.src.execute(sql).fetchone()[0]
            if ours != theirs:
                raise FloorMismatch(f"{table.name}: floor has {ours} rows, archive {theirs}")
        if self.backend != "sqlite":
            self.dst.commit()

    # --- building the statements (not timed) ---------------------------------------------------

    def _rows(self, con: Any, table: Table, chunk: Sequence[JobKey], since: int | None) -> Any:
        """The chunk's rows of ``table``; with ``since``, only rows with a larger id, in order."""
        by_workflow: dict[str, list[str]] = defaultdict(list)
        for wf, job in chunk:
            by_workflow[wf].append(job)
        cols = ", ".join(table.columns)
        for wf, jobs in by_workflow.items():
            marks = ", ".join([self.ph] * len(jobs))
            sql = (
                f"SELECT {cols} FROM {table.name} "
                f"WHERE workflow_id = {self.ph} AND job_id IN ({marks})"
            )
            params: list[Any] = [wf, *jobs]
            if since is not None:
                sql += f" AND id > {self.ph} ORDER BY id"
                params.append(since)
            yield from con.execute(sql, params)

    def _reads(self, chunk: Sequence[JobKey]) -> list[Op]:
        """The batch's current job rows: one query per workflow among its jobs."""
        by_workflow: dict[str, list[str]] = defaultdict(list)
        for wf, job in chunk:
            by_workflow[wf].append(job)
        out: list[Op] = []
        for wf, jobs in by_workflow.items():
            marks = ", ".join([self.ph] * len(jobs))
            sql = f"SELECT * FROM jobs WHERE workflow_id = {self.ph} AND job_id IN ({marks})"
            out.append((sql, [(wf, *jobs)]))
        return out

    def _plan(self, chunk: Sequence[JobKey], result: Replay) -> tuple[list[Op], list[list[Op]]]:
        plans: dict[JobKey, list[Op]] = {key: [] for key in chunk}
        reads = self._reads(chunk) if self.reads_jobs else []
        for table in self.tables:
            wf_at, job_at = table.columns.index("workflow_id"), table.columns.index("job_id")
            if table.key is None:
                new: dict[JobKey, list[tuple[Any, ...]]] = defaultdict(list)
                for row in self._rows(self.src, table, chunk, self.marks[table.name]):
                    new[(row[wf_at], row[job_at])].append(tuple(row))
                for key, rows in new.items():
                    plans[key].append((self._insert_sql(table, upsert=False), rows))
                    result.per_table[table.name] += len(rows)
                    result.rows += len(rows)
                continue
            before = self._by_job(self.dst, table, chunk, wf_at, job_at)
            after = self._by_job(self.src, table, chunk, wf_at, job_at)
            for key in chunk:
                ops = self._diff(table, key, before.get(key, {}), after.get(key, {}), result)
                plans[key].extend(ops)
        if self.backend != "sqlite":
            self.dst.commit()  # end the read transaction before the clock starts
        result.statements += len(reads) + len({sql for ops in plans.values() for sql, _ in ops})
        return reads, list(plans.values())

    def _by_job(
        self, con: Any, table: Table, chunk: Sequence[JobKey], wf_at: int, job_at: int
    ) -> dict[JobKey, dict[tuple[Any, ...], tuple[Any, ...]]]:
        out: dict[JobKey, dict[tuple[Any, ...], tuple[Any, ...]]] = defaultdict(dict)
        key_index = table.key_index
        for row in self._rows(con, table, chunk, None):
            out[(row[wf_at], row[job_at])][tuple(row[i] for i in key_index)] = tuple(row)
        return out

    def _diff(
        self,
        table: Table,
        job: JobKey,
        before: dict[tuple[Any, ...], tuple[Any, ...]],
        after: dict[tuple[Any, ...], tuple[Any, ...]],
        result: Replay,
    ) -> list[Op]:
        ops: list[Op] = []
        cols = table.columns
        gone = [k for k in before if k not in after]
        added = [row for k, row in after.items() if k not in before]
        kept = [k for k in before if k in after]
        changed = {
            k: [
                i
                for i, (old, new) in enumerate(zip(before[k], after[k], strict=True))
                if old != new
            ]
            for k in kept
        }
        changed = {k: idx for k, idx in changed.items() if idx}
        if gone:
            ops.append((self._delete_sql(table), gone))
        common: list[int] = []
        if changed and len(changed) == len(kept) and len(kept) > 1:
            # the same columns set to the same values on every row of the job: one statement
            first = next(iter(changed))
            common = [
                i
                for i in changed[first]
                if all(i in idx and after[k][i] == after[first][i] for k, idx in changed.items())
            ]
            if common:
                sql = (
                    f"UPDATE {table.name} SET {self._assign(cols[i] for i in common)} "
                    f"WHERE workflow_id = {self.ph} AND job_id = {self.ph}"
                )
                ops.append((sql, [(*(after[first][i] for i in common), *job)]))
        by_columns: dict[tuple[int, ...], list[tuple[Any, ...]]] = defaultdict(list)
        for k, idx in changed.items():
            rest = tuple(i for i in idx if i not in common)
            if rest:
                by_columns[rest].append((*(after[k][i] for i in rest), *k))
        for rest, params in by_columns.items():
            where = " AND ".join(f"{c} = {self.ph}" for c in table.key or ())
            sql = f"UPDATE {table.name} SET {self._assign(cols[i] for i in rest)} WHERE {where}"
            ops.append((sql, params))
        if added:
            ops.append((self._insert_sql(table, upsert=True), added))
        touched = len(gone) + len(changed) + len(added)
        result.per_table[table.name] += touched
        result.rows += touched
        return ops

    def _assign(self, columns: Iterable[str]) -> str:
        return ", ".join(f"{c} = {self.ph}" for c in columns)

    def _insert_sql(self, table: Table, *, upsert: bool) -> str:
        marks = ", ".join([self.ph] * len(table.columns))
        sql = f"INSERT INTO {table.name} ({', '.join(table.columns)}) VALUES ({marks})"
        if not upsert:
            self.copies[sql] = f"COPY {table.name} ({', '.join(table.columns)}) FROM STDIN"
        if upsert and table.key:
            updates = ", ".join(f"{c} = excluded.{c}" for c in table.columns if c not in table.key)
            action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
            sql += f" ON CONFLICT ({', '.join(table.key)}) {action}"
        return sql

    def _delete_sql(self, table: Table) -> str:
        where = " AND ".join(f"{c} = {self.ph}" for c in table.key or ())
        return f"DELETE FROM {table.name} WHERE {where}"

    # --- writing (timed) ---------------------------------------------------------------------

    def _write(self, reads: list[Op], plans: list[list[Op]]) -> None:
        """One batch, one transaction; each statement once, with every job's parameter sets.

        Jobs' rows keep their order within each statement, so ids follow each job's writes.
        """
        merged: dict[str, list[tuple[Any, ...]]] = {}
        for ops in plans:
            for sql, params in ops:
                merged.setdefault(sql, []).extend(params)
        con = self.dst
        if self.backend == "sqlite":
            con.execute("BEGIN IMMEDIATE")
            for sql, params in reads:
                con.execute(sql, params[0]).fetchall()
            for sql, params in merged.items():
                con.executemany(sql, params)
            con.execute("COMMIT")
            return
        with con.cursor() as cur:
            for sql, params in reads:
                cur.execute(sql, params[0])
                cur.fetchall()
            for sql, params in merged.items():
                copy = self.copies.get(sql)
                if copy is None:
                    cur.executemany(sql, params)
                    continue
                with cur.copy(copy) as rows:
                    for row in params:
                        rows.write_row(row)
        con.commit()
