"""When a consumer should stop by itself and be restarted: messages, time, memory, failures.

Like messenger:consume's --limit/--time-limit/--memory-limit/--failure-limit, a limit never cuts a
running handler: it stops intake, the consumer drains and stops, and whoever runs it restarts it
(`asyncsup consume` exits 0 for its supervisor; inline consumers restart in-process).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

from asyncsup.config import Consumer

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class Limits:
    """0 means no limit, for each of them."""

    messages: int = 0  # settled messages: handled + failed + retried
    time: float = 0.0  # seconds since start
    memory: int = 0  # bytes of resident memory
    failures: int = 0  # handler failures, whether retried or sent to the failure queue

    @classmethod
    def of(cls, consumer: Consumer) -> Limits:
        return cls(consumer.limit, consumer.time_limit, consumer.memory_limit, consumer.failure_limit)

    def __repr__(self) -> str:
        parts = [
            f"{self.messages} messages" if self.messages else "",
            f"{self.time:g}s" if self.time else "",
            f"{self.memory // 2**20} MiB RSS" if self.memory else "",
            f"{self.failures} failures" if self.failures else "",
        ]
        return f"<Limits {', '.join(p for p in parts if p) or 'none'}>"

    def exceeded(self, *, settled: int, failures: int, rss: int | None = None) -> str | None:
        """The reason to stop, in words, or None. `rss` is checked only when given."""
        if self.messages and settled >= self.messages:
            return f"message limit of {self.messages} reached"
        if self.failures and failures >= self.failures:
            return f"failure limit of {self.failures} reached"
        if self.memory and rss is not None and rss >= self.memory:
            return (
                f"memory limit reached: RSS {rss / 2**20:.0f} MiB >= {self.memory / 2**20:.0f} MiB"
            )
        return None


def rss_bytes() -> int:
    """This process's resident memory now (Linux /proc/self/statm; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
