"""The Transport protocol every queue backend implements, and the Delivery it hands out.

At-least-once is a contract between the two: a received Delivery is leased (invisible to other
consumers) until it is acked, requeued or released, or until its lease runs out and it comes back.
Every method is a batch, because a round trip per message is what makes the peers slow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(slots=True)
class Delivery:
    """One received message: the envelope bytes plus what the transport needs to settle it."""

    receipt: str  # transport-specific handle (row id, stream entry id); stable while leased
    data: bytes  # the envelope, exactly as published
    deliveries: int  # how many times this message has been received, this time included
    queue: str  # the transport's queue name, for logs

    def __repr__(self) -> str:
        nth = "first delivery" if self.deliveries == 1 else f"delivery #{self.deliveries}"
        return f"<Delivery {self.receipt} on {self.queue}, {nth}, {len(self.data)} bytes>"


@dataclass(frozen=True, slots=True)
class QueueCounts:
    ready: int  # can be received now
    in_flight: int  # leased to a consumer
    delayed: int  # waiting for their time


@runtime_checkable
class Transport(Protocol):
    """A queue. Implementations: memory.py, sqlite.py (default), redis.py."""

    url: str
    queue: str

    async def publish(self, messages: Sequence[bytes], *, delay: float = 0.0) -> list[str]:
        """Store messages durably; they become receivable after `delay` seconds. Returns ids."""

    async def receive(self, max_count: int, *, lease: float, wait: float) -> list[Delivery]:
        """Lease up to max_count ready messages, oldest first; wait up to `wait` s for the first."""

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Done: remove them for good. Acking a delivery whose lease was lost is a no-op."""

    async def requeue(self, delivery: Delivery, data: bytes, *, delay: float) -> None:
        """Atomically replace the message's bytes and make it receivable again after `delay`."""

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give leased messages back at once, unchanged, as if never received (drain of prefetch)."""

    async def extend(self, deliveries: Sequence[Delivery], *, lease: float) -> None:
        """Push the lease of messages still being handled `lease` seconds into the future."""

    async def counts(self) -> QueueCounts:
        """How many messages are ready, in flight and delayed in this queue."""

    async def browse(self, limit: int, offset: int = 0) -> list[Delivery]:
        """Look at messages without leasing them (for `asyncsup failed show`)."""

    async def remove(self, receipts: Sequence[str]) -> int:
        """Delete messages by receipt whatever their state; returns how many were removed."""

    async def close(self) -> None:
        """Release connections and threads; idempotent."""
