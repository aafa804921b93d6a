"""Retry policy arithmetic and decisions, and limits, without any queue."""

from __future__ import annotations

import random

import pytest

from asyncsup.config import RetryPolicy
from asyncsup.consumer.limits import Limits, rss_bytes
from asyncsup.consumer.retry import decide, failure_headers, retry_delay
from asyncsup.errors import DecodeError, NoHandler, Reject, Retry

POLICY = RetryPolicy(max_retries=3, delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.0)


def test_delays_grow_by_the_multiplier_and_are_capped() -> None:
    assert [retry_delay(POLICY, a) for a in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    uncapped = RetryPolicy(delay=0.5, multiplier=3.0, max_delay=0.0, jitter=0.0)
    assert retry_delay(uncapped, 4) == 13.5


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_jitter_stays_within_its_bounds_and_spreads(attempt: int) -> None:
    policy = RetryPolicy(max_retries=3, delay=1.0, multiplier=2.0, max_delay=0.0, jitter=0.1)
    base = 2.0 ** (attempt - 1)
    rng = random.Random(attempt)
    delays = [retry_delay(policy, attempt, rng.random) for _ in range(2000)]
    assert all(base * 0.9 <= d <= base * 1.1 for d in delays)
    assert min(delays) < base * 0.92 and max(delays) > base * 1.08  # it does spread
    assert retry_delay(policy, attempt, lambda: 0.0) == pytest.approx(base * 0.9)
    assert retry_delay(policy, attempt, lambda: 1.0) == pytest.approx(base * 1.1)


def test_jitter_never_exceeds_max_delay() -> None:
    policy = RetryPolicy(delay=10.0, multiplier=1.0, max_delay=10.0, jitter=0.5)
    assert retry_delay(policy, 1, lambda: 1.0) == 10.0


def test_decide_retries_until_max_retries_then_fails() -> None:
    exc = ValueError("x")
    verdicts = [decide(POLICY, attempt, exc) for attempt in (1, 2, 3, 4)]
    assert [v.action for v in verdicts] == ["retry", "retry", "retry", "fail"]
    assert verdicts[-1].reason == "ValueError: x (gave up after 4 attempts)"
    assert "retry in 1s" in repr(verdicts[0])


def test_retry_outcome_uses_its_own_delay_but_obeys_max_retries() -> None:
    assert decide(POLICY, 1, Retry(after=42)).delay == 42
    assert decide(POLICY, 1, Retry()).delay == 1.0
    assert decide(POLICY, 4, Retry(after=1)).action == "fail"


@pytest.mark.parametrize("exc", [Reject("no"), DecodeError("bad"), NoHandler("T", ["A"])])
def test_reject_and_message_errors_are_never_retried(exc: Exception) -> None:
    assert decide(POLICY, 1, exc).action == "fail"


def test_failure_headers_carry_the_facts() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        headers = failure_headers(exc, "KeyError: 'missing'", attempts=4, origin="high")
    assert headers["error_type"] == "KeyError" and headers["attempts"] == 4 and headers["origin"] == "high"
    assert "raise KeyError" in headers["traceback"]
    long = failure_headers(ValueError("x" * 100_000), "y" * 5000, attempts=1, origin="q")
    assert len(long["error"]) <= 1000


def test_limits_say_why() -> None:
    limits = Limits(messages=10, failures=2, memory=100 * 2**20)
    assert limits.exceeded(settled=9, failures=0) is None
    assert limits.exceeded(settled=10, failures=0) == "message limit of 10 reached"
    assert limits.exceeded(settled=1, failures=2) == "failure limit of 2 reached"
    assert "memory limit reached" in (limits.exceeded(settled=0, failures=0, rss=200 * 2**20) or "")
    assert Limits().exceeded(settled=10**9, failures=10**9, rss=10**12) is None
    assert "100 MiB RSS" in repr(limits)


def test_rss_is_plausible() -> None:
    assert 5 * 2**20 < rss_bytes() < 4 * 2**30
