"""The recent output of one process stream, kept for `asyncsup ctl tail` and followed by `tail -f`.

Fed by PipeRelay with each raw chunk the child wrote (before framing): one bytearray append per chunk
and, once the buffer holds twice its capacity, one cut of its front. CPython deletes from the front of
a bytearray by moving its start, so the cost per byte stays about one copy and the relay keeps its
speed. Memory is bounded: at most 2 x capacity per stream that ever printed anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

TAIL_BYTES = 64 * 1024  # per stream of each process; about 800 lines of 80 characters
FOLLOW_BYTES = 256 * 1024  # pending for one slow `tail -f` reader before we drop its oldest bytes


class Follower:
    """One `tail -f` reader: chunks pile up (bounded) until it takes them."""

    def __init__(self, limit: int = FOLLOW_BYTES) -> None:
        self.limit = limit
        self._pending = bytearray()
        self._lost = 0
        self._arrived = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Follower {len(self._pending)} bytes pending, {self._lost} lost>"

    def push(self, data: bytes) -> None:
        self._pending += data
        excess = len(self._pending) - self.limit
        if excess > 0:  # a reader slower than the child: drop the oldest, say how much
            del self._pending[:excess]
            self._lost += excess
        self._arrived.set()

    async def receive(self) -> tuple[bytes, int]:
        """The bytes written since the last call (waiting for some), and how many were dropped."""
        await self._arrived.wait()
        self._arrived.clear()
        data, lost = bytes(self._pending), self._lost
        self._pending.clear()
        self._lost = 0
        return data, lost


class OutputTail:
    """A ring buffer of the last `capacity` bytes of one stream, and its live followers."""

    def __init__(self, capacity: int = TAIL_BYTES) -> None:
        self.capacity = capacity
        self.total = 0  # bytes ever fed
        self._buffer = bytearray()
        self._followers: list[Follower] = []

    def __repr__(self) -> str:
        kept = min(len(self._buffer), self.capacity)
        return f"<OutputTail {kept} of {self.total} bytes kept, {len(self._followers)} following>"

    def feed(self, data: bytes) -> None:
        buffer = self._buffer
        self.total += len(data)
        if len(data) >= self.capacity:  # a big chunk: keep only its end, copy nothing else
            buffer[:] = memoryview(data)[-self.capacity :]
        else:
            buffer += data
            if len(buffer) > 2 * self.capacity:
                del buffer[: len(buffer) - self.capacity]
        for follower in self._followers:
            follower.push(data)

    def lines(self, count: int) -> bytes:
        """The last `count` lines kept (the last one may still lack its newline)."""
        data = bytes(self._buffer[-self.capacity :])
        if self.total > len(data):  # the front was cut: drop the partial first line
            data = data[data.find(b"\n") + 1 :]
        if count <= 0:
            return b""
        cut = len(data) - 1 if data.endswith(b"\n") else len(data)
        for _ in range(count):
            cut = data.rfind(b"\n", 0, cut)
            if cut < 0:
                return data
        return data[cut + 1 :]

    @contextlib.contextmanager
    def follow(self) -> Iterator[Follower]:
        """A follower that receives everything fed from now on, until the block ends."""
        follower = Follower()
        self._followers.append(follower)
        try:
            yield follower
        finally:
            self._followers.remove(follower)
