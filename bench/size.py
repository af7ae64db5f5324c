"""Archive size over a realistic lifecycle: bytes per table and index against the raw payloads.

    python -m bench.size                     # 20 jobs, SQLite and PostgreSQL, a few seconds
    python -m bench.size --jobs 200 --backends sqlite --json size.json

Issue 17's size target: the archive stays within 2.0x the raw bytes of the distinct payloads it
holds (the octet length of every ``job_snapshots.body``). The lifecycle is the one a daemon sees:
N jobs of the simulator's generator (``archiver.sim.jobgen``, seed 6, 10-30 tasks) polled every
simulated minute from queued, through running (progress, a log that grows when a task starts and
again when it ends, cost accruing), to their end and on through the settle window, which holds the
late re-pricing that the generator draws for about one job in five. Each minute's bodies go
through the real archive path (``archive_batch``, batches of 200, as ``archiver ingest`` and a
sync pass send them); an unchanged body writes no history, as on a real archive.

Sizes are what the database holds as written, never compacted (a SQLite archive is not vacuumed
in use): SQLite from ``dbstat`` (every page of every table and index; the freelist apart);
PostgreSQL from ``pg_table_size`` per table (with its TOAST, where large bodies go,
compressed) and per index, in a schema of its own. There autovacuum is off and a plain VACUUM of
the schema's tables runs after each simulated minute instead, as autovacuum would on a busy
archive, so that the figure does not depend on when autovacuum happened to wake. Each is also
measured compacted (VACUUM / VACUUM FULL), to tell data from free space. Deterministic: the same
N gives the same bytes on the same database version.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from typing import Any

from archiver import db
from archiver.archive.batches import Entry, archive_batch
from archiver.archive.ingest import BATCH_JOBS
from archiver.sim import jobgen
from archiver.sim.payloads import job_payload
from bench import backends

SEED = 6
TARGET = 2.0  # archive bytes / raw bytes of the distinct payloads held
TASKS = (10, 30)  # the generator's default: tasks per job, drawn between these
HISTORY = ("job_snapshots", "job_versions", "task_versions", "job_changes")


@dataclass(frozen=True)
class Relation:
    """One table (its heap, with TOAST on PostgreSQL) or one index, and the bytes it takes."""

    name: str
    kind: str  # "table" | "index"
    table: str  # the table an index belongs to (its own name for a table)
    bytes: int
    rows: int | None = None  # tables only
    compacted: int = 0  # bytes after VACUUM (SQLite) / VACUUM FULL (PostgreSQL)


@dataclass
class Measured:
    """One backend's archive after the lifecycle: every relation, and what the totals add up to."""

    backend: str
    jobs: int
    polls: int  # bodies sent to the archive path
    snapshots: int  # distinct payloads held
    raw_bytes: int  # sum of the octet lengths of the snapshot bodies
    relations: list[Relation] = field(default_factory=list)
    other_bytes: int = 0  # SQLite: freelist and the header page; PostgreSQL: 0
    other_compacted: int = 0
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(r.bytes for r in self.relations) + self.other_bytes

    @property
    def total_compacted(self) -> int:
        return sum(r.compacted for r in self.relations) + self.other_compacted

    def ratio(self, size: int) -> float:
        return size / self.raw_bytes if self.raw_bytes else math.inf

    def per_table(self) -> dict[str, int]:
        """Each table with its indexes."""
        out: dict[str, int] = {}
        for r in self.relations:
            out[r.table] = out.get(r.table, 0) + r.bytes
        return out


def lifecycle(
    jobs: int, *, seed: int = SEED, tasks: tuple[int, int] = TASKS
) -> Iterator[tuple[int, list[Entry]]]:
    """Each simulated minute's polls: every job not yet past its last change, then once more."""
    plans = jobgen.population(seed, jobs, tasks=tasks)
    start = plans[0].start if plans else jobgen.DEFAULT_START
    last = {p.job_id: math.floor(p.settled_at / 60) + 1 for p in plans}
    for minute in range(max(last.values(), default=-1) + 1):
        fetched_at = start + timedelta(minutes=minute)
        due = [p for p in plans if minute <= last[p.job_id]]
        yield (
            minute,
            [Entry(_body(job_payload(p, minute, time_scale=60.0)), fetched_at) for p in due],
        )


