"""The loop-lag watchdog: how late a periodic timer fires is how long the loop was busy elsewhere.

Everything asyncsup does (relaying output, restarting children, answering probes, running inline
handlers) shares one event loop, so code that blocks it (a sync call in a handler, a slow disk) delays
all of it. The watchdog says when, how long and where: a thread that expects the loop's beat looks at
the loop thread's stack when the beat is late, so the warning names the function that held the loop
(`in slow_handler (app/handlers.py:12)`). /metrics exports a histogram so an alert can fire on it.
Cost: one timer every `interval`, and one wake-up of the watching thread per beat.
"""

from __future__ import annotations

import bisect
import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import anyio

log = logging.getLogger("asyncsup.control")

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class LagStatistics:
    last: float  # seconds, the latest measurement
    max: float  # seconds, the worst since start
    count: int
    total: float  # sum of every measurement, seconds
    buckets: tuple[int, ...]  # cumulative counts per BUCKETS upper bound (Prometheus histogram)
    blocked: int  # measurements above the warning threshold


class LoopLag:
    # One wake-up a second, like supervisord's tick: at 0.5 s the watchdog alone made an idle
    # asyncsup use as much CPU as supervisord (benchmarks/). A block as long as the interval is
    # always seen; a shorter one when it spans a tick, which repeated blocks eventually do.
    def __init__(self, interval: float = 1.0, threshold: float = 0.25) -> None:
        self.interval = interval
        self.threshold = threshold
        self._last = 0.0
        self._max = 0.0
        self._count = 0
        self._total = 0.0
        self._counts = [0] * len(BUCKETS)  # per bucket, not cumulative
        self._blocked = 0
        self._beat = threading.Event()  # set by the loop at every tick, awaited by the watcher
        self._culprit: str | None = None  # where the loop thread was while it was late
        self._running = False
        self._checks: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        last, worst = self._last * 1000, self._max * 1000
        return f"<LoopLag last {last:.1f}ms, max {worst:.1f}ms, {self._blocked} times blocked>"

    def on_beat(self, check: Callable[[], None]) -> None:
        """Call `check()` on the loop at every beat: for cheap checks of state that has no event."""
        self._checks.append(check)

    async def run(self) -> None:
        self._running = True
        watcher = threading.Thread(
            target=self._watch, args=(threading.get_ident(),), name="asyncsup-lag-watch", daemon=True
        )
        watcher.start()
        try:
            while True:
                start = anyio.current_time()
                await anyio.sleep(self.interval)
                self._beat.set()
                self.record(max(0.0, anyio.current_time() - start - self.interval))
                for check in self._checks:
                    check()
        finally:
            self._running = False
            self._beat.set()

    def _watch(self, loop_thread: int) -> None:
        """On its own thread: when a beat is `threshold` late, note where the loop thread is."""
        while self._running:
            if not self._beat.wait(self.interval + self.threshold):
                self._culprit = where(loop_thread)
                self._beat.wait()  # until the loop is back; record() logs the culprit
            self._beat.clear()

    def record(self, lag: float) -> None:
        self._last = lag
        self._max = max(self._max, lag)
        self._count += 1
        self._total += lag
        index = bisect.bisect_left(BUCKETS, lag)
        if index < len(BUCKETS):
            self._counts[index] += 1
        culprit, self._culprit = self._culprit, None
        if lag > self.threshold:
            self._blocked += 1
            log.warning(
                "the event loop was blocked for %.2fs (a timer fired that late)%s: something ran "
                "without awaiting; output relay, restarts and probes all waited for it",
                lag, f" in {culprit}" if culprit else "",
            )

    def statistics(self) -> LagStatistics:
        cumulative, running = [], 0
        for count in self._counts:
            running += count
            cumulative.append(running)
        return LagStatistics(
            self._last, self._max, self._count, self._total, tuple(cumulative), self._blocked
        )


def where(thread_id: int, depth: int = 3) -> str | None:
    """The innermost frames of a thread's stack: `slow (app/handlers.py:12) <- run (...)`."""
    frame = sys._current_frames().get(thread_id)
    parts: list[str] = []
    while frame is not None and len(parts) < depth:
        code = frame.f_code
        parts.append(f"{code.co_name} ({_short(code.co_filename)}:{frame.f_lineno})")
        frame = frame.f_back
    return " <- ".join(parts) or None


def _short(path: str) -> str:
    """A path relative to the working directory when under it, else as it is."""
    try:
        relative = os.path.relpath(path)
    except ValueError:
        return path
    return path if relative.startswith("..") else relative
