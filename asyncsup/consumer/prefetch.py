"""How many messages a consumer receives ahead of its workers when `prefetch = 0` (auto).

A fixed prefetch is wrong one way or the other: a batch the size of `concurrency` makes fast
handlers wait on a receive round trip per 16 messages (SQLite and Redis then spend more time on the
transaction or the round trip than on the messages: half the throughput), while a big batch held by
slow handlers keeps messages from other consumers and makes a new high-priority message wait behind
the whole batch. So auto sizes the batch by time: enough messages for about WINDOW seconds of work
at the speed handlers have been measured to run, never fewer than `concurrency` and never more than
MAX. A no-op handler gets MAX; handlers of 100 ms or more get `concurrency`. The intake receives
when a third of it is free (worker.py), so a receive usually takes a third of it.
"""

from __future__ import annotations

from asyncsup.consumer.statistics import Durations

WINDOW = 0.05  # seconds of work received ahead of the workers: the most a high message waits
MAX = 3000  # the intake receives a third of it at a time (worker.py), while the other two thirds
# keep the workers busy. Per-batch costs (transactions, round trips, wake-ups) still showed at
# receives of 500 (SQLite, no-op handler: 1,000 a receive measured ~8 % faster); 3,000 no-op
# messages are still well under WINDOW of work (~20 ms at 6 µs each).


class AutoPrefetch:
    """The prefetch for the next receive, from the handler durations seen since the last one."""

    def __init__(self, concurrency: int, durations: Durations) -> None:
        self._concurrency = concurrency
        self._durations = durations
        self._seen = durations.snapshot()
        self.prefetch = concurrency  # until handlers have been measured

    def __repr__(self) -> str:
        return f"<AutoPrefetch {self.prefetch} ahead of {self._concurrency} workers>"

    def update(self) -> int:
        """Re-measure when enough handlers returned since the last time; the prefetch to use."""
        count, total = self._durations.snapshot()
        seen_count, seen_total = self._seen
        if count - seen_count >= self._concurrency:  # fewer samples than workers: noise
            self._seen = (count, total)
            mean = (total - seen_total) / (count - seen_count)
            self.prefetch = prefetch_for(mean, self._concurrency)
        return self.prefetch


def prefetch_for(mean_duration: float, concurrency: int) -> int:
    """WINDOW seconds of work for `concurrency` workers whose handlers take `mean_duration`."""
    if mean_duration <= 0:
        return MAX
    ahead = int(WINDOW * concurrency / mean_duration)
    return max(concurrency, min(MAX, ahead))
