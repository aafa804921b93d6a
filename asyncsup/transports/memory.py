"""memory:// — a process-local queue with the semantics of the durable ones, for tests and demos.

Queues live in a ``MemoryBroker``: transports opened with the same queue name on one broker share
the queue. ``open_transport(url, memory=broker)`` uses that broker; without one, the transport uses
the default broker of the event loop it first runs in (made on first use, dropped with the loop), so
tests in fresh loops never see each other's messages. A broker belongs to one event loop: nothing
here is thread-safe, and nothing is durable.

The semantics are sqlite.py's: a lease hides a message until ``now + lease`` and its expiry brings it
back with the delivery counted; lease tokens make a stale ack a no-op; a delayed message becomes ready
at its time; ``release`` puts a message back at its place without counting the delivery. Receivers
wait on an event per queue (set by publish, requeue, release) and wake by themselves at the next due
time (a delayed message, or a lease running out): there is no polling.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult

import anyio
from anyio.lowlevel import checkpoint

from asyncsup.errors import TransportClosed, TransportError
from asyncsup.transports.base import (
    DEFAULT_QUEUE,
    Delivery,
    LoopLocal,
    QueueCounts,
    lease_receipt,
    leased,
    parse_receipt,
    url_options,
)


@dataclass(eq=False, slots=True)
class _Lease:
    """One receive's lease on a batch; kept in a heap so its expiry brings the batch back."""

    until: float
    token: int
    ids: list[int] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Message:
    id: int
    data: bytes
    created_at: float
    available_at: float  # ready when <= now; while leased, the lease's end
    deliveries: int = 0
    lease: _Lease | None = None  # the current (possibly expired) lease; None when never/no longer
    version: int = 0  # bumped on every move, so that stale heap entries are recognised and skipped


class _Queue:
    """One named queue: messages by id, a heap of not-leased ones by time, a heap of leases."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.messages: dict[int, _Message] = {}  # in id order: publish order
        self._waiting: list[tuple[float, int, int]] = []  # (available_at, id, version)
        self._leases: list[tuple[float, int, _Lease]] = []  # (until, serial, lease)
        self._changed: anyio.Event | None = None
        self._ids = itertools.count(1)
        self._serial = itertools.count(1)  # lease tokens, and tie-breakers in the lease heap

    def add(self, datas: Sequence[bytes], now: float, at: float) -> list[int]:
        ids = []
        for data in datas:
            message = _Message(next(self._ids), bytes(data), now, at)
            self.messages[message.id] = message
            heapq.heappush(self._waiting, (at, message.id, 0))
            ids.append(message.id)
        return ids

    def claim(self, max_count: int, now: float, lease_for: float) -> list[Delivery]:
        """Lease up to max_count ready messages, oldest first."""
        self._expire(now)
        lease = _Lease(now + lease_for, next(self._serial))
        waiting, messages = self._waiting, self.messages
        out: list[Delivery] = []
        suffix = lease_receipt(0, lease.token)[1:]  # ":<token>", formatted once per batch
        while waiting and len(out) < max_count and waiting[0][0] <= now:
            _, message_id, version = heapq.heappop(waiting)
            message = messages.get(message_id)
            if message is None or message.version != version:
                continue  # removed or moved since this entry was pushed
            message.version += 1
            message.available_at = lease.until
            message.lease = lease
            message.deliveries += 1
            lease.ids.append(message_id)
            out.append(Delivery(f"{message_id}{suffix}", message.data, message.deliveries, self.name))
        if lease.ids:
            heapq.heappush(self._leases, (lease.until, next(self._serial), lease))
        return out

    def _expire(self, now: float) -> None:
        """Leases that ran out: their messages are ready again, from the lease's end."""
        while self._leases and self._leases[0][0] <= now:
            until, _, lease = heapq.heappop(self._leases)
            for message_id in lease.ids:
                message = self.messages.get(message_id)
                if message is not None and message.lease is lease:
                    heapq.heappush(self._waiting, (until, message_id, message.version))

    def holding(self, pairs: list[tuple[int, int]]) -> list[_Message]:
        """The messages whose current lease has these tokens (others were lost or settled)."""
        found = []
        for message_id, token in pairs:
            message = self.messages.get(message_id)
            if message is not None and message.lease is not None and message.lease.token == token:
                found.append(message)
        return found

    def put_back(self, message: _Message, at: float) -> None:
        """Out of its lease, ready at `at` (re-sorted by that time)."""
        message.lease = None
        message.version += 1
        message.available_at = at
        heapq.heappush(self._waiting, (at, message.id, message.version))

    def extend(self, found: list[_Message], until: float) -> None:
        """New lease ends; each message keeps its token, so its receipt stays valid."""
        by_token: dict[int, _Lease] = {}
        for message in found:
            assert message.lease is not None
            token = message.lease.token
            lease = by_token.get(token) or by_token.setdefault(token, _Lease(until, token))
            lease.ids.append(message.id)
            message.lease = lease  # its old lease's heap entry no longer brings it back
            message.version += 1  # nor does an entry left by that lease's expiry
            message.available_at = until
        for lease in by_token.values():
            heapq.heappush(self._leases, (until, next(self._serial), lease))

    def next_due(self) -> float:
        """When the next delayed message or lease end is due (may be early: stale entries)."""
        first = self._waiting[0][0] if self._waiting else math.inf
        return min(first, self._leases[0][0] if self._leases else math.inf)

    def counts(self, now: float) -> QueueCounts:
        ready = in_flight = delayed = 0
        for message in self.messages.values():
            if message.available_at <= now:
                ready += 1
            elif message.lease is not None:
                in_flight += 1
            else:
                delayed += 1
        return QueueCounts(ready=ready, in_flight=in_flight, delayed=delayed)

    def changed(self) -> anyio.Event:
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    def notify(self) -> None:
        """Wake the receivers waiting on this queue: something may be ready, or due sooner."""
        event, self._changed = self._changed, None
        if event is not None:
            event.set()


