"""``python -m bench.discovery``: one pass over watched workflows against per-job polling.

The question of issue 15: with 10,000 tracked jobs in 50 workflows of which 1% changed since the
last pass, how many requests and how long does a pass take when it lists each workflow once and
fetches only the jobs whose summary moved, against polling every job as before? Both passes run
against the same simulator (``archiver.sim.stepped.SteppedSimulator``: a settled population in
which ``step()`` changes exactly the chosen jobs) under the **default** request rate and
concurrency, into the same archive, in the same run.

1. Set-up (untimed, no rate limit): watch every workflow, one pass discovers and archives every
   job. Then every job's own next poll is put a day ahead, so no job is due on its own schedule:
   the state of a quiet archive between two passes.
2. ``--runs`` times: ``step()`` changes 1% of the jobs, then one ordinary pass (``SyncPass.run()``)
   is timed and its requests counted at the server. The pass must fetch exactly the changed jobs.
3. Once (``--baseline-runs``): ``step()`` again, then the pass of today without listing:
   ``run(everything=True, discover=False)``, every tracked job fetched once.

Figures: requests of the listing pass against the target ``workflows + 1.1 * changed``, and its
wall time against the per-job pass's (target: at least 20 times faster). The per-job pass is bound
by the rate limit (10,000 requests at 20/s is 500 s), so one run of it is the default.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from archiver import db
from archiver.api.client import ApiClient
from archiver.config import Settings
from archiver.models import TRACKED
from archiver.polling import malloc, watching
from archiver.polling.sync import SyncPass, SyncSummary
from archiver.sim.stepped import SteppedSimulator
from bench import backends


@dataclass(frozen=True)
class PassFigures:
    seconds: float
    requests: int
    fetched: int
    changed: int  # jobs the simulator changed before the pass


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(sync: SyncPass, server: object, **run: bool) -> tuple[float, int, SyncSummary]:
    before = server.request_count  # type: ignore[attr-defined]
    start = time.perf_counter()
    summary = sync.run(**run)
    seconds = time.perf_counter() - start
    return seconds, server.request_count - before, summary  # type: ignore[attr-defined]


def measure(
    jobs: int,
    workflows: int,
    fraction: float,
    runs: int,
    baseline_runs: int,
    backend: str,
    postgres_url: str,
    rate_limit: float | None = None,
) -> tuple[list[PassFigures], list[PassFigures]]:
    malloc.return_large_blocks()
    sim = SteppedSimulator(jobs=jobs, workflows=workflows, seed=7)
    listing: list[PassFigures] = []
    per_job: list[PassFigures] = []
    with sim.serve() as server, backends.fresh(backend, ("discovery",), postgres_url) as dbs:
        engine = db.make_engine(dbs["discovery"].url)
        sessions = db.session_factory(engine)
        # the default rate and concurrency, unless a rate is given
        timed = Settings(api_key=sim.api_key, api_url=server.url).with_overrides(
            rate_limit=rate_limit
        )
        setup = timed.with_overrides(rate_limit=0.0)
        workflow_ids = sorted({wf for wf, _ in sim.job_ids()})
        with sessions.begin() as session:
            watching.watch_workflows(session, workflow_ids, datetime.now(UTC))
        with ApiClient(setup) as client:
            _progress(f"set-up: discovering and archiving {jobs} jobs in {workflows} workflows")
            summary = SyncPass.from_settings(setup, sessions, client).run()
        if summary.counts["new"] != jobs:
            raise AssertionError(f"set-up archived {summary.counts['new']} of {jobs} jobs")
        with sessions.begin() as session:
            later = datetime.now(UTC) + timedelta(days=1)
            session.execute(update(TRACKED).values(next_poll_at=later))
        with ApiClient(timed) as client:
            sync = SyncPass.from_settings(timed, sessions, client)
            for run in range(runs):
                changed = sim.step(fraction)
                seconds, requests, summary = _timed(sync, server)
                fetched = summary.due
                if summary.counts["changed"] != len(changed) or fetched != len(changed):
                    raise AssertionError(
                        f"listing pass fetched {fetched} for {len(changed)} changed: "
                        f"{summary.line()}"
                    )
                listing.append(PassFigures(seconds, requests, fetched, len(changed)))
                _progress(f"listing pass {run + 1}: {requests} requests in {seconds:.2f}s")
            for run in range(baseline_runs):
                changed = sim.step(fraction)
                _progress(f"per-job pass {run + 1}: {jobs} requests at {timed.rate_limit:g}/s")
                seconds, requests, summary = _timed(sync, server, everything=True, discover=False)
                per_job.append(PassFigures(seconds, requests, summary.due, len(changed)))
                _progress(f"per-job pass {run + 1}: {requests} requests in {seconds:.2f}s")
        engine.dispose()
    return listing, per_job


def render(
    jobs: int, workflows: int, listing: list[PassFigures], per_job: list[PassFigures]
) -> str:
    med = statistics.median
    changed = med(p.changed for p in listing)
    budget = workflows + 1.1 * changed
    requests = med(p.requests for p in listing)
    speedup = med(p.seconds for p in per_job) / med(p.seconds for p in listing)
    lines = [
        f"one pass, {jobs} tracked jobs in {workflows} watched workflows, "
        f"{changed:g} changed (medians: listing {len(listing)} runs, per-job {len(per_job)})",
        "",
        "| pass | requests | jobs fetched | seconds | target | met |",
        "| --- | ---: | ---: | ---: | --- | --- |",
        f"| listing (list each workflow, fetch what changed) | {requests:g} | "
        f"{med(p.fetched for p in listing):g} | {med(p.seconds for p in listing):.2f} | "
        f"requests <= {budget:g} | {'yes' if requests <= budget else 'NO'} |",
        f"| per-job polling (every tracked job) | {med(p.requests for p in per_job):g} | "
        f"{med(p.fetched for p in per_job):g} | {med(p.seconds for p in per_job):.2f} | | |",
        f"| speed-up | | | {speedup:.1f}x | >= 20x | {'yes' if speedup >= 20 else 'NO'} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.discovery", description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--workflows", type=int, default=50)
    parser.add_argument("--changed", type=float, default=0.01, help="fraction changed per pass")
    parser.add_argument("--runs", type=int, default=3, help="listing passes (median)")
    parser.add_argument("--baseline-runs", type=int, default=1, help="per-job passes (median)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=backends.DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--rate-limit", type=float, help="requests/s of the timed passes (default: the setting's)"
    )
    parser.add_argument("--quick", action="store_true", help="1,000 jobs in 10 workflows")
    args = parser.parse_args(argv)
    if args.quick:
        args.jobs, args.workflows = 1000, 10
    listing, per_job = measure(
        args.jobs,
        args.workflows,
        args.changed,
        args.runs,
        args.baseline_runs,
        args.backend,
        args.postgres_url,
        args.rate_limit,
    )
    print(render(args.jobs, args.workflows, listing, per_job))
    return 0


if __name__ == "__main__":
    sys.exit(main())
