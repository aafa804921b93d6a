"""The Transport protocol every queue backend implements, and the Delivery it hands out.

At-least-once is a contract between the two: a received Delivery is leased (invisible to other
consumers) until it is acked, requeued or released, or until its lease runs out and it comes back.
Every method is a batch, because a round trip per message is what makes the peers slow.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, runtime_checkable
from urllib.parse import SplitResult, parse_qsl, urlsplit

from asyncsup.errors import MissingExtra, TransportError, UnknownTransport, did_you_mean

if TYPE_CHECKING:
    from asyncsup.transports.memory import MemoryBroker

T = TypeVar("T")


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

    async def browse(self, limit: int, offset: int = 0, *, after: str | None = None) -> list[Delivery]:
        """Look at messages without leasing them (`failed show`, `queue check`), in queue order.

        Page on with `after`, the receipt of the last message of the previous page: the page then
        starts right after it, at a cost that does not grow with the depth (offset is ignored).
        An offset costs the offset on every call."""

    async def remove(self, receipts: Sequence[str]) -> int:
        """Delete messages by receipt whatever their state; returns how many were removed."""

    async def close(self) -> None:
        """Release connections and threads; idempotent."""


# --- opening a transport by URL ------------------------------------------------------------------

DEFAULT_QUEUE = "default"

# Schemes open_transport() knows, in the order error messages list them.
KNOWN_SCHEMES = ("memory", "redis", "rediss", "sqlite")


def open_transport(url: str, *, memory: MemoryBroker | None = None) -> Transport:
    """The transport a URL names, ready to use (connections open lazily, on the first call).

    ``memory://NAME`` or ``memory://?queue=NAME``: a process-local queue; transports opened with
    the same name on the same ``memory`` broker share it (default: one broker per event loop).
    ``sqlite:///relative/path.db?queue=NAME`` (relative to the current directory) or
    ``sqlite:////absolute/path.db``: the embedded durable queue, see sqlite.py for the options.
    ``redis://host:port/db?stream=NAME`` (or ``rediss://``): Redis Streams, see redis.py.
    The queue name defaults to "default". Unknown schemes raise UnknownTransport.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        from asyncsup.transports.memory import open_memory

        return open_memory(url, parts, broker=memory)
    if scheme == "sqlite":
        from asyncsup.transports.sqlite import open_sqlite

        return open_sqlite(url, parts)
    if scheme in ("redis", "rediss"):
        _require_redis()
        from asyncsup.transports.redis import open_redis

        return open_redis(url, parts)
    raise UnknownTransport(scheme or url, KNOWN_SCHEMES)


def _require_redis() -> None:
    try:
        import redis  # noqa: F401
    except ImportError:
        raise MissingExtra("the Redis transport", "redis") from None


def url_options(url: str, parts: SplitResult, allowed: Iterable[str]) -> dict[str, str]:
    """The query options of a transport URL; unknown or repeated options are errors."""
    allowed = tuple(allowed)
    options: dict[str, str] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if key not in allowed:
            raise TransportError(
                f"{url}: unknown option {key!r}{did_you_mean(key, allowed)}"
                f" (known: {', '.join(allowed)})"
            )
        if key in options:
            raise TransportError(f"{url}: option {key!r} given twice")
        options[key] = value
    return options


def seconds_option(url: str, options: Mapping[str, str], key: str, default: float) -> float:
    """A non-negative number of seconds from the URL options."""
    raw = options.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise TransportError(f"{url}: option {key!r}: expected seconds >= 0, got {raw!r}")
    return value


# --- receipts ------------------------------------------------------------------------------------
# A leased delivery's receipt is "<message id>:<lease token in hex>": acks, requeues, releases and
# extends only match the current token, so a consumer whose lease ran out and was given to someone
# else cannot settle the other's delivery. browse() hands out bare "<message id>" receipts.


def lease_receipt(message_id: int, token: int) -> str:
    return f"{message_id}:{token:x}"


def parse_receipt(receipt: str) -> tuple[int, int | None]:
    """(message id, lease token or None) from a receipt; TransportError when it is not one."""
    head, sep, tail = receipt.partition(":")
    try:
        return int(head), (int(tail, 16) if sep else None)
    except ValueError:
        raise TransportError(f"not a receipt of this transport: {receipt!r}") from None


def leased(deliveries: Sequence[Delivery]) -> list[tuple[int, int]]:
    """(message id, token) of deliveries that carry a lease; browsed ones (no token) are skipped."""
    return [
        (message_id, token)
        for token, ids in leases_by_token(deliveries).items()
        for message_id in ids
    ]


def leases_by_token(deliveries: Sequence[Delivery]) -> dict[int, list[int]]:
    """Message ids by lease token (one receive's batch shares one); browsed ones are skipped."""
    by_tail: dict[str, list[int]] = {}
    try:
        for delivery in deliveries:
            head, _, tail = delivery.receipt.partition(":")
            by_tail.setdefault(tail, []).append(int(head))
        # Each distinct token is parsed once: a batch of 500 receipts has one.
        return {int(tail, 16): ids for tail, ids in by_tail.items() if tail}
    except ValueError:
        for delivery in deliveries:
            parse_receipt(delivery.receipt)  # raises TransportError naming the bad one
        raise


# --- one helper object per event loop -------------------------------------------------------------


class LoopLocal(Generic[T]):
    """One T per running asyncio event loop, made on first use and dropped with its loop.

    This is how the process-local defaults (the memory broker, SQLite's in-process wake-ups) avoid
    being module state shared by everything: each event loop, hence each test, gets its own.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        value = self._by_loop.get(loop)
        if value is None:
            value = self._by_loop[loop] = self._factory()
        return value