class MemoryBroker:
    """The in-process queues that memory:// transports share, by name. One per event loop."""

    def __init__(self) -> None:
        self._queues: dict[str, _Queue] = {}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{n}: {len(q.messages)}" for n, q in sorted(self._queues.items()))
        return f"<MemoryBroker, queues held: {sizes or 'none'}>"

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue(name)
        return queue


_default_brokers = LoopLocal(MemoryBroker)


class MemoryTransport:
    """A queue in this process's memory: the Transport contract without durability."""

    def __init__(self, url: str, queue: str, broker: MemoryBroker | None = None) -> None:
        self.url = url
        self.queue = queue
        self._broker = broker
        self._q: _Queue | None = None
        self._closed = False

    def __repr__(self) -> str:
        if self._closed:
            return f"<MemoryTransport {self.url} closed>"
        held = len(self._q.messages) if self._q is not None else 0
        return f"<MemoryTransport {self.url} open, {held} messages held>"

    def _open(self) -> _Queue:
        if self._closed:
            raise TransportClosed(self.url)
        if self._q is None:
            broker = self._broker if self._broker is not None else _default_brokers.get()
            self._q = broker._queue(self.queue)
        return self._q

    async def publish(self, messages: Sequence[bytes], *, delay: float = 0.0) -> list[str]:
        await checkpoint()
        q = self._open()
        now = time.monotonic()
        ids = q.add(messages, now, now + max(delay, 0.0))
        q.notify()
        return [str(i) for i in ids]

    async def receive(self, max_count: int, *, lease: float, wait: float) -> list[Delivery]:
        if max_count < 1:
            raise ValueError(f"max_count must be >= 1, got {max_count}")
        await checkpoint()  # cancellation lands here or in the wait, never after a claim
        deadline = time.monotonic() + wait
        while True:
            q, now = self._open(), time.monotonic()
            got = q.claim(max_count, now, lease)
            if got or now >= deadline:
                return got
            changed = q.changed()
            with anyio.move_on_after(min(deadline, q.next_due()) - now):
                await changed.wait()

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await checkpoint()
        q = self._open()
        for message in q.holding(leased(deliveries)):
            del q.messages[message.id]

    async def requeue(self, delivery: Delivery, data: bytes, *, delay: float) -> None:
        await checkpoint()
        q = self._open()
        for message in q.holding(leased([delivery])):
            message.data = bytes(data)
            q.put_back(message, time.monotonic() + max(delay, 0.0))
        q.notify()

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        await checkpoint()
        q = self._open()
        now = time.monotonic()
        for message in q.holding(leased(deliveries)):
            message.deliveries -= 1  # as if never received: a drain does not burn an attempt
            q.put_back(message, min(message.created_at, now))
        q.notify()

    async def extend(self, deliveries: Sequence[Delivery], *, lease: float) -> None:
        await checkpoint()
        q = self._open()
        q.extend(q.holding(leased(deliveries)), time.monotonic() + lease)

    async def counts(self) -> QueueCounts:
        await checkpoint()
        return self._open().counts(time.monotonic())

    async def browse(self, limit: int, offset: int = 0, *, after: str | None = None) -> list[Delivery]:
        await checkpoint()
        q = self._open()
        messages: Iterable[_Message] = q.messages.values()
        if after is not None:  # ids grow in publish order, which is the dict's order
            last = parse_receipt(after)[0]
            messages, offset = itertools.dropwhile(lambda m: m.id <= last, messages), 0
        window = itertools.islice(messages, offset, offset + limit)
        return [Delivery(str(m.id), m.data, m.deliveries, self.queue) for m in window]

    async def remove(self, receipts: Sequence[str]) -> int:
        await checkpoint()
        q = self._open()
        removed = 0
        for receipt in receipts:
            message_id, _ = parse_receipt(receipt)
            removed += q.messages.pop(message_id, None) is not None
        return removed

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._q is not None:
                self._q.notify()  # receivers waiting on this transport find it closed


def open_memory(url: str, parts: SplitResult, *, broker: MemoryBroker | None) -> MemoryTransport:
    """memory://NAME or memory://?queue=NAME (not both, unless they agree)."""
    options = url_options(url, parts, ("queue",))
    named, asked = parts.netloc, options.get("queue")
    if named and asked and named != asked:
        raise TransportError(f"{url}: two queue names, {named!r} and {asked!r}")
    if parts.path not in ("", "/"):
        raise TransportError(f"{url}: memory:// takes a queue name, not a path")
    return MemoryTransport(url, named or asked or DEFAULT_QUEUE, broker)
