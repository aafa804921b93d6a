"""sqlite:// — the embedded, durable default queue (stdlib sqlite3, WAL) for one machine.

``sqlite:///relative/path.db`` (relative to the current directory) or ``sqlite:////abs/path.db``,
with options:

- ``queue=NAME``: default "default"; any number of queues share one file (one table).
- ``synchronous=normal|full``: default normal; what a commit survives is in _sqlite_store.py
  (normal: any process crash; full: also a power loss).
- ``busy_timeout=SECONDS``: how long a write waits for another process's write lock (default 10).
  Several processes (several ``asyncsup consume``) can share one file: writes are short batches.
- ``poll=SECONDS``: how often an idle receiver re-checks for messages that *other processes* wrote
  (default 0.05). SQLite has no cross-process notification, so this is the pick-up latency of a
  message published by another process; the re-check is one indexed read, with no lock taken.

Threads: every statement runs on the one thread that owns this transport's connection (a
one-thread executor), so the event loop never waits for the disk or another process's lock, and
each call is one hop to that thread. Every call is a batch; the hop is paid per batch. A claim
comes back packed (one SQLite step per statement, the deliveries made on the loop: see Batch in
_sqlite_store.py), so the thread needs the GIL only a few times per batch; in a process that
consumes, ``hand_over_gil_promptly()`` (consumer/commands.py) makes those few times cheap, and the
thread claims and acks while the loop handles messages.

Waiting: within a process, a publish, requeue or release wakes the receivers of the same file and
queue at once (an event per (file, queue) and event loop); a receiver also wakes by itself when the
next delayed message or lease end is due, and every ``poll`` seconds for other processes.

Cancellation: a receive cancelled while its claim runs on the thread gives the claimed rows back
(released, on the same thread, right after the claim): no message stays hidden for a lease because
its receiver was cancelled. A claim cancelled before it started never runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import SplitResult, unquote

import anyio

from asyncsup.errors import TransportClosed, TransportError
from asyncsup.transports._sqlite_store import Claimed, Store
from asyncsup.transports.base import (
    DEFAULT_QUEUE,
    Delivery,
    LoopLocal,
    QueueCounts,
    leased,
    leases_by_token,
    parse_receipt,
    seconds_option,
    url_options,
)

T = TypeVar("T")
Key = tuple[str, str]  # (real path of the file, queue)


class _Doorbells:
    """In-process wake-ups: writing to (file, queue) rings; its receivers wake at once."""

    def __init__(self) -> None:
        self._events: dict[Key, anyio.Event] = {}

    def event(self, key: Key) -> anyio.Event:
        """Take this before looking for messages: a ring after that sets it."""
        event = self._events.get(key)
        if event is None:
            event = self._events[key] = anyio.Event()
        return event

    def ring(self, key: Key) -> None:
        event = self._events.pop(key, None)
        if event is not None:
            event.set()


_doorbells = LoopLocal(_Doorbells)


@dataclass(frozen=True, slots=True)
class SqliteStatistics:
    given_back: int  # messages claimed for receives cancelled meanwhile, then released at once


class SqliteTransport:
    """A queue in a SQLite file, shared by every process on the machine that opens the file."""

    def __init__(
        self,
        url: str,
        path: str,
        queue: str = DEFAULT_QUEUE,
        *,
        synchronous: str = "NORMAL",
        busy_timeout: float = 10.0,
        poll: float = 0.05,
    ) -> None:
        self.url = url
        self.queue = queue
        self.path = path
        self._poll = poll
        self._key = (os.path.realpath(path), queue)
        self._store = Store(path, synchronous=synchronous, busy_timeout=busy_timeout)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"asyncsup-sqlite-{queue}")
        self._closed = False
        self._given_back = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SqliteTransport queue {self.queue!r} in {self.path}, {state}>"

    def statistics(self) -> SqliteStatistics:
        return SqliteStatistics(given_back=self._given_back)

    # --- the hop to the connection's thread ------------------------------------------------------

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        if self._closed:
            raise TransportClosed(self.url)
        return self._thread.submit(self._mapped, fn, *args)

    def _mapped(self, fn: Callable[..., T], *args: Any) -> T:
        """On the thread: the one place where driver errors become TransportError."""
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            raise TransportError(f"{self.url}: {exc}") from exc

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._submit(fn, *args))

    def _ring(self) -> None:
        _doorbells.get().ring(self._key)

    # --- the Transport protocol -----------------------------------------------------------------

    async def publish(self, messages: Sequence[bytes], *, delay: float = 0.0) -> list[str]:
        ids = await self._call(self._store.publish, self.queue, list(messages), delay)
        self._ring()  # also when delayed: a waiting receiver may now have an earlier due time
        return [str(i) for i in ids]

    async def receive(self, max_count: int, *, lease: float, wait: float) -> list[Delivery]:
        if max_count < 1:
            raise ValueError(f"max_count must be >= 1, got {max_count}")
        doorbells = _doorbells.get()
        deadline = time.monotonic() + wait
        while True:
            rung = doorbells.event(self._key)
            batch, next_due = await self._claim(max_count, lease)
            got = batch.deliveries()  # unpacked here, on the loop: see Batch
            remaining = deadline - time.monotonic()
            if got or remaining <= 0:
                return got
            due_in = math.inf if next_due is None else max(next_due - time.time(), 0.0)
            with anyio.move_on_after(min(remaining, self._poll, due_in)):
                await rung.wait()

    async def _claim(self, max_count: int, lease: float) -> Claimed:
        claim = self._submit(self._store.claim, self.queue, max_count, lease)
        try:
            return await asyncio.wrap_future(claim)
        except BaseException:
            # Cancelled (or failing) after the thread may have claimed rows that we will not hand
            # out: give them back. cancel() is False once the claim started; the release is queued
            # behind it on the same thread, so it sees what the claim took.
            if not claim.cancel():
                self._give_back_later(claim)
            raise

    def _give_back_later(self, claim: Future[Claimed]) -> None:
        # RuntimeError: closed meanwhile (no more work accepted); the lease brings them back.
        with contextlib.suppress(RuntimeError):
            self._thread.submit(self._mapped, self._give_back, claim)

    def _give_back(self, claim: Future[Claimed]) -> None:
        """On the thread, right after the claim: release what it took (no delivery counted)."""
        if claim.cancelled() or claim.exception() is not None:
            return
        deliveries = claim.result()[0].deliveries()
        if deliveries:
            self._store.release(leased(deliveries))
            self._given_back += len(deliveries)

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        await self._call(self._store.ack, leases_by_token(deliveries))

    async def requeue(self, delivery: Delivery, data: bytes, *, delay: float) -> None:
        for message_id, token in leased([delivery]):
            await self._call(self._store.requeue, message_id, token, bytes(data), delay)
        self._ring()

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        await self._call(self._store.release, leased(deliveries))
        self._ring()

    async def extend(self, deliveries: Sequence[Delivery], *, lease: float) -> None:
        await self._call(self._store.extend, leased(deliveries), lease)

    async def counts(self) -> QueueCounts:
        return await self._call(self._store.counts, self.queue)

    async def browse(self, limit: int, offset: int = 0, *, after: str | None = None) -> list[Delivery]:
        last = parse_receipt(after)[0] if after is not None else None
        return await self._call(self._store.browse, self.queue, limit, offset, last)

    async def remove(self, receipts: Sequence[str]) -> int:
        ids = [parse_receipt(receipt)[0] for receipt in receipts]
        return await self._call(self._store.remove, self.queue, ids)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        closing = self._thread.submit(self._mapped, self._store.close)  # after queued work
        self._thread.shutdown(wait=False)  # the thread ends once its queue is empty
        self._ring()  # receivers waiting on this transport find it closed
        await asyncio.shield(asyncio.wrap_future(closing))


SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}


def open_sqlite(url: str, parts: SplitResult) -> SqliteTransport:
    """sqlite:///relative.db, sqlite:////absolute.db; see the module docstring for the options."""
    if parts.netloc:
        raise TransportError(
            f"{url}: expected sqlite:///relative/path.db or sqlite:////absolute/path.db"
            f" (found host {parts.netloc!r})"
        )
    path = unquote(parts.path[1:])  # sqlite:///a.db -> "a.db", sqlite:////a.db -> "/a.db"
    if not path or path == ":memory:":
        raise TransportError(f"{url}: needs a database file path (for a test queue use memory://)")
    options = url_options(url, parts, ("queue", "synchronous", "busy_timeout", "poll"))
    synchronous = SYNCHRONOUS.get(options.get("synchronous", "normal").lower())
    if synchronous is None:
        raise TransportError(f"{url}: option 'synchronous': expected normal or full")
    return SqliteTransport(
        url,
        os.path.abspath(path),
        options.get("queue") or DEFAULT_QUEUE,
        synchronous=synchronous,
        busy_timeout=seconds_option(url, options, "busy_timeout", 10.0),
        poll=seconds_option(url, options, "poll", 0.05),
    )
