"""The listing step of a pass (issue 15), against a real HTTP server on 127.0.0.1 serving the list
endpoints and the jobs, on every database: what a pass lists, tracks and fetches, counted on the
server; what a bad answer leaves behind (rows in sync_errors, counters, states)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from http_helpers import Reply, ScriptedServer, error
from listing_api import FakeApi, kinds, listed
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from archiver.api.client import ApiClient
from archiver.config import Settings
from archiver.models import ERRORS, JOBS, RUNS, TRACKED, WATCH_RULES, WORKFLOW_CHANGES, WORKFLOWS
from archiver.polling import tracking, watching
from archiver.polling.discovery import WorkflowLease
from archiver.polling.sync import SyncPass, SyncSummary

pytestmark = pytest.mark.integration  # a real HTTP server

T0 = datetime(2026, 10, 1, 12, tzinfo=UTC)


@pytest.fixture
def api() -> Iterator[tuple[FakeApi, ScriptedServer]]:
    fake = FakeApi()
    with ScriptedServer() as server:
        server.always(fake)
        yield fake, server


def settings_for(url: str, **overrides: object) -> Settings:
    values: dict = {
        "api_key": "test-key-5f3a",
        "api_url": url,
        "max_retries": 0,
        "request_deadline": 5.0,
        "read_timeout": 5.0,
        "poll_interval": 60.0,
        "poll_jitter": 0.0,
        "rate_limit": 0.0,
        "concurrency": 2,
    }
    values.update(overrides)
    return Settings(**values)


def run_pass(
    sessions: sessionmaker[Session],
    server: ScriptedServer,
    now: datetime,
    lease: WorkflowLease | None = None,
    **overrides: object,
) -> SyncSummary:
    settings = settings_for(server.url, **overrides)
    with ApiClient(settings) as client:
        sync = SyncPass.from_settings(settings, sessions, client, now=lambda: now)
        return sync.run(lease=lease)


def watch(sessions: sessionmaker[Session], *workflow_ids: str) -> None:
    with sessions.begin() as session:
        watching.watch_workflows(session, workflow_ids, T0)


def since(server: ScriptedServer, mark: int) -> list:
    return server.requests[mark:]


def rows(sessions: sessionmaker[Session], query) -> list:
    with sessions() as session:
        return list(session.execute(query))


def tracked_state(sessions: sessionmaker[Session], wf: str, job_id: str):
    with sessions() as session:
        return session.execute(
            select(TRACKED).where(TRACKED.c.workflow_id == wf, TRACKED.c.job_id == job_id)
        ).one()


def test_new_jobs_are_tracked_and_fetched_in_the_same_pass(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    fake.add_workflow("wf-1", name="Ortho")
    for j in ("j1", "j2", "j3"):
        fake.add_job("wf-1", j)
    fake.estimates["wf-1"] = 777
    watch(sessions, "wf-1")

    summary = run_pass(sessions, server, T0)

    assert summary.listing is not None
    assert (summary.listing.workflows_listed, summary.listing.jobs_discovered) == (1, 3)
    assert (summary.due, summary.counts["new"], summary.failed) == (3, 3, 0)
    assert kinds(server.requests) == {"describe": 1, "estimate": 1, "list_jobs": 1, "job": 3}
    assert "; listed 1 workflow: 3 new jobs, 0 changed" in summary.line()
    archived = rows(sessions, select(JOBS.c.job_id).where(JOBS.c.workflow_id == "wf-1"))
    assert sorted(r.job_id for r in archived) == ["j1", "j2", "j3"]
    (wf,) = rows(sessions, select(WORKFLOWS))
    assert (wf.name, wf.estimated_cost, wf.version, wf.jobs_listed) == ("Ortho", 777, 1, 3)
    assert wf.last_listed_at == T0 and wf.state == "watched" and wf.watched
    (run,) = rows(sessions, select(RUNS))
    assert (run.workflows_listed, run.jobs_discovered, run.list_failed) == (1, 3, 0)


def test_a_pass_where_nothing_changed_lists_each_workflow_once_and_fetches_nothing(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    for wf in ("wf-1", "wf-2"):
        fake.add_workflow(wf)
        for j in ("a", "b"):
            fake.add_job(wf, f"{wf}-{j}")
    watch(sessions, "wf-1", "wf-2")
    run_pass(sessions, server, T0)
    mark = len(server.requests)

    quiet = run_pass(sessions, server, T0 + timedelta(seconds=30))  # no job's own poll is due

    assert kinds(since(server, mark)) == {"list_jobs": 2}
    assert listed(since(server, mark)) == {"wf-1": 1, "wf-2": 1}
    assert quiet.due == 0 and quiet.listing is not None
    assert (quiet.listing.jobs_discovered, quiet.listing.jobs_changed) == (0, 0)


def test_one_changed_job_is_fetched_once(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    fake.add_workflow("wf-1")
    for j in ("j1", "j2", "j3"):
        fake.add_job("wf-1", j)
    watch(sessions, "wf-1")
    run_pass(sessions, server, T0)
    fake.jobs["wf-1"]["j2"].update(cost=4321, updated_at="2026-10-01T11:00:00Z")
    mark = len(server.requests)

    changed = run_pass(sessions, server, T0 + timedelta(seconds=30))

    assert kinds(since(server, mark)) == {"list_jobs": 1, "job": 1}
    assert since(server, mark)[-1].path.endswith("/jobs/j2")
    assert changed.listing is not None and changed.listing.jobs_changed == 1
    assert (changed.due, changed.counts["changed"]) == (1, 1)
    assert "listed 1 workflow: 0 new jobs, 1 changed" in changed.line()
    (cost,) = rows(sessions, select(JOBS.c.cost).where(JOBS.c.job_id == "j2"))
    assert cost.cost == 4321

    mark = len(server.requests)
    run_pass(sessions, server, T0 + timedelta(seconds=40))
    assert kinds(since(server, mark)) == {"list_jobs": 1}  # archived now: nothing to fetch


def test_a_settled_job_repriced_late_is_fetched_and_settles_again(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    fake.add_workflow("wf-1")
    fake.add_job("wf-1", "j1", status="completed", cost=100, progress="100%")
    watch(sessions, "wf-1")
    run_pass(sessions, server, T0, settle_window=0.0)
    first = tracked_state(sessions, "wf-1", "j1")
    assert first.state == "settled" and first.terminal_since == T0

    fake.jobs["wf-1"]["j1"]["cost"] = 150  # re-priced after it ended
    mark = len(server.requests)
    later = T0 + timedelta(minutes=30)  # within workflow_refresh: no description asked
    summary = run_pass(sessions, server, later, settle_window=0.0)

    assert kinds(since(server, mark)) == {"list_jobs": 1, "job": 1}
    assert summary.counts["changed"] == 1
    (cost,) = rows(sessions, select(JOBS.c.cost).where(JOBS.c.job_id == "j1"))
    assert cost.cost == 150
    after = tracked_state(sessions, "wf-1", "j1")
    assert (after.state, after.terminal_since) == ("settled", T0)


def test_a_summary_that_keeps_differing_makes_its_job_due_once(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    """The listing says cost 9 but the job itself keeps saying 100: one fetch, not one a pass."""
    fake, server = api
    fake.add_workflow("wf-1")
    fake.add_job("wf-1", "j1")
    watch(sessions, "wf-1")
    run_pass(sessions, server, T0)
    fake.override["/v0/workflows/wf-1/jobs"] = Reply(
        200, {"jobs": [{**_summary(fake, "wf-1", "j1"), "cost": 9}]}
    )
    mark = len(server.requests)
    run_pass(sessions, server, T0 + timedelta(seconds=10))
    run_pass(sessions, server, T0 + timedelta(seconds=20))
    assert kinds(since(server, mark)) == {"list_jobs": 2, "job": 1}


def _summary(fake: FakeApi, wf: str, job_id: str) -> dict:
    from listing_api import SUMMARY_KEYS

    return {k: fake.jobs[wf][job_id].get(k) for k in SUMMARY_KEYS}


def test_a_watch_all_rule_finds_workflows_and_a_rename_is_versioned(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    for i in range(1, 4):
        fake.add_workflow(f"wf-{i}")
    fake.add_job("wf-2", "j1")
    with sessions.begin() as session:
        watching.watch_all(session, None, T0)

    first = run_pass(sessions, server, T0, workflow_refresh=3600.0)
    assert first.listing is not None and first.listing.workflows_listed == 3
    assert kinds(server.requests) == {
        "list_workflows": 1,
        "estimate": 3,
        "list_jobs": 3,
        "job": 1,
    }
    states = dict(rows(sessions, select(WORKFLOWS.c.workflow_id, WORKFLOWS.c.watch_source)))
    assert states == {"wf-1": "all", "wf-2": "all", "wf-3": "all"}

    fake.workflows["wf-2"].update(name="renamed", updated_at="2026-10-01T13:00:00Z")
    fake.estimates["wf-2"] = 2000
    mark = len(server.requests)
    later = T0 + timedelta(seconds=30)
    run_pass(sessions, server, later)

    # the rule's page describes every workflow; only the one whose updated_at moved is estimated
    assert kinds(since(server, mark)) == {"list_workflows": 1, "estimate": 1, "list_jobs": 3}
    wf2 = rows(sessions, select(WORKFLOWS).where(WORKFLOWS.c.workflow_id == "wf-2"))[0]
    assert (wf2.name, wf2.version, wf2.estimated_cost) == ("renamed", 3, 2000)
    changes = rows(
        sessions,
        select(WORKFLOW_CHANGES.c.field, WORKFLOW_CHANGES.c.old_value, WORKFLOW_CHANGES.c.new_value)
        .where(WORKFLOW_CHANGES.c.workflow_id == "wf-2")
        .order_by(WORKFLOW_CHANGES.c.id),
    )
    assert [tuple(c) for c in changes] == [
        ("name", "name of wf-2", "renamed"),
        ("updated_at", "2026-09-01T00:00:00.000000Z", "2026-10-01T13:00:00.000000Z"),
        ("estimated_cost", "1000", "2000"),
    ]


def test_a_workflow_created_later_is_watched_by_the_rule_and_its_jobs_fetched(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    fake.add_workflow("wf-1")
    fake.add_job("wf-1", "j1")
    with sessions.begin() as session:
        watching.watch_all(session, None, T0)
    run_pass(sessions, server, T0)

    fake.add_workflow("wf-new")
    fake.add_job("wf-new", "j9")
    later = run_pass(sessions, server, T0 + timedelta(seconds=30))

    assert later.listing is not None and later.listing.jobs_discovered == 1
    assert later.counts["new"] == 1  # fetched in the pass that found it
    found = rows(
        sessions,
        select(WORKFLOWS.c.state, WORKFLOWS.c.watch_source).where(
            WORKFLOWS.c.workflow_id == "wf-new"
        ),
    )
    assert [tuple(r) for r in found] == [("watched", "all")]
    assert rows(sessions, select(JOBS.c.job_id).where(JOBS.c.workflow_id == "wf-new")) == [("j9",)]


def test_every_bad_item_is_recorded_with_its_workflow_and_never_tracked(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    fake.add_workflow("wf-1")
    fake.add_workflow("wf-2")
    good = fake.add_job("wf-1", "good")
    fake.add_job("wf-2", "other")
    fake.override["/v0/workflows/wf-1/jobs"] = Reply(
        200,
        {
            "jobs": [
                {k: good.get(k) for k in ("id", "workflow_id", "status", "cost")},
                "not an object",
                {"status": "running"},  # no id
                {"id": "stray", "workflow_id": "wf-x"},  # names another workflow
                {"id": "x" * 300, "workflow_id": "wf-1"},  # longer than an id column
                {"id": "bad\nid", "workflow_id": "wf-1"},
            ]
        },
    )
    watch(sessions, "wf-1", "wf-2")

    summary = run_pass(sessions, server, T0)

    assert summary.listing is not None
    assert (summary.listing.workflows_listed, summary.listing.bad_items) == (2, 5)
    keys = {(r.workflow_id, r.job_id) for r in rows(sessions, select(TRACKED))}
    assert keys == {("wf-1", "good"), ("wf-2", "other")}
    errors = rows(sessions, select(ERRORS).where(ERRORS.c.reason == "invalid_list_item"))
    assert len(errors) == 5
    assert {(e.workflow_id, e.job_id) for e in errors} == {("wf-1", None)}
    assert any("wf-x" in e.message for e in errors)
    (run,) = rows(sessions, select(RUNS))
    assert run.list_failed == 1  # one listing carried unusable items
    assert "5 bad list items" in summary.line()


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(200, {"workflows": []}), "invalid_response"),  # not {"jobs": [...]}
        (Reply(200, b"<html>oops</html>"), "invalid_response"),
        (error(503, "unavailable", "try later"), "server_error"),
    ],
)
def test_a_listing_that_fails_is_recorded_and_the_other_workflows_go_on(
    reply: Reply,
    reason: str,
    sessions: sessionmaker[Session],
    api: tuple[FakeApi, ScriptedServer],
) -> None:
    fake, server = api
    fake.add_workflow("wf-1")
    fake.add_workflow("wf-2")
    fake.add_job("wf-1", "j1")
    fake.add_job("wf-2", "j2")
    fake.override["/v0/workflows/wf-1/jobs"] = reply
    watch(sessions, "wf-1", "wf-2")

    summary = run_pass(sessions, server, T0)

    assert summary.listing is not None
    assert (summary.listing.workflows_listed, summary.listing.list_failed) == (1, 1)
    assert {r.job_id for r in rows(sessions, select(TRACKED))} == {"j2"}
    (err,) = rows(sessions, select(ERRORS))
    assert (err.workflow_id, err.job_id, err.reason) == ("wf-1", None, reason)
    wf1 = rows(sessions, select(WORKFLOWS).where(WORKFLOWS.c.workflow_id == "wf-1"))[0]
    assert (wf1.state, wf1.consecutive_failures) == ("watched", 1)
    assert wf1.last_error and "wf-1" in wf1.last_error
    assert "1 listing failed" in summary.line()
    (run,) = rows(sessions, select(RUNS))
    assert (run.workflows_listed, run.list_failed) == (1, 1)

    del fake.override["/v0/workflows/wf-1/jobs"]  # the next pass tries again
    again = run_pass(sessions, server, T0 + timedelta(seconds=30))
    assert again.listing is not None and again.listing.jobs_discovered == 1
    wf1 = rows(sessions, select(WORKFLOWS).where(WORKFLOWS.c.workflow_id == "wf-1"))[0]
    assert (wf1.consecutive_failures, wf1.last_error) == (0, None)


@pytest.mark.parametrize("status", [403, 404])
def test_a_workflow_that_keeps_answering_403_or_404_is_paused(
    status: int, sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    fake.add_workflow("wf-1")
    fake.add_workflow("wf-2")
    fake.add_job("wf-2", "j2")
    code = "forbidden_access" if status == 403 else "not_found"
    fake.override["/v0/workflows/wf-1/jobs"] = error(status, code, "workflow gone")
    watch(sessions, "wf-1", "wf-2")

    for i in range(2):
        run_pass(sessions, server, T0 + timedelta(seconds=30 * i), pause_after=2)

    wf1 = rows(sessions, select(WORKFLOWS).where(WORKFLOWS.c.workflow_id == "wf-1"))[0]
    assert (wf1.state, wf1.watched, wf1.consecutive_failures) == ("paused", True, 2)
    assert "workflow gone" in wf1.last_error
    shown = {w.workflow_id: w for w in _listed_workflows(sessions)}
    assert shown["wf-1"].state == "paused" and "workflow gone" in (shown["wf-1"].last_error or "")
    errors = rows(sessions, select(ERRORS.c.workflow_id, ERRORS.c.http_status))
    assert [tuple(e) for e in errors] == [("wf-1", status), ("wf-1", status)]

    mark = len(server.requests)
    run_pass(sessions, server, T0 + timedelta(seconds=90), pause_after=2)
    assert listed(since(server, mark)) == {"wf-2": 1}  # paused: not listed; wf-2 goes on

    with sessions.begin() as session:  # watching it again resumes it
        result = watching.watch_workflows(session, ["wf-1"], T0)
    assert result.resumed == ["wf-1"]


def _listed_workflows(sessions: sessionmaker[Session]) -> list:
    with sessions() as session:
        return watching.list_watched(session)


def test_a_rejected_key_stops_the_pass(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    fake.add_workflow("wf-1")
    fake.add_workflow("wf-2")
    with sessions.begin() as session:
        tracking.track(session, [("wf-9", "due-job")], T0)
        watching.watch_workflows(session, ["wf-1", "wf-2"], T0)
        session.execute(WORKFLOWS.update().values(version=1, estimated_at=T0, last_seen_at=T0))
    fake.override["/v0/workflows/wf-1/jobs"] = error(401, "unauthorized", "bad key")
    fake.override["/v0/workflows/wf-2/jobs"] = error(401, "unauthorized", "bad key")

    summary = run_pass(sessions, server, T0 + timedelta(seconds=1), concurrency=1)

    assert summary.auth_error and "bad key" in summary.auth_error
    assert kinds(server.requests) == {"list_jobs": 1}  # nothing after the rejection
    assert summary.counts["skipped"] == 1  # the due job was not fetched
    wfs = rows(sessions, select(WORKFLOWS.c.consecutive_failures, WORKFLOWS.c.state))
    assert {tuple(w) for w in wfs} == {(0, "watched")}  # the key's fault, not the workflows'


def test_unwatched_workflow_is_not_rewatched_by_a_rule_and_its_jobs_settle(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    fake.add_workflow("wf-1")
    fake.add_workflow("wf-2")
    fake.add_job("wf-1", "j1")
    fake.add_job("wf-2", "j2")
    with sessions.begin() as session:
        watching.watch_all(session, None, T0)
    run_pass(sessions, server, T0)
    with sessions.begin() as session:
        result = watching.unwatch_workflow(session, "wf-1", T0)
    assert result.jobs_still_polled == 1
    fake.add_job("wf-1", "j-new")  # not discovered: wf-1 is no longer listed

    mark = len(server.requests)
    later = T0 + timedelta(seconds=120)  # j1's and j2's own polls are due
    run_pass(sessions, server, later)

    assert listed(since(server, mark)) == {"wf-2": 1}
    fetched = {r.path.rsplit("/", 1)[1] for r in since(server, mark) if r.path.count("/") == 5}
    assert fetched == {"j1", "j2"}  # wf-1's tracked job keeps its schedule
    state = rows(sessions, select(WORKFLOWS.c.state).where(WORKFLOWS.c.workflow_id == "wf-1"))
    assert state[0].state == "unwatched"
    assert not rows(sessions, select(TRACKED).where(TRACKED.c.job_id == "j-new"))

    with sessions.begin() as session:
        watching.unwatch_workflow(session, "wf-2", T0, with_jobs=True)
    assert tracked_state(sessions, "wf-2", "j2").state == "untracked"
    mark = len(server.requests)
    run_pass(sessions, server, T0 + timedelta(seconds=400))
    assert "j2" not in {r.path.rsplit("/", 1)[1] for r in since(server, mark)}
    assert listed(since(server, mark)) == {}


@pytest.mark.parametrize("empty_db_url", ["postgresql", "mariadb"], indirect=True)
def test_two_workers_list_each_workflow_once(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    ids = [f"wf-{i:02d}" for i in range(12)]
    for wf in ids:
        fake.add_workflow(wf)
        fake.add_job(wf, f"{wf}-job")
    with sessions.begin() as session:
        watching.watch_all(session, None, T0)
        watching.watch_workflows(session, ids, T0)
    now = datetime.now(UTC)
    results: dict[str, SyncSummary] = {}
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        lease = WorkflowLease(name, listed_within=30.0, lease_seconds=300.0)
        start.wait(timeout=10)
        results[name] = run_pass(sessions, server, now, lease=lease)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads)

    assert listed(server.requests) == dict.fromkeys(ids, 1)
    assert kinds(server.requests)["list_workflows"] == 1  # the rule, by one of them
    total = sum(s.listing.workflows_listed for s in results.values() if s.listing)
    assert total == 12
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(TRACKED)) == 12
        holders = session.scalar(
            select(func.count()).select_from(WORKFLOWS).where(WORKFLOWS.c.lease_owner.is_not(None))
        )
    assert holders == 0

    # within the interval, a further pass by either worker lists nothing again
    mark = len(server.requests)
    again = run_pass(sessions, server, now, lease=WorkflowLease("a", 30.0, 300.0))
    assert listed(since(server, mark)) == {} and again.listing is not None


def test_a_wrong_url_counts_against_no_workflow_and_stops_the_pass(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    """404s without the API's envelope (a web server's page: a wrong base URL) are the
    settings' fault: recorded, no workflow's failure count moves, the pass says so."""
    fake, server = api
    for wf in ("wf-1", "wf-2"):
        fake.add_workflow(wf)
        fake.override[f"/v0/workflows/{wf}/jobs"] = Reply(404, b"<html>not here</html>")
    with sessions.begin() as session:
        watching.watch_workflows(session, ["wf-1", "wf-2"], T0)
        session.execute(WORKFLOWS.update().values(version=1, estimated_at=T0, last_seen_at=T0))

    summary = run_pass(sessions, server, T0 + timedelta(seconds=1), pause_after=1)

    assert summary.api_unusable is not None and "404" in summary.api_unusable
    wfs = rows(sessions, select(WORKFLOWS.c.state, WORKFLOWS.c.consecutive_failures))
    assert {tuple(w) for w in wfs} == {("watched", 0)}
    assert len(rows(sessions, select(ERRORS))) == 2


def test_the_pass_counts_the_jobs_the_listing_made_due(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    fake.add_workflow("wf-1")
    fake.add_job("wf-1", "j1")
    fake.add_job("wf-1", "j2")
    watch(sessions, "wf-1")
    settings = settings_for(server.url)
    started: list[int] = []
    with ApiClient(settings) as client:
        sync = SyncPass.from_settings(settings, sessions, client, now=lambda: T0)
        summary = sync.run(on_start=started.append)
    assert started == [2] and summary.due == 2 and summary.counts["new"] == 2


def test_daemon_passes_list_each_workflow_once_per_interval(
    db_url: str, sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    from archiver.polling.daemon import Daemon

    fake, server = api
    fake.add_workflow("wf-1")
    fake.add_job("wf-1", "j1")
    watch(sessions, "wf-1")
    settings = settings_for(server.url, database_url=db_url, run_interval=3600.0)
    daemon = Daemon(settings)
    try:
        first = daemon.pass_once()
        second = daemon.pass_once()  # within half the interval: not listed again
    finally:
        daemon.client.close()
        daemon.engine.dispose()
    assert first is not None and first.listing is not None
    assert (first.listing.workflows_listed, first.counts["new"]) == (1, 1)
    assert second is not None and second.listing is not None
    assert second.listing.workflows_listed == 0
    assert listed(server.requests) == {"wf-1": 1}
    (wf,) = rows(sessions, select(WORKFLOWS.c.lease_owner, WORKFLOWS.c.claim_token))
    assert (wf.lease_owner, wf.claim_token) == (None, 1)


def test_a_rule_pages_through_every_workflow_and_records_bad_page_items(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    ids = [f"wf-{i:03d}" for i in range(120)]
    for wf in ids:
        fake.add_workflow(wf)
    with sessions.begin() as session:
        watching.watch_all(session, None, T0)

    summary = run_pass(sessions, server, T0)

    assert kinds(server.requests)["list_workflows"] == 3  # 50 + 50 + 20
    assert listed(server.requests) == dict.fromkeys(ids, 1)
    assert summary.listing is not None and summary.listing.workflows_found == 120
    with sessions() as session:
        rule = session.execute(select(WATCH_RULES)).one()
    assert (rule.workflows_listed, rule.last_listed_at) == (120, T0)

    page = {"workflows": [{"id": "wf-000"}, 7, {"name": "no id"}], "pagination": {"total": 3}}
    fake.override["/v0/workflows"] = Reply(200, page)
    mark = len(server.requests)
    again = run_pass(sessions, server, T0 + timedelta(seconds=30))
    assert kinds(since(server, mark))["list_workflows"] == 1
    assert again.listing is not None and again.listing.bad_items == 2
    bad = rows(sessions, select(ERRORS).where(ERRORS.c.reason == "invalid_list_item"))
    assert [(e.workflow_id, e.job_id) for e in bad] == [(None, None), (None, None)]
    assert all(e.message.startswith("listing workflows: item ") for e in bad)


class _FetchOnly:
    """A client without the listing endpoints (an older one, or a test double)."""

    def fetch_job(self, workflow_id: str, job_id: str):
        raise AssertionError("nothing is due")


def test_a_client_without_the_listing_endpoints_lists_nothing(
    sessions: sessionmaker[Session],
) -> None:
    watch(sessions, "wf-1")
    sync = SyncPass.from_settings(
        settings_for("http://127.0.0.1:9"), sessions, _FetchOnly(), now=lambda: T0
    )
    summary = sync.run()
    assert summary.listing is None and summary.due == 0
    assert "listed" not in summary.line()


@pytest.mark.parametrize("empty_db_url", ["postgresql", "mariadb"], indirect=True)
def test_listing_leases_after_a_failure_and_after_a_stopped_pass(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    """A failed listing keeps its lease for half an interval (no other worker retries it within
    the interval); claims a stopped pass did not get to are given back at once."""
    fake, server = api
    for wf in ("wf-1", "wf-2", "wf-3"):
        fake.add_workflow(wf)
    watch(sessions, "wf-1", "wf-2", "wf-3")
    fake.override["/v0/workflows/wf-1/jobs"] = error(503, "unavailable", "later")
    now = datetime.now(UTC)
    run_pass(sessions, server, now, lease=WorkflowLease("a", 30.0, 300.0))
    held = dict(rows(sessions, select(WORKFLOWS.c.workflow_id, WORKFLOWS.c.lease_owner)))
    assert held == {"wf-1": "a", "wf-2": None, "wf-3": None}

    mark = len(server.requests)
    later = now + timedelta(seconds=20)  # wf-2 and wf-3 were listed within the half interval
    run_pass(sessions, server, later, lease=WorkflowLease("b", 30.0, 300.0))
    assert listed(since(server, mark)) == {}

    for wf in ("wf-1", "wf-2", "wf-3"):
        fake.override[f"/v0/workflows/{wf}/jobs"] = error(401, "unauthorized", "bad key")
    with sessions.begin() as session:
        session.execute(WORKFLOWS.update().values(lease_owner=None, lease_expires_at=None))
    mark = len(server.requests)
    stopped = run_pass(
        sessions,
        server,
        now + timedelta(minutes=5),
        lease=WorkflowLease("c", 30.0, 300.0),
        concurrency=1,
    )
    assert stopped.auth_error is not None
    assert len(listed(since(server, mark))) == 1
    owners = {r.lease_owner for r in rows(sessions, select(WORKFLOWS.c.lease_owner))}
    assert owners == {None}


def test_a_daemon_watching_only_workflows_finds_its_key_accepted_again(
    db_url: str, sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    from archiver.polling.daemon import Daemon

    fake, server = api
    fake.add_workflow("wf-1")
    fake.add_job("wf-1", "j1")
    watch(sessions, "wf-1")
    fake.override["/v0/workflows/wf-1"] = error(401, "unauthorized", "bad key")
    fake.override["/v0/workflows/wf-1/jobs"] = error(401, "unauthorized", "bad key")
    fake.override["/v0/workflows"] = error(401, "unauthorized", "bad key")
    fake.override["/v0/workflows/wf-1/estimate"] = error(401, "unauthorized", "bad key")
    daemon = Daemon(settings_for(server.url, database_url=db_url, run_interval=0.002))
    try:
        first = daemon.pass_once()
        assert first is not None and first.auth_error is not None
        assert daemon.health.key_rejected is not None
        fake.override.clear()
        again = daemon.pass_once()  # no job to probe with: the listing tells
    finally:
        daemon.client.close()
        daemon.engine.dispose()
    assert again is not None and again.auth_error is None
    assert daemon.health.key_rejected is None
    assert again.counts["new"] == 1


def test_a_failed_estimate_is_recorded_and_asked_again_only_after_the_refresh(
    sessions: sessionmaker[Session], api: tuple[FakeApi, ScriptedServer]
) -> None:
    fake, server = api
    fake.add_workflow("wf-1", name="Ortho")
    fake.add_job("wf-1", "j1")
    fake.override["/v0/workflows/wf-1/estimate"] = error(403, "forbidden_access", "no estimate")
    watch(sessions, "wf-1")

    first = run_pass(sessions, server, T0)

    assert first.listing is not None
    assert (first.listing.workflows_listed, first.listing.jobs_discovered) == (1, 1)
    (err,) = rows(sessions, select(ERRORS))
    assert (err.workflow_id, err.http_status) == ("wf-1", 403)
    assert err.message.startswith("estimating workflow wf-1: 403")
    wf = rows(sessions, select(WORKFLOWS))[0]
    assert (wf.name, wf.estimated_cost, wf.estimated_at, wf.state) == ("Ortho", None, T0, "watched")

    mark = len(server.requests)
    run_pass(sessions, server, T0 + timedelta(seconds=30))
    assert kinds(since(server, mark)) == {"list_jobs": 1}
    mark = len(server.requests)
    run_pass(sessions, server, T0 + timedelta(minutes=61))  # past workflow_refresh
    asked = kinds(since(server, mark))
    assert (asked["describe"], asked["estimate"], asked["list_jobs"]) == (1, 1, 1)
