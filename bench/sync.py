"""``archiver sync`` against the simulator over loopback, next to the bare fetch rate.

The floor is the same ``ApiClient`` fetching every job at the same concurrency without archiving:
what the API side (client, loopback HTTP, simulator) costs on its own. The figures are a first
sync (``SyncPass.run(everything=True)``: full history for every job) and an unchanged re-sync of
the same jobs (the simulator's clock is frozen, so every payload is identical), both with no rate
limit. The simulator's render cache is warmed by an untimed fetch first, so every timed pass
measures the archiver and the client, not the simulator drawing plans.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from archiver import db
from archiver.api.client import ApiClient
from archiver.config import Settings
from archiver.polling import malloc, tracking
from archiver.polling.sync import SyncPass
from archiver.sim.simulator import Simulator
from bench import backends
from bench.workload import AT, SEED, TIME_SCALE


@dataclass(frozen=True)
class SyncRun:
    """One run's seconds: bare fetch of all N, first sync, unchanged re-sync."""

    fetch: float
    first: float
    again: float


class FrozenClock:
    """The simulator's clock: starts at 0 (its origin), then stays at ``AT`` seconds."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fetch_all(settings: Settings, ids: list[tuple[str, str]], concurrency: int) -> float:
    """Seconds to fetch every job once with ``concurrency`` threads sharing one client."""
    with ApiClient(settings) as client, ThreadPoolExecutor(concurrency) as pool:
        start = time.perf_counter()
        for fetched in pool.map(lambda pair: client.fetch_job(*pair), ids):
            assert fetched.body
        return time.perf_counter() - start


def sync_once(sessions: sessionmaker[Session], settings: Settings, expect: str) -> float:
    """Seconds of one ``SyncPass.run(everything=True)``; every job must end as ``expect``."""
    with ApiClient(settings) as client:
        sync = SyncPass.from_settings(settings, sessions, client)
        start = time.perf_counter()
        summary = sync.run(everything=True)
        seconds = time.perf_counter() - start
    if summary.counts[expect] != summary.due:
        raise AssertionError(f"sync expected all {expect}: {summary.line()} {summary.errors[:3]}")
    return seconds


def measure(
    n: int,
    runs: int,
    *,
    concurrency: int = 8,
    backend: str = "sqlite",
    postgres_url: str = backends.DEFAULT_POSTGRES_URL,
) -> list[SyncRun]:
    """``runs`` runs of (bare fetch, first sync, unchanged re-sync) of ``n`` simulated jobs."""
    malloc.return_large_blocks()  # as `archiver sync` sets up its process
    clock = FrozenClock()
    sim = Simulator(seed=SEED, jobs=n, clock=clock, time_scale=TIME_SCALE, cache_jobs=n)
    clock.now = AT  # mid-lifecycle, like the ingest workload
    ids = sim.job_ids()
    out = []
    with sim.serve() as server:
        settings = Settings(
            api_key=sim.api_key, api_url=server.url, rate_limit=0.0, concurrency=concurrency
        )
        fetch_all(settings, ids, concurrency)  # warm the simulator's render cache
        for _ in range(runs):
            fetch = fetch_all(settings, ids, concurrency)
            with backends.fresh(backend, ("sync",), postgres_url) as dbs:
                engine = db.make_engine(dbs["sync"].url)
                sessions = db.session_factory(engine)
                with sessions.begin() as session:
                    tracking.track(session, ids, datetime.now(UTC))
                first = sync_once(sessions, settings, "new")
                again = sync_once(sessions, settings, "unchanged")
                engine.dispose()
            out.append(SyncRun(fetch, first, again))
    return out
