"""What a consumer did: counters while it runs, and why it stopped."""

from __future__ import annotations

from dataclasses import dataclass


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
