"""The archiver's side of the ingest phases: ``archive_one`` per payload, in process, no HTTP.

Each payload is its own transaction (``archive_one`` opens and commits it): that is the product's
guarantee (a crash leaves a job's previous or new state, never a mix), so the figure includes it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from archiver import db
from archiver.ingest import archive_one
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
        for body in phase.bodies:
            outcomes[archive_one(self.sessions, body, phase.fetched_at).outcome] += 1
        seconds = time.perf_counter() - start
        expected = {"first": "new", "unchanged": "unchanged"}.get(phase.name)
        if expected is not None and outcomes[expected] != phase.jobs:
            raise AssertionError(
                f"{phase.name} phase archived {dict(outcomes)}, not all {expected}"
            )
        return Archived(seconds, dict(outcomes))

    def close(self) -> None:
        self.engine.dispose()
