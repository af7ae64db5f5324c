"""Deterministic, realistic job payloads for the simulator, the tests and the benchmarks.

Why: the archiver must be exercised against data that behaves like the real API (jobs that queue,
run, fail or get cancelled, get re-priced after they end; tasks that form a DAG; validation errors
that come and go) without credentials, network or flakiness. A payload is a pure function of
(seed, job index, elapsed time), so any process can reproduce exactly what another one saw: no
wall clock, no global RNG.

How: ``plan_job`` draws everything about a job once (a frozen ``JobPlan`` with the whole timeline
precomputed in *simulated* seconds since the population's start); ``job_payload`` only evaluates
that plan at one instant (``archiver.sim.payloads``). Job state is piecewise constant: it changes at
the plan's events (task starts and ends, errors appearing, the end, a re-pricing) and at a per-job
heartbeat while running, so ``updated_at`` moves exactly when the content does and ``state_time`` is
a cheap cache key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

DEFAULT_START = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)
"""The population's start when none is given: fixed, so payloads never depend on the wall clock."""

ZERO_TIME = "0001-01-01T00:00:00Z"
"""Go's zero ``time.Time``: how the real API renders a timestamp that has not happened yet."""

TERMINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})

# (name, pipeline stage, versions (current first), relative price per unit of work)
_BLOCKS: tuple[tuple[str, int, tuple[str, ...], float], ...] = (
    ("ingest-scene", 0, ("2.1.0", "2.0.3"), 0.6),
    ("radiometric-calib", 1, ("1.7.3", "1.7.2"), 0.8),
    ("cloud-mask", 1, ("3.0.1", "2.9.4"), 1.0),
    ("atmos-correct", 2, ("2.3.0",), 1.4),
    ("ortho-rectify", 2, ("1.4.2", "1.4.1"), 1.6),
    ("co-register", 2, ("0.9.8",), 1.1),
    ("pan-sharpen", 3, ("1.2.5",), 1.2),
    ("super-resolve", 3, ("0.3.1",), 2.5),
    ("ndvi", 3, ("1.0.4",), 0.5),
    ("water-index", 3, ("1.1.0",), 0.5),
    ("change-detect", 3, ("0.6.2", "0.6.1"), 1.8),
    ("mosaic", 4, ("2.0.0",), 1.3),
    ("tile-export", 4, ("1.8.0",), 0.7),
    ("cog-convert", 4, ("1.5.1",), 0.6),
    ("stac-publish", 5, ("1.1.3",), 0.2),
)
_DISCLAIMERS = {
    "cloud-mask": "Cloud cover estimates are approximate above 60% coverage.",
    "super-resolve": "Super-resolved output is not suitable for metric measurement.",
    "change-detect": "Changes under 0.5 ha are below the detection threshold.",
}
_FAILURES = (
    ("timeout", "block exceeded its time limit of 900s"),
    ("oom", "container killed: out of memory (limit 8Gi)"),
    ("input_error", "input raster has 3 bands, expected 4"),
    ("input_error", "scene footprint does not intersect the AOI"),
    ("internal", "unexpected error: segmentation fault in gdal_translate"),
)
_VAL_ERRORS = (
    ("band_mismatch", "output has 4 bands but the consumer expects 3"),
    ("crs_mismatch", "EPSG:32643 does not match EPSG:4326"),
    ("resolution_mismatch", "5 m input where 30 m was declared"),
    ("deprecated_version", "block version is deprecated; Δ behaviour in next release"),
    ("missing_input", "optional input 'dem' not connected; using SRTM fallback"),
)
_USER_WEIGHTS = (35, 25, 20, 12, 8)
_DURATION_STYLES = ("go", "go_whole", "seconds")


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """One task's whole life; times are simulated seconds after the population's start."""

    task_id: str
    name: str
    block: tuple[str, str, str]  # id, name, version
    depends_on: tuple[str, ...]
    start: float  # planned start: all dependencies have completed by then
    end: float  # planned end (if nothing stops the job first)
    stop: float  # when the task reaches final_status: min(end, job end)
    final_status: str
    failure_type: str
    err_msg: str
    work_share: float  # share of the job's progress
    cost_share: float  # share of the job's cost
    estimated_time_duration: int
    # byte-array fields are kept as bytes (not tuples of ints): smaller, and not GC-tracked
    inputs: bytes
    result: bytes
    disclaimer: tuple[str, ...]
    log_start: bytes
    log_end: bytes
    # (offset, rendered timestamp); offset None: never happens
    recv: tuple[float | None, str]
    inf_start: tuple[float | None, str]
    inf_end: tuple[float | None, str]
    send: tuple[float | None, str]
    stop_ts: str


