"""Measure the memory one large payload costs, in a process of its own.

``python tests/memory_probe.py DATABASE_URL PATH SHAPE`` archives one payload of ``SHAPE`` through
``PATH`` into the (migrated) database and prints ``{"growth_mb": ..., "outcome": ...}``.

Why a separate process: the peak resident set of a test process depends on every test before it
(freed memory is reused, the high-water mark never comes down), so a measurement there could
neither be trusted nor fail reliably. Here the baseline is taken after imports and after building
the payload, and a sampling thread records the highest resident set while the payload is archived.
tracemalloc would be more precise but makes a 10^6-element payload ten times slower.

Paths: ``store`` (``archive_one`` on the body), ``ingest`` (``read_items`` + ``ingest``, what
``archiver ingest`` does), ``sync`` (the HTTP client and a sync pass against a local server).
Shapes: ``realistic`` (a 10^6-element byte array as Go encodes a 1 MB ``spec``, 10^6 small log
ids, two 1 MB strings), ``distinct`` (500,000 distinct integers in ``info_logs``: the worst case
per element, ~18 MB once decoded, used to compare paths with one another).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import factories

from archiver import db
from archiver.archive.batches import archive_one
from archiver.archive.ingest import ingest, read_items
from archiver.polling import tracking

T0 = datetime(2026, 10, 1, 10, tzinfo=UTC)
MILLION = 1_000_000


def resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakGrowth:
    """Highest resident set above the baseline while the block runs (sampled every 2 ms)."""

    def __enter__(self) -> PeakGrowth:
        gc.collect()
        self.base = self.peak = resident()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, resident())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, resident())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.base) / 1e6


def payload(shape: str, workflow_id: str, job_id: str) -> bytes:
    doc = factories.job(job_id, workflow_id, tasks=3)
    if shape == "realistic":
        doc["spec"] = [i % 256 for i in range(MILLION)]
        doc["tasks"][0]["info_logs"] = [i % 200 for i in range(MILLION)]
        doc["tasks"][1]["state_msg"] = "s" * MILLION
        doc["val_errors"][0]["reason"] = "r" * MILLION
    elif shape == "distinct":
        doc["tasks"][0]["info_logs"] = list(range(MILLION // 2))
    else:
        raise SystemExit(f"unknown shape {shape}")
    return json.dumps(doc).encode()


def main(url: str, path: str, shape: str) -> dict[str, Any]:
    engine = db.make_engine(url)
    sessions = db.session_factory(engine)
    wf, job_id = f"wf-mem-{path}-{shape}-{os.getpid()}", "job-1"
    archive_one(sessions, factories.job("warm-up", wf, tasks=2), T0)  # pools, caches, imports
    body = payload(shape, wf, job_id)
    if path == "store":
        with PeakGrowth() as peak:
            outcome = archive_one(sessions, body, T0).outcome
    elif path == "ingest":
        with PeakGrowth() as peak:
            summary = ingest(sessions, read_items("big.json", body, T0), now=lambda: T0)
        outcome = "failed" if summary.failed else "new"
    elif path == "sync":
        outcome = _sync(sessions, body, wf, job_id, peak := PeakGrowth())
    else:
        raise SystemExit(f"unknown path {path}")
    engine.dispose()
    return {"growth_mb": round(peak.growth_mb, 1), "outcome": outcome, "body_mb": len(body) / 1e6}


def _sync(sessions: Any, body: bytes, wf: str, job_id: str, peak: PeakGrowth) -> str:
    from http_helpers import Reply, ScriptedServer

    from archiver.api.client import ApiClient
    from archiver.config import Settings
    from archiver.polling import malloc
    from archiver.polling.leases import Claim
    from archiver.polling.sync import SyncPass

    malloc.return_large_blocks()  # as `archiver sync` sets up its process
    with sessions.begin() as session:
        tracking.track(session, [(wf, job_id)], T0)
    with ScriptedServer() as server:
        server.always(Reply(200, body, headers={"Content-Type": "application/json"}))
        key = "memory-probe-key-0123456789"
        settings = Settings(
            api_key=key, api_url=server.url, max_retries=0, rate_limit=0.0, concurrency=1
        )
        with ApiClient(settings) as client:
            sync = SyncPass.from_settings(settings, sessions, client, now=lambda: T0)
            with peak:
                summary = sync.run(claims=[Claim(wf, job_id)])  # this job only: probes share a db
    return "failed" if summary.failed else "new"


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
