"""The request-rate limit, on an injected clock: spacing over many acquisitions, 0 as unlimited,
the total across threads, and no burst credit after an idle spell. Nothing sleeps for real."""

from __future__ import annotations

import threading

import pytest

from archiver.api.ratelimit import RateLimiter


class FakeTime:
    """A clock that only ``sleep`` moves, shared by every thread; each sleep is recorded."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def clock(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self.now += seconds


def limiter(rate: float, fake: FakeTime) -> RateLimiter:
    return RateLimiter(rate, clock=fake.clock, sleep=fake.sleep)


@pytest.mark.parametrize("rate", [1.0, 4.0, 50.0])
def test_many_acquisitions_keep_the_rate(rate: float) -> None:
    """N acquisitions take (N - 1) / rate seconds of the clock: the first is free, each later one
    waits exactly one interval (calls arrive back to back)."""
    fake = FakeTime()
    limit = limiter(rate, fake)
    for _ in range(200):
        limit.acquire()
    assert fake.now - 1000.0 == pytest.approx(199 / rate)
    assert len(fake.sleeps) == 199
    assert all(s == pytest.approx(1 / rate) for s in fake.sleeps)


@pytest.mark.parametrize("rate", [0, 0.0, -1.0])
def test_zero_or_negative_means_unlimited(rate: float) -> None:
    fake = FakeTime()
    limit = limiter(rate, fake)
    for _ in range(1000):
        limit.acquire()
    assert limit.interval == 0.0
    assert fake.sleeps == [] and fake.now == 1000.0


def test_slow_callers_do_not_wait() -> None:
    """Calls already an interval apart go straight through."""
    fake = FakeTime()
    limit = limiter(2.0, fake)
    for _ in range(10):
        limit.acquire()
        fake.now += 0.5  # the caller's own work takes a whole interval
    assert fake.sleeps == []


def test_no_burst_after_an_idle_spell() -> None:
    """Idle time earns no credit: after a minute of silence, the second of two back-to-back calls
    still waits a full interval (the limiter spaces calls, it is not a token bucket)."""
    fake = FakeTime()
    limit = limiter(10.0, fake)
    limit.acquire()
    fake.now += 60.0
    limit.acquire()  # the first after the pause: free
    limit.acquire()
    limit.acquire()
    assert fake.sleeps == [pytest.approx(0.1), pytest.approx(0.1)]


def test_threads_share_one_budget() -> None:
    """8 threads, 25 acquisitions each, at one frozen instant: each call reserves its own slot, so
    the waits are exactly 0, 1/rate ... 199/rate whatever the interleaving; a lost update
    between threads would hand out a slot twice."""
    frozen = 1000.0
    waits: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            waits.append(seconds)

    limit = RateLimiter(20.0, clock=lambda: frozen, sleep=sleep)
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(25):
            limit.acquire()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not any(t.is_alive() for t in threads)
    assert len(waits) == 199  # the first call of all is free
    assert sorted(round(w * 20) for w in waits) == list(range(1, 200))
