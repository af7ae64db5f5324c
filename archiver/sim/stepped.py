"""A simulator whose jobs change only when told, for benchmarks of change detection.

Why: "one pass over 10,000 tracked jobs in 50 workflows with 1% changed" needs a population in
which *exactly* the chosen jobs differ between two instants, through the real HTTP endpoints
(listJobs and the job endpoint agreeing), however long the previous pass took. A lifecycle
simulation cannot promise that; this one can: every job is first evaluated where it has settled
(nothing moves by itself any more, no new jobs, no workflow changes), then ``step()`` moves the
clock forward and changes the chosen jobs with ``archiver.sim.mutate`` (status, cost, progress,
tasks; ``updated_at`` always moves, so every changed job's list summary differs).

Usage::

    sim = SteppedSimulator(jobs=10_000, workflows=50, seed=7)
    with sim.serve() as server:
        ...                               # track sim.job_ids() (or discover them), archive once
        changed = sim.step(fraction=0.01) # exactly 100 jobs now differ, the other 9,900 do not
        ...                               # the measured pass
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable
from typing import Any

from archiver.sim.mutate import mutate
from archiver.sim.payloads import SUMMARY_FIELDS
from archiver.sim.simulator import Simulator, _dumps

STEP_SECONDS = 900.0
"""Real seconds each step moves the clock: more than ``mutate`` moves an ``updated_at`` (at most
600 s), so no changed timestamp is ever later than the instant it is served at."""


class SteppedSimulator(Simulator):
    """``jobs`` settled jobs spread over ``workflows`` workflows; ``step()`` changes chosen ones.

    Its clock is its own (the wall clock plays no part): it starts where every job has settled
    and moves only in ``step()``. Every plan is drawn up front and kept (``cache_jobs`` is the
    population), so listing all workflows costs no drawing: about 0.3 ms a job with the default
    2-4 tasks, and a few KB of memory each. Other keyword arguments go to ``Simulator``
    (``faults``, ``api_key``, ``start``, ...).
    """

    def __init__(
        self,
        jobs: int = 10_000,
        workflows: int = 50,
        *,
        seed: int = 0,
        tasks: tuple[int, int] = (2, 4),
        **kwargs: Any,
    ) -> None:
        self._now = 0.0
        super().__init__(
            seed=seed,
            jobs=jobs,
            workflows=workflows,
            tasks=tasks,
            clock=lambda: self._now,
            cache_jobs=max(1, jobs),
            new_jobs_per_minute=0.0,
            workflow_changes=math.inf,
            **kwargs,
        )
        settled = max((self.plan(i).settled_at for i in range(jobs)), default=0.0)
        self._now = math.floor(max(0.0, settled)) + 1.0
        self.steps = 0
        # index -> (payload, its body, summary, its JSON) of a job changed by a step
        self._changed: dict[int, tuple[dict[str, Any], bytes, dict[str, Any], str]] = {}

    def step(
        self,
        fraction: float | None = None,
        *,
        count: int | None = None,
        indexes: Iterable[int] = (),
    ) -> list[tuple[str, str]]:
        """Move the clock ``STEP_SECONDS`` on and change exactly the chosen jobs; returns their
        (workflow_id, job_id), in population order.

        Choose by ``fraction`` of the population (rounded), ``count``, or explicit ``indexes``
        (into ``job_ids()``); the first two draw the jobs from (seed, step number), so a run is
        reproducible. A job can change again in a later step. With no choice, only time moves.
        """
        total = len(self.job_ids())
        chosen = set(indexes)
        if fraction is not None:
            if not 0.0 <= fraction <= 1.0:
                raise ValueError(f"fraction must be in [0, 1], not {fraction!r}")
            count = round(total * fraction)
        if count is not None:
            if not 0 <= count <= total:
                raise ValueError(f"count must be in [0, {total}], not {count!r}")
            chosen |= set(
                random.Random(f"{self.seed}:step:{self.steps}").sample(range(total), count)
            )
        if any(not 0 <= i < total for i in chosen):
            raise ValueError(f"indexes must be in [0, {total})")
        self.steps += 1
        self._now += STEP_SECONDS
        rng = random.Random(f"{self.seed}:mutate:{self.steps}")
        keys = self.job_ids()
        for index in sorted(chosen):
            before = json.loads(self.payload_bytes(index, self._now))
            doc = mutate(before, rng)
            summary = {name: doc[name] for name in SUMMARY_FIELDS}
            self._changed[index] = (doc, _dumps(doc).encode(), summary, _dumps(summary))
        return [keys[i] for i in sorted(chosen)]

    def payload_bytes(self, index: int, t: float) -> bytes:
        changed = self._changed.get(index)
        return changed[1] if changed is not None else super().payload_bytes(index, t)

    def summary(self, index: int, t: float) -> tuple[dict[str, Any], str]:
        changed = self._changed.get(index)
        return (changed[2], changed[3]) if changed is not None else super().summary(index, t)

    def payload(
        self, workflow_id: str, job_id: str, *, t: float | None = None
    ) -> dict[str, Any] | None:
        index = self._lookup(workflow_id, job_id, self.elapsed() if t is None else t)
        if index is None:
            return None
        return json.loads(self.payload_bytes(index, self.elapsed()))
