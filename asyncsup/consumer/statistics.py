"""What a consumer did: counters while it runs, and why it stopped."""

from __future__ import annotations

import bisect
from dataclasses import dataclass

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class TransportTotals:
    """Messages handled, failed and retried per transport name, kept across a consumer's restarts
    by whoever owns it (a counter per batch or per failure: nothing per handled message)."""

    KINDS = ("handled", "failed", "retried")

    def __init__(self) -> None:
        self.by_transport: dict[str, list[int]] = {}

    def __repr__(self) -> str:
        return f"<TransportTotals {self.by_transport}>"

    def add(self, transport: str, kind: int, count: int = 1) -> None:
        self.by_transport.setdefault(transport, [0, 0, 0])[kind] += count


class Durations:
    """How long handlers took (those that returned): a histogram, cheap enough for every message
    (one bisect), kept across a consumer's restarts by whoever owns it."""

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)  # per bucket, the last one is +Inf
        self.total = 0.0

    def __repr__(self) -> str:
        return f"<Durations {sum(self.counts)} handlers, {self.total:.3f}s in all>"

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.total += seconds

    def snapshot(self) -> tuple[int, float]:
        """(handlers observed, seconds in all): two snapshots give the mean in between."""
        return sum(self.counts), self.total

    def cumulative(self) -> list[int]:
        """Counts per upper bound, +Inf last, as Prometheus wants them."""
        out, running = [], 0
        for count in self.counts:
            running += count
            out.append(running)
        return out


@dataclass(frozen=True, slots=True)
class ConsumerStatistics:
    handled: int  # acked after the handler returned
    failed: int  # sent to the failure queue (or logged and dropped without one)
    retried: int  # requeued with a delay for another attempt
    released: int  # prefetched, never started, given back on drain
    running: int  # handlers running now
    buffered: int  # received, waiting for a free worker
    elapsed: float  # seconds since run() started

    @property
    def settled(self) -> int:
        return self.handled + self.failed + self.retried

    def __str__(self) -> str:
        rate = self.settled / self.elapsed if self.elapsed > 0 else 0.0
        return (
            f"{self.handled} handled, {self.failed} failed, {self.retried} retried, "
            f"{self.released} released in {self.elapsed:.1f}s ({rate:.0f} msg/s)"
        )


@dataclass(frozen=True, slots=True)
class WorkerResult:
    reason: str  # why it stopped, in words
    limit_reached: bool  # True: a limit (restart me); False: a shutdown
    statistics: ConsumerStatistics
