"""The one retry policy: growth, caps, bounds, jitter and Retry-After, with the draw pinned."""

from __future__ import annotations

import pytest

from archiver.config import Settings
from archiver.retry import DATABASE_CONFLICTS, RetryPolicy


def low(lo: float, hi: float) -> float:
    return lo


def high(lo: float, hi: float) -> float:
    return hi


@pytest.mark.parametrize(
    ("retry", "expected"), [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (10_000, 5.0)]
)
def test_backoff_doubles_from_the_base_up_to_the_cap(retry: int, expected: float) -> None:
    assert RetryPolicy(base=0.5, cap=5.0).backoff(retry) == expected


def test_attempts_are_bounded_or_explicitly_unbounded() -> None:
    bounded = RetryPolicy(base=1, cap=1, max_attempts=3)
    assert [bounded.allows(n) for n in range(5)] == [True, True, True, False, False]
    assert RetryPolicy(base=1, cap=1).allows(10**9)


def test_full_jitter_draws_between_zero_and_the_backoff() -> None:
    policy = RetryPolicy(base=1.0, cap=30.0, full_jitter=True)
    assert policy.delay(3, draw=low) == 0.0
    assert policy.delay(3, draw=high) == 8.0


def test_proportional_jitter_spreads_both_ways() -> None:
    policy = RetryPolicy(base=100.0, cap=10_000.0, jitter=0.1)
    assert policy.delay(1, draw=low) == pytest.approx(180.0)
    assert policy.delay(1, draw=high) == pytest.approx(220.0)


def test_retry_after_is_a_floor_that_jitter_never_undercuts() -> None:
    policy = RetryPolicy(base=1.0, cap=30.0, full_jitter=True, retry_after_cap=120.0)
    assert policy.delay(0, retry_after=7.5, draw=low) == 7.5
    assert policy.delay(5, retry_after=7.5, draw=high) == 30.0  # the backoff is longer still


def test_retry_after_is_capped_and_ignored_without_a_cap() -> None:
    capped = RetryPolicy(base=1.0, cap=30.0, retry_after_cap=120.0)
    assert capped.delay(0, retry_after=10**12) == 120.0
    assert RetryPolicy(base=1.0, cap=30.0).delay(0, retry_after=10**12) == 1.0
    assert capped.delay(0, retry_after=-5.0) == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base": -1, "cap": 1},
        {"base": 1, "cap": 1, "max_attempts": 0},
        {"base": 1, "cap": 1, "jitter": 2},
    ],
)
def test_nonsense_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


def test_the_http_policy_comes_from_the_settings() -> None:
    policy = Settings(max_retries=2, backoff_base=0.25, backoff_max=4.0).http_retry()
    assert (policy.max_attempts, policy.full_jitter, policy.retry_after_cap) == (3, True, 120.0)
    assert [policy.delay(n, draw=high) for n in range(6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]


def test_the_polling_policy_backs_off_from_the_interval_to_six_hours() -> None:
    policy = Settings(poll_interval=300.0, poll_jitter=0.0).polling_retry(300.0)
    assert policy.max_attempts is None
    assert [policy.delay(n) for n in (0, 1, 2, 10)] == [300.0, 600.0, 1200.0, 6 * 3600.0]


def test_database_conflicts_are_retried_a_few_times_within_a_second() -> None:
    waits = [DATABASE_CONFLICTS.delay(n, draw=high) for n in range(4)]
    assert DATABASE_CONFLICTS.max_attempts == 4
    assert sum(waits) < 1.0
