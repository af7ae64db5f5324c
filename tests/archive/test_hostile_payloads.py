"""Hostile payloads (issue 7) through ingest: every one ends stored, stored with a recorded problem,
or rejected and counted, on every database, and a rejected one leaves the archive exactly as it was.

The catalogue of named bodies and their expected ends is tests/hostile_catalogue.py; the same
catalogue goes through the HTTP client and a sync pass (tests/api/test_hostile_bodies.py) and
through `archiver ingest` in a subprocess (tests/cli/test_hostile_cli.py). Here Hypothesis adds
arbitrary JSON on top, a payload larger than a database accepts must fail alone, and costs at the
64-bit limits must stay reportable. The databases are migrated once per module (per backend).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import factories
import pytest
from archive_dump import (
    ARCHIVE_TABLES,
    Archive,
    dump,
    first_difference,
)
from conftest import BACKENDS
from figures import record_figures
from hostile_catalogue import (
    CATALOGUE,
    MB,
    REJECTED,
    SENTINEL_VALUES,
    STORED,
    T0,
    T1,
    Hostile,
    archive_victim,
    error_messages,
    hostile_archive,
    job_row,
    last_error_id,
    newer,
    problems_of,
    wire,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from archiver.archive.batches import archive_one
from archiver.archive.ingest import ingest, read_items
from archiver.reporting import reports

pytestmark = pytest.mark.integration  # databases opened by hostile_archive

# --- fixtures and the outcome of one payload ----------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def archive(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Archive]:
    """One migrated database per backend for the whole module (see hostile_archive)."""
    with hostile_archive(request.param, tmp_path_factory) as opened:
        yield opened


def expect_defect(request: pytest.FixtureRequest, hostile: Hostile, backend: str) -> None:
    if hostile.defect and backend in hostile.defect:
        request.applymarker(pytest.mark.xfail(strict=True, reason=hostile.defect[backend]))


@pytest.mark.parametrize("hostile", CATALOGUE, ids=lambda h: h.name)
def test_hostile_payload_through_ingest(
    request: pytest.FixtureRequest, archive: Archive, hostile: Hostile
) -> None:
    expect_defect(request, hostile, archive.backend)
    wf, jid = f"wf-{hostile.name}", "job-1"
    archive_victim(archive, wf, jid)
    before = dump(archive.engine, tables=ARCHIVE_TABLES, workflow_id=wf)
    errors_before = last_error_id(archive)

    summary = ingest(
        archive.sessions, read_items(hostile.name, hostile.body(wf, jid), T1), now=lambda: T1
    )

    errors = error_messages(archive, errors_before)
    problems = problems_of(archive, wf)
    assert not [e for e in errors if any(s in e for s in SENTINEL_VALUES)], errors
    if hostile.outcome == REJECTED:
        assert (summary.failed, summary.archived) == (len(errors), 0) and errors
        assert all(hostile.expect in e for e in errors), errors
        after = dump(archive.engine, tables=ARCHIVE_TABLES, workflow_id=wf)
        assert after == before, first_difference(before, after, ("before", "after"))
    else:
        assert (summary.failed, summary.total, errors) == (0, 1, [])
        if hostile.outcome == STORED:
            assert problems == []
        else:
            assert problems and any(hostile.expect in p for p in problems), problems
    if hostile.check is not None:
        with archive.sessions() as session:
            hostile.check(session, wf, jid)
    record_figures("hostile-ingest", inputs=1, rejected=int(hostile.outcome == REJECTED))


# --- size: what a database accepts ------------------------------------------------------------


def test_a_payload_larger_than_the_database_accepts_fails_alone(
    request: pytest.FixtureRequest, archive: Archive
) -> None:
    """A 17 MB payload (under the client's 32 MB cap) is stored, or rejected and counted; either
    way the next payload is archived and nothing raises out of the ingest or the sync pass."""
    big = factories.job("big", "wf-packet", tasks=1)
    big["tasks"][0]["state_msg"] = "x" * (17 * MB)
    items = [
        *read_items("big.json", wire(big), T0),
        *read_items("next.json", wire(factories.job("next", "wf-packet", tasks=1)), T0),
    ]
    summary = ingest(archive.sessions, items, now=lambda: T0)
    assert (summary.archived + summary.failed, summary.total) == (2, 2)
    with archive.sessions() as session:
        assert job_row(session, "wf-packet", "next").version == 1
    record_figures("hostile-packet", inputs=1)


# --- arbitrary JSON ------------------------------------------------------------------------------

_TEXT = st.text(max_size=12) | st.sampled_from(
    ["", "\x00", "\ud800", "75%", ">100", "1h2m", "2026-10-01T10:00:00Z", "0001-01-01T00:00:00Z"]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | _TEXT
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=10,
)
_JOB_KEYS = st.sampled_from(sorted(factories.job(tasks=0))) | _TEXT
_TASK_KEYS = st.sampled_from(sorted(factories.task("t"))) | _TEXT


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    job=st.dictionaries(_JOB_KEYS, _JSON, max_size=4),
    task=st.dictionaries(_TASK_KEYS, _JSON, max_size=4),
    drop=st.lists(_JOB_KEYS, max_size=2),
    ascii_only=st.booleans(),
)
def test_arbitrary_json_ends_stored_or_rejected_never_unforeseen(
    archive: Archive,
    job: dict[str, Any],
    task: dict[str, Any],
    drop: list[str],
    ascii_only: bool,
) -> None:
    """Values of any JSON type (NaN and lone surrogates included) in any job or task field: the
    payload is archived or rejected with a reason; never an unforeseen error, never a database
    refusing what the parser let through, and a rejection changes nothing."""
    wf = f"wf-hyp-{next(_EXAMPLES)}"
    archive_victim(archive, wf, "job-1")
    doc = newer(wf, "job-1")
    doc.update(copy.deepcopy(job))
    for key in drop:
        doc.pop(key, None)
    tasks = doc.get("tasks")
    if isinstance(tasks, list) and tasks and isinstance(tasks[0], dict):
        tasks[0].update(copy.deepcopy(task))
    body = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    before = dump(archive.engine, tables=ARCHIVE_TABLES, workflow_id=wf)
    errors_before = last_error_id(archive)
    summary = ingest(archive.sessions, read_items("arbitrary.json", body, T1), now=lambda: T1)
    errors = error_messages(archive, errors_before)
    assert not [e for e in errors if any(s in e for s in SENTINEL_VALUES)], errors
    assert summary.total == 1 and summary.failed == len(errors)
    if summary.failed and doc.get("workflow_id") == wf:
        after = dump(archive.engine, tables=ARCHIVE_TABLES, workflow_id=wf)
        assert after == before, first_difference(before, after, ("before", "after"))
    record_figures("hostile-hypothesis", inputs=1, rejected=summary.failed)


_EXAMPLES = iter(range(10**9))


# --- what the archive holds must stay reportable -----------------------------------------------


def test_cost_reports_survive_costs_at_the_64_bit_limits(archive: Archive) -> None:
    """Costs the parser accepts (any int64) sum and subtract exactly past 2**63 everywhere.

    On SQLite a view value beyond 64 bits is exact decimal text (0003's docstring), which SQL
    orders after every number: the deltas are ordered here, in Python.
    """
    wf, big = "wf-report-limits", "wf-report-limits-big"
    top, bottom = 2**63 - 1, -(2**63)
    swing = factories.job("swing", wf, tasks=1, cost=top)
    archive_one(archive.sessions, factories.job("one", wf, tasks=1, cost=1), T0)
    archive_one(archive.sessions, swing, T0)
    later = factories.evolve(swing, cost=bottom, updated_at="2026-10-01T11:00:00Z")
    archive_one(archive.sessions, later, T1)
    archive_one(archive.sessions, factories.job("max", wf, tasks=1, cost=top), T1)
    for i in range(3):  # the same day, workflow and user: sums past 2**63, up and down
        for name, wf_, cost, day in (
            ("top", big, top, "05"),
            ("bottom", f"{big}-neg", bottom, "06"),
        ):
            body = factories.job(f"{name}-{i}", wf_, tasks=1, cost=cost)
            body.update(created_at=f"2031-05-{day}T12:00:00Z")
            body["tasks"][0]["block_info"] = {"id": "b", "name": f"limit-{name}", "version": "1"}
            archive_one(archive.sessions, body, T0)
    since, until = datetime(2031, 5, 5, tzinfo=UTC), datetime(2031, 5, 7, tzinfo=UTC)

    def scalars(sql: str, **params: Any) -> list[int]:
        return [int(v) for v in session.execute(text(sql), params).scalars()]

    with archive.sessions() as session:
        costs = {row.group: row.cost for row in reports.cost_by(session, "workflow")}
        by_day = {row.group: row.cost for row in reports.cost_by(session, "day", since, until)}
        blocks = {row.block: row.jobs_cost for row in reports.cost_by_block(session, since, until)}
        movements = scalars("SELECT delta FROM v_cost_movements WHERE workflow_id = :wf", wf=wf)
        recorded = session.execute(
            text(
                "SELECT increases, decreases, net, after_terminal_net FROM v_cost_recorded_by_day"
                " WHERE workflow_id = :wf"
            ),
            {"wf": wf},
        ).one()
        big_movements = scalars(
            "SELECT increases FROM v_cost_recorded_by_day WHERE workflow_id = :wf", wf=big
        )
        view_costs = {
            w: scalars("SELECT cost FROM v_cost_by_day WHERE workflow_id = :wf", wf=w)
            for w in (wf, big, f"{big}-neg")
        }
        month = scalars("SELECT cost FROM v_cost_by_month WHERE workflow_id = :wf", wf=f"{big}-neg")
    assert costs[wf] == 1 + bottom + top == 0
    assert costs[big] == 3 * top
    assert costs[f"{big}-neg"] == 3 * bottom
    assert by_day == {"2031-05-05": 3 * top, "2031-05-06": 3 * bottom}
    assert blocks == {"limit-top@1": 3 * top, "limit-bottom@1": 3 * bottom}
    assert sorted(movements) == [-(2**64) + 1, 1, top, top]
    assert [int(v) for v in recorded] == [2**64 - 1, -(2**64) + 1, 0, 0]
    assert big_movements == [3 * top]
    assert view_costs == {wf: [0], big: [3 * top], f"{big}-neg": [3 * bottom]}
    assert month == [3 * bottom]
