"""Audit integrity on every database: hash chains and ``verify``, rebuild, closed periods.

Each tampering is done the way someone with write access would do it (plain SQL on the tables)
and must be detected and named: which table, which row, which kind of break.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import factories
import pytest
from click.testing import CliRunner
from conftest import backend_of, fresh_database
from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from archiver import db
from archiver.archive.batches import archive_one
from archiver.archive.chain import CURRENT, ENCODINGS
from archiver.archive.payload import JOB_FIELDS, TASK_FIELDS
from archiver.audit import periods
from archiver.audit.rebuild import rebuild
from archiver.audit.verify import Report, check_anchor, take_anchor, verify
from archiver.cli import cli
from archiver.errors import ArchiverError
from archiver.models import (
    CHANGES,
    JOB_VERSIONS,
    JOBS,
    SNAPSHOTS,
    STATEMENT_LINES,
    TASK_VERSIONS,
    PeriodStatement,
)

T0 = datetime(2026, 10, 5, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 20, tzinfo=UTC)  # after October ended: October can be closed


def build_small(sessions: sessionmaker[Session]) -> None:
    """Two jobs with cost changes, a task removed, a validation error resolved, a stale payload."""
    a = factories.job("job-a", tasks=3, val_errors=1, cost=100)
    steps = [
        a,
        factories.evolve(a, cost=150, status="running", updated_at="2026-10-05T08:05:00Z"),
        factories.evolve(
            a,
            cost=180,
            status="completed",
            val_errors=[],
            tasks=a["tasks"][:2],
            updated_at="2026-10-05T08:15:00Z",
        ),
        factories.evolve(a, cost=90, updated_at="2026-10-05T08:10:00Z"),  # stale
        factories.job("job-b", tasks=2, val_errors=0, cost=40),
        factories.evolve(
            factories.job("job-b", tasks=2, val_errors=0),
            cost=55,
            updated_at="2026-10-01T11:00:00Z",
        ),
    ]
    for i, payload in enumerate(steps):
        archive_one(sessions, payload, T0 + timedelta(minutes=10 * i))


def run_verify(sessions: sessionmaker[Session], **kw: Any) -> Report:
    with sessions() as session:
        return verify(session, **kw)


def one(sessions: sessionmaker[Session], query: Any) -> Any:
    with sessions() as session:
        return session.execute(query).mappings().first()


def cost_change(sessions: sessionmaker[Session]) -> Any:
    return one(
        sessions,
        select(CHANGES)
        .where(CHANGES.c.job_id == "job-a", CHANGES.c.field == "cost")
        .order_by(CHANGES.c.id.desc()),
    )


def execute(sessions: sessionmaker[Session], *statements: Any) -> None:
    with sessions() as session:
        for statement in statements:
            session.execute(statement)
        session.commit()


def test_the_chain_covers_every_state_column() -> None:
    """A column left out of the hash could be edited unseen."""
    covered = ENCODINGS[CURRENT]
    assert set(JOB_FIELDS) <= set(covered["job_versions"])
    assert set(TASK_FIELDS) <= set(covered["task_versions"])
    for table, columns in covered.items():
        model_columns = {
            "job_snapshots": SNAPSHOTS,
            "job_versions": JOB_VERSIONS,
            "task_versions": TASK_VERSIONS,
            "job_changes": CHANGES,
        }[table].c.keys()
        unhashed = set(model_columns) - set(columns)
        # chain_version is hashed by naming the encoding in the encoded text
        chain = {"chain_version", "chain_seq", "prev_sha256", "row_sha256"}
        assert unhashed <= {"id", "valid_to", "body", *chain}


def test_an_untouched_archive_verifies(sessions: sessionmaker[Session]) -> None:
    build_small(sessions)
    report = run_verify(sessions)
    assert report.ok, [b.line() for b in report.breaks]
    assert report.jobs == 2 and report.snapshots == 6 and report.rows > 40
    with sessions() as session:
        seqs = session.execute(select(JOBS.c.job_id, JOBS.c.chain_seq)).all()
        # the stale payload was kept once, as evidence, in the chain
        assert (
            session.scalar(
                select(func.count()).select_from(SNAPSHOTS).where(SNAPSHOTS.c.applied.is_(False))
            )
            == 1
        )
    assert dict(seqs)["job-a"] > 20


def _edit_change(s: sessionmaker[Session]) -> tuple[str, int, str]:
    row = cost_change(s)
    execute(s, update(CHANGES).where(CHANGES.c.id == row["id"]).values(new_value="999999"))
    return "job_changes", row["id"], "edited"


def _edit_version(s: sessionmaker[Session]) -> tuple[str, int, str]:
    row = one(
        s, select(JOB_VERSIONS).where(JOB_VERSIONS.c.job_id == "job-a", JOB_VERSIONS.c.version == 2)
    )
    execute(s, update(JOB_VERSIONS).where(JOB_VERSIONS.c.id == row["id"]).values(cost=1))
    return "job_versions", row["id"], "edited"


def _edit_snapshot(s: sessionmaker[Session]) -> tuple[str, int, str]:
    row = one(s, select(SNAPSHOTS).where(SNAPSHOTS.c.job_id == "job-a").order_by(SNAPSHOTS.c.id))
    body = row["body"].replace('"cost":100', '"cost":1')
    assert body != row["body"]
    execute(s, update(SNAPSHOTS).where(SNAPSHOTS.c.id == row["id"]).values(body=body))
    return "job_snapshots", row["id"], "edited"


def _edit_current(s: sessionmaker[Session]) -> tuple[str, int, str]:
    row = one(s, select(JOBS).where(JOBS.c.job_id == "job-a"))
    execute(s, update(JOBS).where(JOBS.c.id == row["id"]).values(cost=1))
    return "jobs", row["id"], "edited"


def _edit_valid_to(s: sessionmaker[Session]) -> tuple[str, int, str]:
    row = one(
        s, select(JOB_VERSIONS).where(JOB_VERSIONS.c.job_id == "job-a", JOB_VERSIONS.c.version == 1)
    )
    later = row["valid_to"] + timedelta(hours=1)
    execute(s, update(JOB_VERSIONS).where(JOB_VERSIONS.c.id == row["id"]).values(valid_to=later))
    return "job_versions", row["id"], "edited"


def _delete_middle(s: sessionmaker[Session]) -> tuple[str, int, str]:
    row = cost_change(s)
    following = one(
        s,
        select(CHANGES).where(
            CHANGES.c.job_id == "job-a", CHANGES.c.chain_seq == row["chain_seq"] + 1
        ),
    )
    assert following is not None, "the fixture needs a row after the deleted one"
    execute(s, delete(CHANGES).where(CHANGES.c.id == row["id"]))
    return "job_changes", following["id"], "deleted"


def _delete_last(s: sessionmaker[Session]) -> tuple[str, int, str]:
    head = one(s, select(JOBS).where(JOBS.c.job_id == "job-b"))
    execute(
        s,
        delete(CHANGES).where(
            CHANGES.c.job_id == "job-b", CHANGES.c.chain_seq == head["chain_seq"]
        ),
    )
    return "jobs", head["id"], "deleted"


def _insert_row(s: sessionmaker[Session]) -> tuple[str, int, str]:
    head = one(s, select(JOBS).where(JOBS.c.job_id == "job-a"))
    forged = {
        "workflow_id": "wf-1",
        "job_id": "job-a",
        "task_id": None,
        "entity": "job",
        "entity_key": None,
        "field": "cost",
        "old_value": "180",
        "new_value": "18",
        "observed_at": T0 + timedelta(hours=5),
        "chain_version": 1,
        "chain_seq": head["chain_seq"] + 1,
        "prev_sha256": "f" * 64,
        "row_sha256": "e" * 64,
    }
    execute(s, insert(CHANGES).values(forged))
    row = one(s, select(CHANGES).order_by(CHANGES.c.id.desc()))
    return "job_changes", row["id"], "inserted"


def _swap_order(s: sessionmaker[Session]) -> tuple[str, int, str]:
    with s() as session:
        first, second = session.execute(
            select(CHANGES.c.id, CHANGES.c.chain_seq)
            .where(CHANGES.c.job_id == "job-a")
            .order_by(CHANGES.c.chain_seq)
            .limit(2)
            .offset(3)
        ).all()
        # through a free seq: the unique index forbids a moment with both rows on one seq
        session.execute(update(CHANGES).where(CHANGES.c.id == first.id).values(chain_seq=-1))
        session.execute(
            update(CHANGES).where(CHANGES.c.id == second.id).values(chain_seq=first.chain_seq)
        )
        session.execute(
            update(CHANGES).where(CHANGES.c.id == first.id).values(chain_seq=second.chain_seq)
        )
        session.commit()
    return "job_changes", second.id, "reordered"


TAMPERINGS: dict[str, Callable[[sessionmaker[Session]], tuple[str, int, str]]] = {
    "edit a change": _edit_change,
    "edit a version": _edit_version,
    "edit a snapshot's payload": _edit_snapshot,
    "edit the current cost": _edit_current,
    "edit a valid_to": _edit_valid_to,
    "delete a row": _delete_middle,
    "delete the last rows": _delete_last,
    "insert a row": _insert_row,
    "swap two rows' order": _swap_order,
}


@pytest.mark.parametrize("tamper", TAMPERINGS, ids=list(TAMPERINGS))
def test_each_tampering_is_detected_and_named(sessions: sessionmaker[Session], tamper: str) -> None:
    build_small(sessions)
    assert run_verify(sessions).ok
    table, row_id, kind = TAMPERINGS[tamper](sessions)
    report = run_verify(sessions)
    assert not report.ok
    named = [(b.table, b.row_id, b.kind) for b in report.breaks]
    assert (table, row_id, kind) in named, [b.line() for b in report.breaks]
    # the other job is untouched and says so
    other = "job-b" if tamper != "delete the last rows" else "job-a"
    assert run_verify(sessions, job_id=other).ok


def test_verify_cli_names_the_break_and_exits_non_zero(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        sessions = db.session_factory(engine)
        build_small(sessions)
        ok = CliRunner().invoke(cli, ["verify", "--anchor", "--database-url", db_url])
        assert ok.exit_code == 0, ok.output
        assert "no breaks" in ok.stdout and "anchor: " in ok.stdout
        digest = ok.stdout.split("anchor: ")[1].split()[0]
        _edit_change(sessions)
        bad = CliRunner().invoke(cli, ["verify", "--database-url", db_url])
        assert bad.exit_code == 1
        assert "job_changes row" in bad.stdout and "edited" in bad.stdout
        assert "1 break\n" in bad.stdout
        checked = CliRunner().invoke(cli, ["verify", "--against", digest, "--database-url", db_url])
        assert checked.exit_code == 1 and "anchor " in checked.stdout
    finally:
        engine.dispose()


def test_an_anchor_catches_a_wholesale_rewrite(sessions: sessionmaker[Session]) -> None:
    """Re-hashing a whole chain after an edit passes verify, but not the anchor."""
    from archiver.archive.chain import Chain
    from archiver.audit.verify import HISTORY

    build_small(sessions)
    with sessions() as session:
        digest = take_anchor(session, verify(session))
        session.commit()
    _edit_change(sessions)
    # the attacker recomputes job-a's whole chain and its head
    with sessions() as session:
        rows = []
        for name, t in HISTORY.items():
            for row in session.execute(select(t).where(t.c.job_id == "job-a")).mappings():
                rows.append((row["chain_seq"], name, dict(row)))
        chain = Chain()
        for _, name, row in sorted(rows, key=lambda r: r[0]):
            chain.link(name, row)
            t = HISTORY[name]
            session.execute(
                update(t)
                .where(t.c.id == row["id"])
                .values(prev_sha256=row["prev_sha256"], row_sha256=row["row_sha256"])
            )
        session.execute(update(JOBS).where(JOBS.c.job_id == "job-a").values(**chain.head_columns()))
        session.commit()
    assert run_verify(sessions).ok  # a consistent rewrite: the chains alone cannot tell
    with sessions() as session:
        checked, breaks = check_anchor(session, digest)
    assert checked == 2
    assert [(b.job_id, b.kind) for b in breaks] == [("job-a", "edited")]
    with sessions() as session, pytest.raises(ArchiverError, match="no anchor with digest"):
        check_anchor(session, "0" * 64)


# --- rebuild -------------------------------------------------------------------------------------


def mutations(seed: int, steps: int) -> list[tuple[dict[str, Any], datetime]]:
    """A seeded walk over 5 jobs: cost, status, progress, tasks added and removed, validation
    errors, repeats of the same payload, and stale payloads arriving late."""
    rng = random.Random(seed)
    jobs = {f"job-{i}": factories.job(f"job-{i}", tasks=4, val_errors=1) for i in range(5)}
    sent: dict[str, list[dict[str, Any]]] = {k: [v] for k, v in jobs.items()}
    out = [(payload, T0) for payload in jobs.values()]
    clock = T0
    for step in range(steps):
        clock += timedelta(seconds=rng.randint(1, 600))
        jid = rng.choice(list(jobs))
        current = jobs[jid]
        roll = rng.random()
        if roll < 0.08 and len(sent[jid]) > 1:
            out.append((rng.choice(sent[jid][:-1]), clock))  # a stale payload
            continue
        if roll < 0.15:
            out.append((current, clock))  # the same payload again
            continue
        new = factories.evolve(current, updated_at=(T0 + timedelta(minutes=step + 1)).isoformat())
        kind = rng.choice(["cost", "status", "progress", "drop", "add", "errors", "task"])
        if kind == "cost":
            new["cost"] = rng.randint(0, 10**6)
        elif kind == "status":
            new["status"] = rng.choice(["queued", "running", "completed", "failed"])
        elif kind == "progress":
            new["progress"] = f"{rng.randint(0, 100)}%"
        elif kind == "drop" and new["tasks"]:
            del new["tasks"][rng.randrange(len(new["tasks"]))]
        elif kind == "add":
            tid = f"x{rng.randint(0, 30)}"
            if all(t["id"] != tid for t in new["tasks"]):
                new["tasks"].append(factories.task(tid))
        elif kind == "errors":
            new["val_errors"] = factories.job(val_errors=rng.randint(0, 3))["val_errors"]
        elif new["tasks"]:
            task = rng.choice(new["tasks"])
            task["status"] = rng.choice(["running", "failed", "completed"])
            task["progress"] = rng.randint(0, 100)
        jobs[jid] = new
        sent[jid].append(new)
        out.append((new, clock))
    return out


def test_rebuild_equals_the_original_after_hundreds_of_mutations(
    sessions: sessionmaker[Session], db_url: str, tmp_path: Path
) -> None:
    outcomes: dict[str, int] = {}
    for payload, fetched_at in mutations(seed=8, steps=300):
        result = archive_one(sessions, payload, fetched_at)
        outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    assert outcomes.get("stale", 0) > 5 and outcomes.get("unchanged", 0) > 5, outcomes
    with sessions() as session:
        removed = session.scalar(
            select(func.count()).select_from(CHANGES).where(CHANGES.c.new_value == "removed")
        )
        original = take_anchor(session, verify(session))
        session.commit()
    assert removed and removed > 5
    (tmp_path / "rebuilt").mkdir()
    backend = {"mysql": "mariadb"}.get(backend_of(db_url), backend_of(db_url))
    with fresh_database(backend, tmp_path / "rebuilt") as target:
        report = rebuild(sessions, target)
        assert report.rejected == []
        assert report.identical, [(d.table, d.only_before, d.only_after) for d in report.diffs]
        assert report.jobs == 5 and report.snapshots > 200
        engine = db.make_engine(target)
        try:
            rebuilt = db.session_factory(engine)
            with rebuilt() as session:
                again = verify(session)
                assert again.ok
                # the same chains, to the hash: the original's anchor holds in the rebuild
                checked, breaks = check_anchor(session, original)
                assert (checked, breaks) == (5, [])
        finally:
            engine.dispose()


def test_rebuild_refuses_a_database_that_holds_jobs(
    sessions: sessionmaker[Session], db_url: str
) -> None:
    build_small(sessions)
    with pytest.raises(ArchiverError, match="already holds jobs"):
        rebuild(sessions, db_url)


def test_dry_run_reports_what_a_rebuild_would_change(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        sessions = db.session_factory(engine)
        build_small(sessions)
        clean = CliRunner().invoke(cli, ["rebuild", "--dry-run", "--database-url", db_url])
        assert clean.exit_code == 0, clean.output
        assert "equals this one" in clean.stdout
        _edit_current(sessions)
        before = run_verify(sessions)
        changed = CliRunner().invoke(cli, ["rebuild", "--dry-run", "--database-url", db_url])
        assert changed.exit_code == 1
        assert "would differ for 1 job:" in changed.stdout
        assert "jobs: 1 row only here, 1 only in the rebuild" in changed.stdout
        assert "job wf-1/job-a" in changed.stdout
        # a dry run changes nothing
        assert [b.line() for b in run_verify(sessions).breaks] == [b.line() for b in before.breaks]
    finally:
        engine.dispose()


# --- closed periods ------------------------------------------------------------------------------


def test_a_closed_period_keeps_its_figures_and_books_later_movements_as_adjustments(
    sessions: sessionmaker[Session],
) -> None:
    build_small(sessions)  # job-a (cost 180) and job-b (cost 55), created 2026-10-01
    november = factories.job(
        "job-n", tasks=1, val_errors=0, cost=7, created_at="2026-11-02T00:00:00Z"
    )
    archive_one(sessions, november, T0 + timedelta(days=30))
    with sessions() as session:
        statement = periods.close_period(session, "2026-10", "auditor", now=NOW)
        session.commit()
    assert (statement.jobs, statement.cost) == (2, 235)
    lines = {(ln.dimension, ln.key): ln.cost for ln in statement.lines}
    assert lines[("workflow", "wf-1")] == 235 and lines[("user", "user-7")] == 235
    assert lines[("block", "ortho-rectify@1.4.2")] == 235

    # re-pricing after the close: job-a goes from 180 to 130
    a = factories.job("job-a", tasks=2, val_errors=0, cost=130, status="completed")
    a["updated_at"] = "2026-11-25T00:00:00Z"
    archive_one(sessions, a, NOW + timedelta(days=5))
    with sessions() as session:
        by_month = {r.group: r for r in periods.books(session, "month")}
        by_workflow = {r.group: r for r in periods.books(session, "workflow")}
        count, breaks = periods.verify_statements(session)
    assert (by_month["2026-10"].cost, by_month["2026-10"].closed) == (235, True)
    assert by_month["2026-10"].adjustments == 0
    assert (by_month["2026-11"].cost, by_month["2026-11"].adjustments) == (7, -50)
    assert by_month["2026-11"].total == 7 - 50
    assert sum(r.total for r in by_month.values()) == 130 + 55 + 7  # the books add up
    assert (by_workflow["wf-1"].cost, by_workflow["wf-1"].adjustments) == (242, -50)
    assert (count, breaks) == (1, [])
    with sessions() as session:
        ledger = session.execute(
            text(
                "SELECT delta, status_before, status_after, after_terminal, after_close, "
                "closed_month FROM v_cost_ledger WHERE job_id = 'job-a' ORDER BY observed_at"
            )
        ).all()
    assert [tuple(r) for r in ledger] == [
        (100, None, "running", 0, 0, None),  # first sight: the whole cost is one movement
        (50, "running", "running", 0, 0, None),
        (30, "running", "completed", 0, 0, None),
        (-50, "completed", "completed", 1, 1, "2026-10"),  # re-priced after the end and close
    ]

    with sessions() as session, pytest.raises(ArchiverError, match="already closed"):
        periods.close_period(session, "2026-10", "auditor", now=NOW)
    with sessions() as session, pytest.raises(ArchiverError, match="has not ended"):
        periods.close_period(session, "2026-11", "auditor", now=NOW)
    with sessions() as session, pytest.raises(ArchiverError, match="needs a reason"):
        periods.reopen_period(session, "2026-10", "auditor", "  ")

    # an edited closed figure is caught
    execute(
        sessions,
        update(STATEMENT_LINES).where(STATEMENT_LINES.c.dimension == "workflow").values(cost=185),
    )
    with sessions() as session:
        _, breaks = periods.verify_statements(session)
    assert [(b.table, b.kind) for b in breaks] == [("period_statements", "edited")]


def test_two_closes_of_one_month_at_once_leave_one_statement(
    sessions: sessionmaker[Session],
) -> None:
    """Before its first close a month has no row to lock: the second close must still wait for
    the first and then find the month closed, not write a second statement."""
    build_small(sessions)
    first = sessions()
    periods.close_period(first, "2026-10", "first", now=NOW)  # not committed yet
    outcome: dict[str, str] = {}

    def second() -> None:
        with sessions() as session:
            try:
                periods.close_period(session, "2026-10", "second", now=NOW)
                session.commit()
                outcome["second"] = "closed"
            except ArchiverError as exc:
                outcome["second"] = str(exc)

    thread = threading.Thread(target=second, daemon=True)
    thread.start()
    thread.join(1.0)
    try:
        assert thread.is_alive(), outcome  # queued behind the first close
    finally:
        first.commit()
        first.close()
        thread.join(30)
    assert not thread.is_alive()
    assert "already closed" in outcome["second"]
    with sessions() as session:
        closed_by = session.scalars(select(PeriodStatement.closed_by)).all()
    assert closed_by == ["first"]


def test_reopening_is_logged_and_the_live_figures_return(db_url: str) -> None:
    engine = db.make_engine(db_url)
    try:
        sessions = db.session_factory(engine)
        build_small(sessions)
        runner = CliRunner()
        closed = runner.invoke(
            cli, ["close-period", "2026-10", "--by", "cfo", "--database-url", db_url]
        )
        assert closed.exit_code == 0, closed.output
        assert "closed 2026-10: 2 jobs, cost 235" in closed.stdout
        report = runner.invoke(
            cli, ["report", "cost", "--by", "month", "--format", "csv", "--database-url", db_url]
        )
        assert report.exit_code == 0, report.output
        assert "2026-10" in report.stdout and "closed" in report.stdout.splitlines()[0]
        refused = runner.invoke(
            cli, ["close-period", "2026-10", "--reopen", "--database-url", db_url]
        )
        assert refused.exit_code == 1 and "needs a reason" in refused.stderr
        reopened = runner.invoke(
            cli,
            [
                "close-period",
                "2026-10",
                "--reopen",
                "--reason",
                "late invoice",
                "--by",
                "cfo",
                "--database-url",
                db_url,
            ],
        )
        assert reopened.exit_code == 0, reopened.output
        with sessions() as session:
            events = session.execute(
                select(
                    periods.PERIOD_EVENTS.c.action,
                    periods.PERIOD_EVENTS.c.actor,
                    periods.PERIOD_EVENTS.c.reason,
                ).order_by(periods.PERIOD_EVENTS.c.id)
            ).all()
            assert [tuple(e) for e in events] == [
                ("close", "cfo", None),
                ("reopen", "cfo", "late invoice"),
            ]
            assert periods.statements(session) == []
            assert periods.verify_statements(session) == (1, [])
        assert runner.invoke(cli, ["verify", "--database-url", db_url]).exit_code == 0
    finally:
        engine.dispose()


def test_upgrading_an_archive_made_before_the_chains_chains_it(db_url: str) -> None:
    """Rows written before revision 0004 get their chains from the migration, and verify."""
    engine = db.make_engine(db_url)
    try:
        sessions = db.session_factory(engine)
        build_small(sessions)
        with sessions() as session:
            heads = dict(session.execute(select(JOBS.c.job_id, JOBS.c.chain_seq)).all())
        engine.dispose()
        db.downgrade(db_url, "0002")  # the chain columns go, the history stays
        db.upgrade(db_url)
        with sessions() as session:
            report = verify(session)
            again = dict(session.execute(select(JOBS.c.job_id, JOBS.c.chain_seq)).all())
            unchained = session.scalar(
                select(func.count()).select_from(CHANGES).where(CHANGES.c.row_sha256.is_(None))
            )
        assert report.ok, [b.line() for b in report.breaks]
        assert again == heads and unchained == 0
        archive_one(sessions, factories.job("job-b", tasks=1, cost=77), T0 + timedelta(days=1))
        assert run_verify(sessions).ok  # and the archiver carries on from the backfilled head
    finally:
        engine.dispose()


def test_the_sql_in_docs_audit_runs(sessions: sessionmaker[Session]) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "audit.md").read_text()
    queries = [q for q in doc.split("```sql\n")[1:]]
    assert queries, "docs/audit.md has SQL examples"
    build_small(sessions)
    a = factories.job("job-a", tasks=2, val_errors=0, cost=130, status="completed")
    a["updated_at"] = "2026-11-25T00:00:00Z"
    archive_one(sessions, a, NOW)
    with sessions() as session:
        for query in queries:
            rows = session.execute(text(query.split("```", 1)[0])).all()
            assert rows, query