def _body(doc: dict[str, Any]) -> str:
    """As the simulator serves it (``archiver.sim.simulator``): compact JSON, UTF-8 as is."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def archive_lifecycle(
    url: str,
    jobs: int,
    after_minute: Callable[[], None] | None = None,
    *,
    tasks: tuple[int, int] = TASKS,
) -> int:
    """Run the lifecycle into the (migrated) archive at ``url``; the number of bodies sent.
    ``after_minute`` runs after each simulated minute's polls."""
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    polls = 0
    try:
        for _, entries in lifecycle(jobs, tasks=tasks):
            for i in range(0, len(entries), BATCH_JOBS):
                results = archive_batch(sessions, entries[i : i + BATCH_JOBS])
                failed = [r for r in results if isinstance(r, Exception)]
                if failed:
                    raise RuntimeError(f"the archive refused a body: {failed[0]}")
            polls += len(entries)
            if after_minute is not None:
                after_minute()
    finally:
        engine.dispose()
    return polls


def measure(
    backend: str, jobs: int, postgres_url: str, *, tasks: tuple[int, int] = TASKS
) -> Measured:
    """The lifecycle into a fresh archive on ``backend``; its sizes as written, then compacted."""
    sizes = _sqlite if backend == "sqlite" else _postgres
    with backends.fresh(backend, ("archive",), postgres_url) as dbs:
        database = dbs["archive"]
        con = database.connect()
        try:
            vacuum = None
            if backend == "postgresql":
                con.autocommit = True
                vacuum = _autovacuum_off(con, database.schema)
            started = time.perf_counter()
            polls = archive_lifecycle(database.url, jobs, vacuum, tasks=tasks)
            seconds = time.perf_counter() - started
            if backend == "sqlite":
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            written, other = sizes(con, database.schema)
            con.execute(
                "VACUUM" if backend == "sqlite" else f"VACUUM FULL {_tables(con, database.schema)}"
            )
            compacted, other_compacted = sizes(con, database.schema)
            snapshots, raw = _raw(con, backend)
        finally:
            con.close()
    after = {r.name: r.bytes for r in compacted}
    relations = [replace(r, compacted=after.get(r.name, 0)) for r in written]
    return Measured(
        backend, jobs, polls, snapshots, raw, relations, other, other_compacted, seconds
    )


def _raw(con: Any, backend: str) -> tuple[int, int]:
    octets = "length(CAST(body AS BLOB))" if backend == "sqlite" else "octet_length(body)"
    row = con.execute(f"SELECT count(*), coalesce(sum({octets}), 0) FROM job_snapshots").fetchone()
    return int(row[0]), int(row[1])


def _sqlite(con: Any, _schema: str | None) -> tuple[list[Relation], int]:
    kinds = dict(
        con.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'index')")
    )
    owners = dict(con.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"))
    relations = []
    for name, size in con.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
        if name == "sqlite_schema" or name not in kinds:
            relations.append(Relation(name, "table", name, int(size)))
            continue
        kind = kinds[name]
        rows = None
        if kind == "table":
            rows = int(con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
        relations.append(Relation(name, kind, owners.get(name, name), int(size), rows))
    pages = con.execute("PRAGMA page_count").fetchone()[0]
    page_size = con.execute("PRAGMA page_size").fetchone()[0]
    other = pages * page_size - sum(r.bytes for r in relations)
    return relations, other


def _autovacuum_off(con: Any, schema: str | None) -> Callable[[], None]:
    """Autovacuum off for the schema's tables, and what runs instead after each minute: a plain
    VACUUM of them, as autovacuum (naptime 1 minute) does on a busy archive, at fixed points."""
    tables = _tables(con, schema)
    for name in tables.split(", "):
        con.execute(
            f"ALTER TABLE {name} SET (autovacuum_enabled = false, toast.autovacuum_enabled = false)"
        )
    return lambda: con.execute(f"VACUUM {tables}")


def _tables(con: Any, schema: str | None) -> str:
    """The schema's tables, qualified, as a VACUUM list: never the database's other schemas."""
    names = con.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename", (schema,)
    ).fetchall()
    return ", ".join(f'"{schema}"."{name}"' for (name,) in names)


def _postgres(con: Any, schema: str | None) -> tuple[list[Relation], int]:
    tables = con.execute(
        "SELECT c.oid, c.relname FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname",
        (schema,),
    ).fetchall()
    relations = []
    for oid, name in tables:
        # every fork of the heap, and its TOAST table with the TOAST index
        heap = con.execute("SELECT pg_table_size(%s)", (oid,)).fetchone()[0]
        rows = con.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0]
        relations.append(Relation(name, "table", name, int(heap), int(rows)))
        indexes = con.execute(
            "SELECT i.relname, pg_total_relation_size(i.oid) FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s ORDER BY i.relname",
            (oid,),
        ).fetchall()
        relations += [Relation(ix, "index", name, int(size)) for ix, size in indexes]
        whole = con.execute("SELECT pg_total_relation_size(%s)", (oid,)).fetchone()[0]
        parts = sum(r.bytes for r in relations if r.table == name)
        if whole != parts:  # every byte PostgreSQL counts for the table is in some row above
            raise AssertionError(f"{name}: {parts} bytes in parts, {whole} in total")
    return relations, 0


