"""Retry delays for quick failures, and the flap guard that bounds starts per window."""

from __future__ import annotations

import random

import pytest

from asyncsup.config import Backoff
from asyncsup.supervisor.backoff import FlapGuard, backoff_delay


def test_delays_grow_by_the_multiplier_from_the_first_failure() -> None:
    policy = Backoff(initial=0.1, multiplier=2, max=10, jitter=0)
    assert [backoff_delay(policy, n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6])


def test_delays_are_capped_at_max() -> None:
    policy = Backoff(initial=1, multiplier=3, max=5, jitter=0)
    assert [backoff_delay(policy, n) for n in (1, 2, 3, 10, 1000)] == [1, 3, 5, 5, 5]


def test_huge_failure_counts_stay_at_max() -> None:
    """startretries = "inf" crash-looping at max = 60s reaches 1025 failures in ~17 hours;
    2.0 ** 1024 overflows a float, which must not take the supervisor down."""
    policy = Backoff(initial=1, multiplier=2, max=60, jitter=0)
    assert [backoff_delay(policy, n) for n in (1025, 1026, 100_000)] == [60, 60, 60]


def test_failure_zero_is_treated_as_the_first() -> None:
    policy = Backoff(initial=0.5, multiplier=2, max=10, jitter=0)
    assert backoff_delay(policy, 0) == backoff_delay(policy, 1) == 0.5


def test_multiplier_one_is_a_constant_delay() -> None:
    policy = Backoff(initial=2, multiplier=1, max=60, jitter=0)
    assert {backoff_delay(policy, n) for n in range(1, 50)} == {2}


def test_jitter_stays_within_its_fraction_and_varies() -> None:
    policy = Backoff(initial=1, multiplier=2, max=60, jitter=0.1)
    rng = random.Random(42)
    delays = [backoff_delay(policy, 3, rng) for _ in range(500)]
    assert all(3.6 <= d <= 4.4 for d in delays)
    assert max(delays) - min(delays) > 0.4  # spread, so a fleet does not retry in lockstep


def test_jitter_applies_around_the_cap_too() -> None:
    policy = Backoff(initial=1, multiplier=2, max=8, jitter=0.5)
    rng = random.Random(7)
    assert all(4 <= backoff_delay(policy, 20, rng) <= 12 for _ in range(200))


def test_flap_guard_allows_limit_starts_then_counts_the_excess() -> None:
    guard = FlapGuard(limit=5, window=10)
    excess = []
    for t in range(8):
        guard.record_start(float(t) / 10)
        excess.append(guard.excess(float(t) / 10))
    # after the 5th start in the window the next one must wait, and longer each time
    assert excess == [0, 0, 0, 0, 1, 2, 3, 4]


def test_flap_guard_forgets_starts_older_than_the_window() -> None:
    guard = FlapGuard(limit=3, window=10)
    for t in (0.0, 1.0, 2.0):
        guard.record_start(t)
    assert guard.excess(2.0) == 1
    assert guard.excess(10.5) == 0  # the start at 0.0 left the window
    assert guard.excess(100.0) == 0
    guard.record_start(100.0)
    assert guard.excess(100.0) == 0


def test_flap_guard_limit_one_backs_off_every_restart() -> None:
    guard = FlapGuard(limit=1, window=60)
    guard.record_start(0.0)
    assert guard.excess(0.0) == 1


def test_flap_guard_repr_says_its_state() -> None:
    guard = FlapGuard(limit=5, window=60)
    guard.record_start(0.0)
    assert repr(guard) == "<FlapGuard 1/5 starts in 60s>"
