"""Cross-database parity (issue 7): one scripted sequence of payloads, hostile ones included,
archived on SQLite, PostgreSQL and MariaDB, leaves the same archive on all three.

Why: each database stores times, decimals, JSON, booleans and long text its own way, and a value
that round-trips on one can be cut, shifted, rounded or refused on another. Comparing whole
normalized dumps (``archive_dump.dump``: every table, surrogate ids dropped, rows sorted by natural
key) catches any of these without having to guess where they hide. A missing database URL skips
the test with conftest's reason (a failure when ``ARCHIVER_REQUIRE_ALL_DATABASES=1``).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import factories
from archive_dump import Dump, dump, dump_views, first_difference, open_archive
from conftest import BACKENDS, fresh_database
from figures import record_figures

from archiver.archive.ingest import Summary, ingest, read_items
from archiver.audit.verify import verify

T0 = datetime(2026, 10, 2, 13, 0, tzinfo=UTC)  # fetches follow every updated_at
INGESTED_AT = datetime(2026, 10, 3, 8, 0, tzinfo=UTC)  # the clock of the ingest runs themselves

Step = tuple[str, bytes, datetime]


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def step(name: str, doc: Any, minutes: int) -> Step:
    return name, json.dumps(doc).encode(), at(minutes)


def raw(name: str, text: str | bytes, minutes: int) -> Step:
    return name, text.encode() if isinstance(text, str) else text, at(minutes)


def sequence() -> list[Step]:
    """About thirty payloads over seven jobs: lifecycles, history edge cases and hostile values."""
    a1 = factories.job("a", "wf-parity", tasks=5, val_errors=2)
    a2 = factories.evolve(a1, cost=1500, progress="80%", updated_at="2026-10-01T10:20:00Z")
    a2["tasks"][1]["status"] = "failed"
    a2["tasks"][1]["err_msg"] = "out of memory"
    a2["tasks"] = [t for t in a2["tasks"] if t["id"] != "t04"]
    a2["val_errors"] = a2["val_errors"][:1]
    a3 = factories.evolve(a1, status="completed", progress="100%", cost=1499)
    a3["updated_at"] = "2026-10-01T11:00:00Z"
    a3["finished_at"] = "2026-10-01T10:59:59.999999Z"

    b1 = factories.job(
        "b",
        "wf-parity",
        tasks=2,
        cost=10**15,
        progress="33.33333%",
        time_taken="0.0005s",
        estimated_duration=0,
        created_at="2026-10-01T10:00:00.9999999Z",
        updated_at="2026-10-01T15:45:00+05:45",
    )
    b2 = factories.evolve(b1, cost=-(10**15), time_taken="999999999999s")
    b2["updated_at"] = "2026-10-01T10:30:00Z"

    c1 = factories.job("c", "wf-unicode", tasks=3, created_by='Zoë 🚀 "q" \\ 测试')
    c1["tasks"][0]["name"] = "x\u0000y"
    c1["tasks"][1]["err_msg"] = "lone \ud83d surrogate"
    c1["tasks"][2]["state_msg"] = "é" * 300_000
    c1["val_errors"][0]["reason"] = "r" * 70_000
    c2 = factories.evolve(c1, cost=7, updated_at="2026-10-01T10:40:00Z")
    del c2["tasks"]
    c3 = factories.evolve(c2, cost=8, tasks=None, val_errors=None)
    c3["updated_at"] = "2026-10-01T10:50:00Z"

    d1 = factories.job("d", "wf-parity", tasks=3)
    d1["tasks"].append(factories.task("t01", status="failed", depends_on=["t01", "ghost", "t02"]))
    d1["tasks"][0]["depends_on"] = ["t02"]
    d1_text = json.dumps(d1)[:-1] + ', "cost": 1, "cost": 7}'
    d2 = factories.evolve(d1, status="EXPLODED", progress=">100", cost="123")
    d2["updated_at"] = "2026-10-01T10:25:00Z"

    e1 = factories.job("e", "wf-times", tasks=4)
    e1.update(
        created_at="2026-10-01 09:00:00",
        exec_created_at=1790000000.123456,
        exec_updated_at="2026-10-01T09:30:00.5-0330",
        finished_at="",
        time_taken="2 days, 1:02:03.5",
    )
    for task, taken in zip(e1["tasks"], ("754", "PT1H2M", "12:34", "250ms"), strict=True):
        task["time_taken"] = taken
    e1["tasks"][0]["recv_time"] = "0500-06-15T12:00:00Z"  # before MySQL's documented range
    e2 = factories.evolve(e1, status="completed", cost=900, updated_at="2026-10-01T12:00:00Z")
    e3 = factories.evolve(e2, cost=950, updated_at="2026-10-02T12:00:00Z")  # re-priced

    f1 = factories.job(
        "f",
        "wf-json",
        tasks=1,
        spec=[2**200, -(2**70), 0.1, 1e300, -0.0, 1.5e-7, "\u00e9", {"b": 1, "a": [None, True]}],
        labels={"z": 1, "a": {"y": [1, 2], "x": None}},
    )
    f1_reordered = json.dumps(dict(reversed(list(f1.items()))), indent=3)

    h1 = factories.job("h1", "wf-batch", tasks=1, val_errors=0)
    h2 = factories.job(4242, "wf-batch", tasks=1, val_errors=0)
    lines = "\n".join(json.dumps(factories.job(f"l{i}", "wf-lines", tasks=1)) for i in range(3))

    return [
        step("a1", a1, 0),
        step("b1", b1, 1),
        raw("d1", d1_text, 2),
        step("c1", c1, 3),
        step("e1", e1, 4),
        step("f1", f1, 5),
        raw("html", "<!DOCTYPE html><html><body>502 Bad Gateway</body></html>", 6),
        step("a2", a2, 10),
        step("a2-again", a2, 11),
        step("a1-stale", a1, 12),
        step("b2", b2, 13),
        step("c2-tasks-absent", c2, 14),
        step("c3-tasks-null", c3, 15),
        step("d2", d2, 16),
        raw("nan", json.dumps(factories.job("n", "wf-parity")).replace("1200", "NaN"), 17),
        step("cost-64", factories.job("o", "wf-parity", cost=2**64), 18),
        step("nul-id", factories.job("p\u0000", "wf-parity"), 19),
        raw("f1-reordered", f1_reordered, 20),
        step("e2", e2, 21),
        step("a3-tasks-back", a3, 22),
        step("batch", [h1, h2, 5], 23),
        raw("lines", lines, 24),
        raw("truncated", json.dumps(a3)[:500], 25),
        step("e3-repriced", e3, 26),
        step("e3-again", e3, 27),
        step("a2-late-but-older", a2, 28),
    ]


def archive_sequence(url: str, backend: str, steps: list[Step]) -> tuple[Dump, Dump, Summary]:
    total = Summary()
    with open_archive(backend, url) as archive:
        for name, data, fetched_at in steps:
            summary = ingest(
                archive.sessions, read_items(name, data, fetched_at), now=lambda: INGESTED_AT
            )
            for field in ("new", "changed", "unchanged", "stale", "failed", "problems"):
                setattr(total, field, getattr(total, field) + getattr(summary, field))
        with archive.sessions() as session:  # hostile values read back hash as they were written
            report = verify(session)
        assert report.ok and report.jobs > 5, [b.line() for b in report.breaks[:5]]
        return dump(archive.engine), dump_views(archive.engine), total


def test_the_same_sequence_leaves_the_same_archive_on_every_database(tmp_path: Path) -> None:
    steps = sequence()
    dumps: dict[str, Dump] = {}
    views: dict[str, Dump] = {}
    summaries: dict[str, Summary] = {}
    with ExitStack() as stack:
        for backend in BACKENDS:
            (tmp_path / backend).mkdir()
            url = stack.enter_context(fresh_database(backend, tmp_path / backend))
            dumps[backend], views[backend], summaries[backend] = archive_sequence(
                url, backend, steps
            )

    reference = dumps["sqlite"]
    # the sequence exercises what it claims to: every table has rows, every outcome happened
    assert sorted(t for t, d in reference.items() if not d.rows) == [
        "chain_anchors",  # anchoring the chains and closing periods are not archive steps
        "period_events",
        "period_statement_lines",
        "period_statements",
        "tracked_jobs",
        "watch_rules",  # workflows are written by a pass's listing step (tests/polling/)
        "workflow_changes",
        "workflow_versions",
        "workflows",
    ]
    counts = {k: getattr(summaries["sqlite"], k) for k in ("new", "changed", "unchanged", "stale")}
    assert all(counts.values()), counts
    assert summaries["sqlite"].failed == 6 and summaries["sqlite"].problems > 10
    assert len(views["sqlite"]) >= 15 and all(v.rows for v in views["sqlite"].values())
    for backend in BACKENDS[1:]:
        assert summaries[backend].__dict__ == summaries["sqlite"].__dict__, backend
        assert dumps[backend] == reference, first_difference(
            reference, dumps[backend], ("sqlite", backend)
        )
    record_figures(
        "parity",
        inputs=len(steps) * len(BACKENDS),
        rows=sum(len(d.rows) for d in reference.values()),
        rejected=summaries["sqlite"].failed,
    )
