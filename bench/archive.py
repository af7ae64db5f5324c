"""The archiver's side of the ingest phases: what ``archiver ingest`` does, in process, no HTTP.

The payloads go to ``archive_batch`` in batches of ``BATCH_JOBS``, one transaction each, exactly
as ``archiver ingest`` sends them (a crash still leaves each job's previous or new state, never a
mix; a refused job falls back to a transaction of its own), so the figure includes the commits.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from archiver import db
from archiver.archive.batches import Entry, archive_batch
from archiver.archive.ingest import BATCH_JOBS
from bench.workload import Phase


@dataclass(frozen=True)
class Archived:
    seconds: float
    outcomes: dict[str, int]  # new / changed / unchanged / stale


class Archiver:
    """An engine on one database, kept across the phases of a run (as a daemon keeps its own)."""

    def __init__(self, url: str) -> None:
        self.engine = db.make_engine(url)
        self.sessions = db.session_factory(self.engine)

    def run(self, phase: Phase) -> Archived:
        outcomes: Counter[str] = Counter()
        start = time.perf_counter()
        bodies, at = phase.bodies, phase.fetched_at
        for first in range(0, len(bodies), BATCH_JOBS):
            batch = [Entry(body, at) for body in bodies[first : first + BATCH_JOBS]]
            for result in archive_batch(self.sessions, batch):
                outcomes[getattr(result, "outcome", type(result).__name__)] += 1
        seconds = time.perf_counter() - start
        expected = {"first": "new", "unchanged": "unchanged"}.get(phase.name)
        if expected is not None and outcomes[expected] != phase.jobs:
            raise AssertionError(
                f"{phase.name} phase archived {dict(outcomes)}, not all {expected}"
            )
        return Archived(seconds, dict(outcomes))

    def close(self) -> None:
        self.engine.dispose()
