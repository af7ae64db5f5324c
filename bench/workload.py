"""The ingest workload: N jobs archived for the first time, the same N again, then a poll in which
10% of them changed.

Payloads come from the simulator's generator (``archiver.sim.jobgen``): 10-30 tasks joined by
``depends_on`` edges, 0-3 validation errors, taken mid-lifecycle (20 simulated minutes in, so
jobs are queued, running or finished and every kind of field is filled). They are JSON text, as
the API returns them, so every contender pays for decoding. The third phase re-sends all N (the
way a poll sees them), 10% passed through ``archiver.sim.mutate`` (status, cost, progress, some
tasks): a merge/SCD2 loader that is only given the changed rows would retire the others.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from archiver.sim import jobgen, mutate
from archiver.sim.payloads import job_payload

SEED = 6
AT = 20.0  # real seconds after the population's start at time scale 60: 20 simulated minutes
TIME_SCALE = 60.0
FETCHED = datetime(2026, 10, 1, 12, 0, tzinfo=UTC)
MUTATED_SHARE = 0.10
PHASES = ("first", "unchanged", "mutated")


@dataclass(frozen=True)
class Phase:
    """One pass over the N jobs: the bodies in archive order and the time they were fetched."""

    name: str
    bodies: tuple[str, ...]
    fetched_at: datetime
    changed: int  # bodies that differ from the previous phase's (all of them in the first)

    @property
    def jobs(self) -> int:
        return len(self.bodies)


def payloads(n: int, *, seed: int = SEED, tasks: tuple[int, int] = (10, 30)) -> list[dict]:
    """The N jobs' payloads, decoded."""
    return [
        job_payload(jobgen.plan_job(seed, i, tasks=tasks), AT, time_scale=TIME_SCALE)
        for i in range(n)
    ]


def phases(n: int, *, seed: int = SEED) -> tuple[Phase, Phase, Phase]:
    """First archive, unchanged re-archive (5 minutes later), 10%-mutated re-archive (10 later)."""
    docs = payloads(n, seed=seed)
    bodies = tuple(json.dumps(doc) for doc in docs)
    rng = random.Random(f"{seed}:mutate")
    picked = sorted(rng.sample(range(n), round(n * MUTATED_SHARE)))
    mutated = list(bodies)
    for i in picked:
        mutated[i] = json.dumps(mutate.mutate(docs[i], rng))
    return (
        Phase("first", bodies, FETCHED, n),
        Phase("unchanged", bodies, FETCHED + timedelta(minutes=5), 0),
        Phase("mutated", tuple(mutated), FETCHED + timedelta(minutes=10), len(picked)),
    )


def job_keys(phase: Phase) -> list[tuple[str, str]]:
    """(workflow_id, job_id) of each body, in archive order."""
    out = []
    for body in phase.bodies:
        doc = json.loads(body)
        out.append((doc["workflow_id"], doc["id"]))
    return out
