"""One retry policy for every loop that waits and tries again.

Three loops retry: an HTTP request (a few attempts within seconds), a job's own polling schedule
(backing off for hours after repeated failures) and a database transaction that met a concurrent
writer (a few attempts within milliseconds). They differ only in their numbers, so they share one
object whose rules are tested once: exponential growth from ``base`` up to ``cap``, a bound on
attempts, jitter, and a server's ``Retry-After`` honoured as a floor up to its own cap (a server
must not be able to park a worker or a job for ever: urllib3#1338).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

# 2 ** 60 times any base passes every cap: growing the exponent further only risks overflow
_MAX_EXPONENT = 60


@dataclass(frozen=True)
class RetryPolicy:
    """Delays before retry 0, 1, 2, … (the wait after the first, second, … failure).

    ``jitter`` spreads each delay uniformly over ``±jitter`` of itself, so jobs that failed
    together do not come back together; ``full_jitter`` draws from ``[0, delay]`` instead (the
    classic choice for requests, where a burst of clients should spread out as widely as
    possible). Jitter never takes a delay below the server's ``Retry-After``.
    """

    base: float
    cap: float
    max_attempts: int | None = None  # attempts in all, the first included; None: no bound
    jitter: float = 0.0
    full_jitter: bool = False
    retry_after_cap: float | None = None  # None: Retry-After is not a floor at all

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0:
            raise ValueError("a retry policy's base and cap must not be negative")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("a retry policy allows at least one attempt")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("jitter is a fraction of the delay, between 0 and 1")

    def allows(self, attempts_made: int) -> bool:
        """Whether another attempt may follow ``attempts_made`` failed ones."""
        return self.max_attempts is None or attempts_made < self.max_attempts

    def backoff(self, retry: int) -> float:
        """The delay before retry ``retry`` (0-based), before jitter: ``base · 2^retry``, capped."""
        return min(self.cap, self.base * 2.0 ** min(max(retry, 0), _MAX_EXPONENT))

    def delay(
        self,
        retry: int,
        *,
        retry_after: float | None = None,
        draw: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """Seconds to wait before retry ``retry``, jittered, never below a (capped) Retry-After.

        ``draw(low, high)`` picks the jittered value (``random.uniform``; a test pins it)."""
        wait = self.backoff(retry)
        if self.full_jitter:
            wait = draw(0.0, wait)
        elif self.jitter:
            spread = wait * self.jitter
            wait = draw(wait - spread, wait + spread)
        if retry_after is not None and self.retry_after_cap is not None and retry_after > 0:
            wait = max(wait, min(retry_after, self.retry_after_cap))
        return max(0.0, wait)


# A transaction that met a concurrent writer (a deadlock, a lock timeout, another worker's first
# archive of the same job): run again at once-ish, a few times, before giving the job up.
DATABASE_CONFLICTS = RetryPolicy(base=0.01, cap=0.2, max_attempts=4, jitter=0.5)