@dataclass(frozen=True, slots=True)
class ValErrorPlan:
    """A validation error visible for ``appear <= t < resolve``."""

    source: str
    target: str
    err: str
    reason: str
    component_name: str
    appear: float
    resolve: float  # math.inf: never resolved


@dataclass(frozen=True, slots=True)
class JobPlan:
    """Everything about one job, drawn once from its own RNG; ``job_payload`` evaluates it."""

    seed: int
    index: int
    workflow_id: str
    job_id: str
    created_by: str
    start: datetime  # the population's start (t = 0)
    created: float  # negative: created a few minutes before the start
    queue_delay: float  # execution starts at this offset (unless cancelled before)
    end: float  # terminal status from here on
    outcome: str  # completed | failed | cancelled
    total_cost: int  # cost if the job runs to completion
    final_cost: int  # cost when it ends
    reprice_at: float | None  # cost changes once more after the end (None: it does not)
    repriced_cost: int
    estimated_duration: int
    heartbeat: float  # running jobs report progress this often (simulated seconds)
    decimal_progress: bool  # "42.5%" instead of "42%"
    duration_style: str  # go ("1h2m3.5s"), go_whole ("12m5s"), seconds ("754s")
    spec: bytes
    tasks: tuple[TaskPlan, ...]
    val_errors: tuple[ValErrorPlan, ...]
    events: tuple[float, ...]  # sorted offsets at which the payload changes (besides heartbeats)
    created_ts: str
    exec_start_ts: str
    end_ts: str

    @property
    def started(self) -> bool:
        """Whether execution ever starts (a job can be cancelled while queued)."""
        return self.queue_delay < self.end

    @property
    def settled_at(self) -> float:
        """Simulated seconds after the start from which the payload never changes again."""
        return self.events[-1]


def go_duration(seconds: float) -> str:
    """Render like Go's ``time.Duration.String()`` after rounding to milliseconds."""
    ms = round(seconds * 1000)
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    if ms < 1000:
        return f"{sign}{ms}ms"
    hours, rem = divmod(ms, 3_600_000)
    minutes, rem = divmod(rem, 60_000)
    secs, frac = divmod(rem, 1000)
    text = str(secs) + ("." + f"{frac:03d}".rstrip("0") if frac else "")
    if hours:
        return f"{sign}{hours}h{minutes}m{text}s"
    if minutes:
        return f"{sign}{minutes}m{text}s"
    return f"{sign}{text}s"


def duration_text(style: str, seconds: float) -> str:
    if style == "go":
        return go_duration(seconds)
    if style == "go_whole":
        return go_duration(round(seconds))
    return f"{round(seconds)}s"


@functools.lru_cache(maxsize=16)
def _naive_utc(start: datetime) -> datetime:
    return start.astimezone(UTC).replace(tzinfo=None)


def timestamp_text(start: datetime, offset: float) -> str:
    # naive arithmetic and isoformat are several times faster than aware datetimes and strftime,
    # and a plan renders thousands of timestamps
    when = _naive_utc(start) + timedelta(seconds=offset)
    return when.isoformat(timespec="microseconds") + "Z"


def _job_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"{seed}:{index}")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _hex(*parts: object, length: int = 8) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:length]


