"""Sync throughput against the simulator over loopback, next to the bare fetch rate.

    python -m bench.sync_rate [--jobs 500] [--concurrency 8] [--runs 3]

Same client, same concurrency, same jobs: the floor is fetching every job without archiving; the
figure is ``archiver sync --all`` (first archive, full history, SQLite WAL). The simulator's own
rate is measured alone with keep-alive ``http.client`` connections.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from archiver import db, tracking
from archiver.client import ApiClient
from archiver.config import Settings
from archiver.simulator import Simulator
from archiver.statuses import DEFAULT_CLASSIFIER
from archiver.sync import SyncPass


def simulator_rate(url: str, ids: list[tuple[str, str]], key: str, seconds: float = 3.0) -> float:
    parts = urlsplit(url)
    count = 0
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(offset: int) -> None:
        nonlocal count
        conn = http.client.HTTPConnection(parts.hostname, parts.port)
        done, i = 0, offset
        while time.monotonic() < stop:
            wf, job = ids[i % len(ids)]
            conn.request(
                "GET",
                f"/v0/workflows/{quote(wf)}/jobs/{quote(job)}",
                headers={"Authorization": key},
            )
            conn.getresponse().read()
            done, i = done + 1, i + 1
        with lock:
            count += done

    threads = [threading.Thread(target=worker, args=(k * 97,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    clock_t = [0.0]
    sim = Simulator(seed=2, jobs=args.jobs, clock=lambda: clock_t[0], cache_jobs=args.jobs)
    clock_t[0] = 20.0  # mid-lifecycle: running jobs with tasks in every phase
    ids = sim.job_ids()
    fetch_rates, sync_rates = [], []
    with sim.serve() as server:
        settings = Settings(
            api_key=sim.api_key, api_url=server.url, rate_limit=0.0, concurrency=args.concurrency
        )
        for wf, job in ids:  # warm the simulator's render cache: measure the archiver, not it
            sim.payload_bytes(sim._index[(wf, job)], 20.0)
        sim_rate = simulator_rate(server.url, ids, sim.api_key)
        for _ in range(args.runs):
            with ApiClient(settings) as client, ThreadPoolExecutor(args.concurrency) as pool:
                start = time.perf_counter()
                list(pool.map(lambda p: client.fetch_job(*p), ids))
                fetch_rates.append(len(ids) / (time.perf_counter() - start))
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite:///{tmp}/a.db"
                db.upgrade(url)
                engine = db.make_engine(url)
                sessions = db.session_factory(engine)
                with sessions.begin() as session:
                    tracking.track(session, ids, datetime.now(UTC))
                with ApiClient(settings) as client:
                    sync = SyncPass(
                        sessions,
                        client,
                        policy=tracking.PollingPolicy.from_settings(settings),
                        classifier=DEFAULT_CLASSIFIER,
                        concurrency=args.concurrency,
                    )
                    summary = sync.run(everything=True)
                assert summary.failed == 0, summary.errors[:3]
                sync_rates.append(len(ids) / summary.seconds)
                engine.dispose()
    fetch, synced = statistics.median(fetch_rates), statistics.median(sync_rates)
    print(
        f"{args.jobs} simulated jobs (10-30 tasks), concurrency {args.concurrency}, "
        f"median of {args.runs}"
    )
    print(f"simulator alone (4 keep-alive connections): {sim_rate:7.0f} requests/s")
    print(f"bare fetch (ApiClient, no archive):        {fetch:7.0f} jobs/s")
    print(
        f"archiver sync --all, first archive, SQLite: {synced:6.0f} jobs/s  "
        f"({synced / fetch:.2f}x the fetch rate)"
    )


if __name__ == "__main__":
    main()