# --- output -------------------------------------------------------------------------------------


def render(m: Measured) -> str:
    """The breakdown as a Markdown table: history tables and their indexes first, then the rest
    (relations of under 1/1000 of the raw bytes both ways are summed into one line)."""
    lines = [
        f"{m.backend}: {m.jobs} jobs, {m.polls:,} polls, {m.snapshots:,} distinct payloads, "
        f"raw {m.raw_bytes:,} bytes; archived in {m.seconds:.1f} s",
        "",
        "| relation | rows | bytes as written | x raw | compacted | x raw |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def line(label: str, rows: str, size: int, packed: int) -> str:
        return f"| {label} | {rows} | {size:,} | {m.ratio(size):.3f} | {packed:,} | " + (
            f"{m.ratio(packed):.3f} |"
        )

    order = {name: i for i, name in enumerate(HISTORY)}
    by_table = m.per_table()
    tables = sorted(by_table, key=lambda t: (order.get(t, len(order)), -by_table[t], t))
    small = [0, 0, 0]
    for table in tables:
        own = [r for r in m.relations if r.table == table]
        for r in sorted(own, key=lambda r: (r.kind != "table", -r.bytes, r.name)):
            if table not in order and max(r.bytes, r.compacted) < m.raw_bytes / 1000:
                small = [small[0] + 1, small[1] + r.bytes, small[2] + r.compacted]
                continue
            label = r.name if r.kind == "table" else f"&nbsp;&nbsp;index {r.name}"
            rows = "" if r.rows is None else f"{r.rows:,}"
            lines.append(line(label, rows, r.bytes, r.compacted))
    if small[0]:
        lines.append(line(f"{small[0]} smaller relations", "", small[1], small[2]))
    if m.other_bytes or m.other_compacted:
        lines.append(line("(free pages, file header)", "", m.other_bytes, m.other_compacted))
    lines.append(
        line("**total**", "", m.total, m.total_compacted)
        + f" target ≤ {TARGET}x as written: {'yes' if m.ratio(m.total) <= TARGET else 'NO'}"
    )
    return "\n".join(lines)


def summary(m: Measured) -> dict[str, Any]:
    """Every figure, for ``--json``: the totals and each relation."""
    return {
        **{k: v for k, v in asdict(m).items() if k != "relations"},
        "total": m.total,
        "ratio": m.ratio(m.total),
        "total_compacted": m.total_compacted,
        "ratio_compacted": m.ratio(m.total_compacted),
        "per_table": m.per_table(),
        "relations": [asdict(r) for r in m.relations],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.size", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--jobs", type=int, default=20, help="jobs in the lifecycle (default 20)")
    parser.add_argument("--backends", default="sqlite,postgresql", help="sqlite,postgresql")
    parser.add_argument(
        "--tasks",
        default=f"{TASKS[0]},{TASKS[1]}",
        help="MIN,MAX tasks per job (default 10,30: the generator's); fewer: smaller payloads",
    )
    backends.add_output_options(parser, "figures")
    args = parser.parse_args(argv)
    wanted = tuple(b for b in args.backends.split(",") if b)
    if set(wanted) - {"sqlite", "postgresql"}:
        parser.error("--backends: sqlite and/or postgresql")
    low, high = (int(x) for x in args.tasks.split(","))
    results = []
    for backend in wanted:
        if backend == "postgresql":
            reason = backends.postgres_reachable(args.postgres_url)
            if reason:
                print(f"postgresql: skipped: {reason}\n")
                continue
        m = measure(backend, args.jobs, args.postgres_url, tasks=(low, high))
        results.append(m)
        print(render(m))
        print()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump([summary(m) for m in results], fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
