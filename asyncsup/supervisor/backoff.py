"""When to start a process again: exponential backoff for quick failures, a flap limit for all starts."""

from __future__ import annotations

import bisect
import random

from ..config import Backoff


def backoff_delay(policy: Backoff, failures: int, rng: random.Random | None = None) -> float:
    """Delay before retry number `failures` (1-based): initial * multiplier**(n-1), capped, jittered."""
    try:
        base = min(policy.max, policy.initial * policy.multiplier ** max(0, failures - 1))
    except OverflowError:  # ~1025 failures at x2: startretries = "inf" gets there in a day
        base = policy.max
    spread = base * policy.jitter
    return max(0.0, base + (rng or random).uniform(-spread, spread))


class FlapGuard:
    """Counts starts in a sliding window, whatever state they came from.

    supervisord only backs off failures that happen before `startsecs`; a program that exits right
    after (or any program with startsecs = 0) is respawned hundreds of times a second. Counting every
    start closes that gap: past `limit` starts per `window`, the next start waits like a failure.
    """

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._starts: list[float] = []  # a deque costs ~760 bytes per child even when empty

    def __repr__(self) -> str:
        return f"<FlapGuard {len(self._starts)}/{self.limit} starts in {self.window:g}s>"

    def record_start(self, now: float) -> None:
        self._starts.append(now)
        self._forget_before(now - self.window)

    def excess(self, now: float) -> int:
        """How many starts over the limit the window holds (0 = free to start at once)."""
        self._forget_before(now - self.window)
        return max(0, len(self._starts) - self.limit + 1)

    def _forget_before(self, cutoff: float) -> None:
        del self._starts[: bisect.bisect_left(self._starts, cutoff)]
