"""Lazily drawn event times (a Poisson process) that any process can reproduce from a key.

Why: a simulation that runs until Ctrl-C needs things that keep happening (new jobs, renamed
workflows) without drawing an unbounded future up front, and the k-th event must fall at the same
instant whoever asks and in whatever order: each gap is a hash of (key, k), not a shared RNG.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import threading


def uniform(key: str) -> float:
    """A uniform draw in [0, 1) that is a pure function of ``key``."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


class EventTimes:
    """Times after ``after`` with exponential gaps of mean ``every`` (``math.inf``: none ever).

    Times are rounded to microseconds and strictly increasing; they are drawn as far as asked.
    """

    def __init__(self, key: str, every: float, after: float = 0.0) -> None:
        if not every > 0:
            raise ValueError(f"the mean gap must be positive, not {every!r}")
        self.key = key
        self.every = every
        self._times: list[float] = []
        self._last = after
        self._lock = threading.Lock()

    def _draw_through(self, t: float) -> None:
        while self._last <= t:
            gap = -math.log(1.0 - uniform(f"{self.key}:{len(self._times)}")) * self.every
            self._last = round(self._last + max(gap, 1e-6), 6)
            self._times.append(self._last)

    def count_until(self, t: float) -> int:
        """How many events happened at or before ``t``."""
        if math.isinf(self.every):
            return 0
        with self._lock:
            self._draw_through(t)
            return bisect.bisect_right(self._times, t)

    def time(self, k: int) -> float:
        """The time of event ``k`` (0-based); ``math.inf`` when there are none."""
        if math.isinf(self.every):
            return math.inf
        with self._lock:
            while len(self._times) <= k:
                self._draw_through(self._last)
            return self._times[k]