def _bytes(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def users(seed: int) -> list[str]:
    """The simulated organisation's users, most active first."""
    return ["usr-" + _hex(seed, "user", k, length=10) for k in range(len(_USER_WEIGHTS))]


def workflow_id(seed: int, workflow: int) -> str:
    """The id of workflow number ``workflow`` of population ``seed``."""
    return "wf-" + _hex(seed, "wf", workflow)


def _draw_ids(rng: random.Random, seed: int, workflows: int) -> tuple[str, str]:
    return workflow_id(seed, rng.randrange(max(1, workflows))), _uuid(rng)


def job_ids(seed: int, index: int, *, workflows: int = 8) -> tuple[str, str]:
    """(workflow_id, job_id) of job ``index``, without drawing the rest of its plan."""
    return _draw_ids(_job_rng(seed, index), seed, workflows)


def _draw_dag(rng: random.Random, count: int) -> tuple[list[int], list[tuple[int, ...]]]:
    """Blocks (indexes into _BLOCKS) in pipeline order, and each task's earlier dependencies."""
    later = [rng.randrange(1, len(_BLOCKS)) for _ in range(count - 1)]
    blocks = [0, *sorted(later, key=lambda b: _BLOCKS[b][1])]
    deps: list[tuple[int, ...]] = [()]
    for i in range(1, count):
        k = min(i, rng.choices((0, 1, 2, 3), weights=(1, 6, 3, 1))[0])
        deps.append(tuple(sorted(rng.sample(range(max(0, i - 6), i), k))))
    return blocks, deps


def _draw_schedule(
    rng: random.Random, deps: list[tuple[int, ...]], queue_delay: float, pace: float
) -> tuple[list[float], list[float]]:
    """Start/end of every task: each starts after all its dependencies end, plus a dispatch lag."""
    starts: list[float] = []
    ends: list[float] = []
    for task_deps in deps:
        begin = max((ends[d] for d in task_deps), default=0.0) + rng.uniform(1, 10)
        starts.append(begin)
        ends.append(begin + rng.uniform(30, 240))
    # Scale so the run takes 15-40 simulated minutes, whatever the DAG's shape.
    factor = rng.uniform(15 * 60, 40 * 60) / max(ends) / pace
    return (
        [round(queue_delay + s * factor, 6) for s in starts],
        [round(queue_delay + e * factor, 6) for e in ends],
    )


def _draw_outcome(
    rng: random.Random,
    starts: list[float],
    ends: list[float],
    queue: tuple[float, float],
    pace: float,
) -> tuple[str, float, int | None]:
    """(outcome, job end, index of the failing task); ``queue`` is (queued from, runs from)."""
    base, queue_delay = queue
    u = rng.random()
    if u < 0.80:
        return "completed", round(max(ends) + rng.uniform(1, 10) / pace, 6), None
    if u < 0.95:
        failing = rng.randrange(len(starts))
        at = starts[failing] + rng.uniform(0.1, 0.95) * (ends[failing] - starts[failing])
        return "failed", round(at, 6), failing
    if rng.random() < 0.2:  # a fifth of cancellations happen before the job ever runs
        at = base + rng.uniform(0.3, 0.95) * (queue_delay - base)
        return "cancelled", round(at, 6), None
    return "cancelled", round(rng.uniform(queue_delay, base + (max(ends) - base) * 0.9), 6), None


def task_fraction(task: TaskPlan, eff: float) -> float:
    """How much of the task's work is done at ``eff``."""
    if eff <= task.start or task.stop <= task.start:
        return 0.0
    return (min(eff, task.stop) - task.start) / (task.end - task.start)


def accrued_cost(total: int, tasks: tuple[TaskPlan, ...], eff: float) -> int:
    done = sum(t.cost_share * task_fraction(t, eff) for t in tasks)
    return min(total, math.floor(total * done + 1e-9))


def _when(start: datetime, offset: float | None) -> tuple[float | None, str]:
    return (offset, "" if offset is None else timestamp_text(start, offset))


def _build_task(
    rng: random.Random,
    ctx: dict[str, Any],
    i: int,
    names: list[str],
    ids: list[str],
) -> TaskPlan:
    """Draw the static parts of task ``i``; ``ctx`` carries the job-level schedule."""
    start: datetime = ctx["start"]
    block_name, _stage, versions, _price = _BLOCKS[ctx["blocks"][i]]
    version = versions[0] if rng.random() < 0.85 else rng.choice(versions)
    t_start, t_end, job_end = ctx["starts"][i], ctx["ends"][i], ctx["end"]
    stop = min(t_end, job_end)
    if t_end <= job_end:
        final, failure = "completed", ("", "")
    elif i == ctx["failing"]:
        final, failure = "failed", rng.choice(_FAILURES)
    else:
        final, failure = "cancelled", ("", "")
    ran = t_start < stop
    inf_start = t_start + rng.uniform(0.2, 3.0) / ctx["pace"]
    inf_end = t_end - rng.uniform(0.2, 2.0) / ctx["pace"]
    start_ts, stop_ts = timestamp_text(start, t_start), timestamp_text(start, stop)
    head = f"{start_ts[11:19]} INFO {block_name}@{version} started\n" if ran else ""
    if final == "completed":
        tail = f"{stop_ts[11:19]} INFO wrote {rng.randint(1, 64)} tiles\n"
    elif final == "failed":
        tail = f"{stop_ts[11:19]} ERROR {failure[1]}\n"
    else:
        tail = f"{stop_ts[11:19]} WARN cancelled\n" if ran else ""
    key = ctx["job_id"][:8]
    return TaskPlan(
        task_id=ids[i],
        name=names[i],
        block=("blk-" + _hex("block", block_name, version), block_name, version),
        depends_on=tuple(ids[d] for d in ctx["deps"][i]),
        start=t_start,
        end=t_end,
        stop=stop,
        final_status=final,
        failure_type=failure[0],
        err_msg=failure[1],
        work_share=ctx["work"][i],
        cost_share=ctx["price"][i],
        estimated_time_duration=round((t_end - t_start) * rng.uniform(0.7, 1.4)),
        inputs=_bytes({"scene": ctx["scene"], "tile": i, "bands": rng.choice((3, 4, 8))}),
        result=_bytes(
            {"uri": f"s3://px-results/{key}/{ids[i][:8]}.tif", "bytes": rng.randint(1, 9) << 20}
        ),
        disclaimer=(_DISCLAIMERS[block_name],) if block_name in _DISCLAIMERS else (),
        log_start=head.encode(),
        log_end=tail.encode(),
        recv=(t_start, start_ts) if ran else (None, ""),
        inf_start=_when(start, inf_start if inf_start < stop else None),
        inf_end=_when(start, inf_end if final == "completed" and inf_end > inf_start else None),
        send=(stop, stop_ts) if final != "cancelled" else (None, ""),
        stop_ts=stop_ts,
    )


def _draw_tasks(rng: random.Random, ctx: dict[str, Any]) -> tuple[TaskPlan, ...]:
    blocks: list[int] = ctx["blocks"]
    seen: dict[str, int] = {}
    names = []
    for b in blocks:
        name = _BLOCKS[b][0]
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    ids = [_uuid(rng) for _ in blocks]
    work = [e - s for s, e in zip(ctx["starts"], ctx["ends"], strict=True)]
    price = [w * _BLOCKS[b][3] for w, b in zip(work, blocks, strict=True)]
    ctx["work"] = [w / sum(work) for w in work]
    ctx["price"] = [p / sum(price) for p in price]
    return tuple(_build_task(rng, ctx, i, names, ids) for i in range(len(blocks)))


def _draw_val_errors(
    rng: random.Random, tasks: tuple[TaskPlan, ...], created: float, run: tuple[float, float]
) -> tuple[ValErrorPlan, ...]:
    """0-3 errors; some exist from creation, some appear while running; some are resolved."""
    by_id = {t.task_id: t for t in tasks}
    out = []
    for _ in range(rng.choices((0, 1, 2, 3), weights=(50, 28, 14, 8))[0]):
        target = rng.choice(tasks)
        source = by_id[rng.choice(target.depends_on)].name if target.depends_on else "job-spec"
        err, reason = rng.choice(_VAL_ERRORS)
        exec_start, end = run
        running = exec_start < end and rng.random() < 0.6
        appear = round(rng.uniform(exec_start, end), 6) if running else created
        low = max(appear, exec_start)
        resolve = round(rng.uniform(low, end), 6) if low < end and rng.random() < 0.5 else math.inf
        out.append(ValErrorPlan(source, target.name, err, reason, target.block[1], appear, resolve))
    return tuple(out)


def _events(
    created: float,
    queue_delay: float,
    end: float,
    tasks: tuple[TaskPlan, ...],
    val_errors: tuple[ValErrorPlan, ...],
    reprice_at: float | None,
) -> tuple[float, ...]:
    points = {created, queue_delay, end}
    for t in tasks:
        points.update((t.start, t.stop))
        points.update(o for o, _ in (t.inf_start, t.inf_end) if o is not None)
    for v in val_errors:
        points.update((v.appear, v.resolve))
    kept = sorted(p for p in points if p <= end)
    return (*kept, reprice_at) if reprice_at is not None else tuple(kept)


def plan_job(
    seed: int,
    index: int,
    *,
    tasks: tuple[int, int] = (10, 30),
    workflows: int = 8,
    start: datetime = DEFAULT_START,
    ids: tuple[str, str] | None = None,
    pace: float = 1.0,
    created_at: float | None = None,
) -> JobPlan:
    """Draw job ``index`` of population ``seed``. ``ids`` overrides (workflow_id, job_id).

    ``pace`` divides every duration (queueing, tasks, re-pricing, heartbeat), so that a simulator
    running ``pace`` times faster than drawn can still evaluate the plan in real seconds: its
    timestamps then never run ahead of the moment they are served, and ``time_taken`` agrees
    with the periods an observer sees. ``created_at`` moves the whole timeline so the job is
    created at that offset (a job appearing while a simulation runs); by default it is created
    one to ten (drawn) minutes before the start. Neither changes anything else drawn.
    """
    if pace <= 0:
        raise ValueError(f"pace must be positive, not {pace!r}")
    if not 1 <= tasks[0] <= tasks[1]:
        raise ValueError(f"tasks must be (min, max) with 1 <= min <= max, not {tasks!r}")
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    start = start.astimezone(UTC)
    rng = _job_rng(seed, index)
    workflow_id, job_id = _draw_ids(rng, seed, workflows)
    if ids is not None:
        workflow_id, job_id = ids
    created_by = rng.choices(users(seed), weights=_USER_WEIGHTS)[0]
    before = rng.uniform(60, 600) / pace
    base = 0.0 if created_at is None else created_at + before
    created = round(base - before, 6) if created_at is None else created_at
    queue_delay = round(base + rng.uniform(5, 180) / pace, 6)
    blocks, deps = _draw_dag(rng, rng.randint(*tasks))
    starts, ends = _draw_schedule(rng, deps, queue_delay, pace)
    outcome, end, failing = _draw_outcome(rng, starts, ends, (base, queue_delay), pace)
    scene = (
        f"PX-TD-{(start + timedelta(days=-rng.randint(1, 30))):%Y%m%d}-{rng.randint(1, 9999):04d}"
    )
    ctx = {"start": start, "blocks": blocks, "deps": deps, "starts": starts, "ends": ends}
    ctx.update(end=end, failing=failing, job_id=job_id, scene=scene, pace=pace)
    task_plans = _draw_tasks(rng, ctx)
    val_errors = _draw_val_errors(rng, task_plans, created, (queue_delay, end))
    total_cost = max(10, round(rng.lognormvariate(6.2, 0.7)))
    final_cost = total_cost if outcome == "completed" else accrued_cost(total_cost, task_plans, end)
    reprice_at: float | None = None
    repriced_cost = final_cost
    if rng.random() < 0.2 and final_cost > 0:
        reprice_at = round(end + rng.uniform(120, 1200) / pace, 6)
        repriced_cost = max(0, round(final_cost * (1 + rng.uniform(-0.15, 0.25))))
        repriced_cost += 1 if repriced_cost == final_cost else 0
    spec = {"version": 1, "product": rng.choice(("L1C", "L2A", "NDVI-MOSAIC", "WATER-MASK"))}
    spec.update(aoi=f"AOI-{rng.randint(100, 9999)}", priority=rng.choice(("low", "normal", "high")))
    return JobPlan(
        seed=seed,
        index=index,
        workflow_id=workflow_id,
        job_id=job_id,
        created_by=created_by,
        start=start,
        created=created,
        queue_delay=queue_delay,
        end=end,
        outcome=outcome,
        total_cost=total_cost,
        final_cost=final_cost,
        reprice_at=reprice_at,
        repriced_cost=repriced_cost,
        estimated_duration=round((max(ends) - queue_delay) * rng.uniform(0.8, 1.3)),
        heartbeat=max(0.001, round(rng.uniform(15, 45) / pace, 3)),
        decimal_progress=rng.random() < 0.15,
        duration_style=rng.choices(_DURATION_STYLES, weights=(60, 25, 15))[0],
        spec=_bytes(spec),
        tasks=task_plans,
        val_errors=val_errors,
        events=_events(created, queue_delay, end, task_plans, val_errors, reprice_at),
        created_ts=timestamp_text(start, created),
        exec_start_ts=timestamp_text(start, queue_delay),
        end_ts=timestamp_text(start, end),
    )


def population(seed: int, jobs: int, **kwargs: Any) -> list[JobPlan]:
    """Plans of jobs 0..jobs-1 (keyword arguments as for ``plan_job``)."""
    return [plan_job(seed, i, **kwargs) for i in range(jobs)]
