"""redis:// and rediss:// — Redis Streams with one consumer group: the queue for many machines.

``redis://host:6379/0?stream=jobs`` (or ``rediss://``): the URL and its options are in
redis_url.py, Symfony Messenger's entries in redis_interop.py.

Keys: the stream, ``<stream>:delayed`` (sorted set), ``<stream>:leases`` (hash: each consumer's
lease), ``<stream>:reclaims`` (a counter), and with format=symfony ``<stream>__queue``.
One group per stream: acked entries are deleted (XDEL, so the stream does not grow), which would
delete them for other groups too; a warning is logged when the stream has several groups.

How leases, tokens, releases and delays map onto Redis is in redis_scripts.py. A receive is one
round trip, a small script (due delayed messages, this consumer's lease, whether some lease has
ended) pipelined with a plain ``XREADGROUP``; ended leases are claimed by a script, first thing
in the next receive. An ack is one script (XACK + XDEL, plus the receipt check only when a lease
may have changed hands); the other methods are one script each, publish one pipelined XADD per
batch. An idle receive blocks in ``XREAD`` until an entry it has not seen arrives, then takes
(every idle receiver of the stream wakes for a new entry and one of them gets it). Connection
losses are ridden out in redis_link.py. A publish retried after a connection loss can store a
batch twice (at-least-once); nothing is lost, and no entry is acked twice (acks check the lease).
Not supported: Redis Cluster (the keys of a queue would need one hash slot), Sentinel.
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import SplitResult

import anyio
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from asyncsup.errors import TransportClosed, TransportError
from asyncsup.transports import redis_admin_scripts as admin
from asyncsup.transports import redis_scripts as lua
from asyncsup.transports.base import Delivery, QueueCounts
from asyncsup.transports.redis_entries import Leased, browsed, entry, fresh
from asyncsup.transports.redis_interop import FIELD
from asyncsup.transports.redis_link import Link, Script, block_ms, client, command, pipelined
from asyncsup.transports.redis_url import RedisOptions, parse_url

log = logging.getLogger("asyncsup.transports.redis")

RECEIPT = re.compile(r"(\d+-\d+|z[0-9a-f]{16}):\d+")
STALE_CONSUMER_MS = 86_400_000  # a consumer holding nothing, unseen this long, is forgotten
DELAYED_BATCH = 1000  # messages per delayed-publish script


class RedisTransport:
    """A Redis stream read through one consumer group; see the module docstring."""

    def __init__(self, url: str, options: RedisOptions, make_client: Callable[[], Redis]) -> None:
        self.url = url  # the password, if any, is masked
        self.queue = options.stream
        self._options = options
        self._link = Link(url, make_client, options.retry_for)
        stream = options.stream
        leases, epoch = f"{stream}:leases", f"{stream}:reclaims"
        self._keys = (stream, f"{stream}:delayed", f"{stream}__queue", leases, epoch)
        self._with_leases = (stream, leases)
        self._with_epoch = (stream, epoch)
        self._claim_due = False  # the last receive saw ended leases: the next one claims first
        self._consumer = options.consumer
        self._symfony = "1" if options.symfony else "0"
        self._closed = False
        self._warned_groups = False
        self._waiting: set[anyio.CancelScope] = set()  # idle receives, woken by close()

    def __repr__(self) -> str:
        who = self._consumer or "no consumer name yet"
        if self._closed:
            state = "closed"
        elif self._link.down:
            state = "reconnecting"
        else:
            state = f"{len(self._waiting)} receives waiting" if self._waiting else "open"
        return f"<RedisTransport {self.url} group {self._options.group!r} as {who!r}, {state}>"

    @property
    def consumer(self) -> str:
        """This transport's consumer name in the group (chosen on first use: pid after a fork)."""
        if self._consumer is None:
            self._consumer = f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        return self._consumer

    # --- producing ---------------------------------------------------------------------------

    async def publish(self, messages: Sequence[bytes], *, delay: float = 0.0) -> list[str]:
        self._check_open()
        if not messages:
            return []
        if delay > 0:
            return await self._publish_delayed(messages, delay)
        stream = self.queue

        async def xadd(r: Redis) -> list[bytes]:
            async with r.pipeline(transaction=False) as pipe:
                for message in messages:
                    pipe.execute_command("XADD", stream, "*", FIELD, message)
                result: list[Any] = await pipe.execute(raise_on_error=False)
            for item in result:  # Redis's own error, not the pipeline's rewording of it
                if isinstance(item, Exception):
                    raise item
            return result

        return [entry_id.decode() for entry_id in await self._link.call(xadd)]

    async def _publish_delayed(self, messages: Sequence[bytes], delay: float) -> list[str]:
        ids = []
        for start in range(0, len(messages), DELAYED_BATCH):
            args: list[Any] = [_ms(delay)]
            for message in messages[start : start + DELAYED_BATCH]:
                uniq = os.urandom(8).hex()
                args += (uniq, message)
                ids.append("z" + uniq)
            await self._run(lua.PUBLISH_DELAYED, self._keys[1:2], args)
        return ids

    # --- consuming ---------------------------------------------------------------------------

    async def receive(self, max_count: int, *, lease: float, wait: float) -> list[Delivery]:
        if max_count < 1:
            raise ValueError(f"max_count must be >= 1, got {max_count}")
        self._check_open()
        deadline = anyio.current_time() + max(wait, 0.0)
        while True:
            batch = await self._take(max_count, lease, deadline)
            if batch:
                return batch
            left = deadline - anyio.current_time()
            if left <= 0:
                return []
            if batch is not None:  # None: Redis unreachable, the take already waited
                await self._wait(left, deadline)

    async def _take(self, count: int, lease: float, deadline: float) -> list[Delivery] | None:
        """Ended leases (when known to be there), then new entries; None: Redis unreachable.

        Claimed entries come first: they are older than any new one. Each step is shielded, so a
        cancellation cannot lose a reply; if one came meanwhile (or during a later step's wait
        out of an outage), what was handed out is given back (uncounted) before the cancel goes on.
        """
        lease_ms = _ms(lease)
        claimed: list[Delivery] = []
        new: list[Delivery] = []
        try:
            if self._claim_due:
                got = await self._claim(count, lease_ms, deadline)
                if got is None:
                    return None
                claimed = got
            if len(claimed) < count:
                read = await self._read(count - len(claimed), lease_ms, deadline)
                if read is None:
                    return claimed or None
                new = read
                if self._claim_due and not claimed and len(new) < count:  # the read saw ended leases
                    claimed = await self._claim(count - len(new), lease_ms, deadline) or []
            if claimed or new:
                await anyio.lowlevel.checkpoint_if_cancelled()
        except anyio.get_cancelled_exc_class():
            if claimed or new:
                with anyio.CancelScope(shield=True):
                    await self._give_back(claimed + new)
            raise
        return claimed + new

    async def _read(self, count: int, lease_ms: str, deadline: float) -> list[Delivery] | None:
        """PREPARE + XREADGROUP in one round trip: the hot path, nothing written per entry."""
        reply = await self._link.call_or(
            lambda r: self._prepare_and_read(r, count, lease_ms), None, until=deadline, shield=True
        )
        if reply is None:
            return None
        prepared, entries = reply
        epoch, due, registered = prepared if prepared is not None else (-1, 0, 0)
        self._claim_due = bool(due)
        batch = fresh(entries, epoch, self.queue, self._options.symfony)
        if batch and registered > math.ceil(float(lease_ms)):
            await self._shorten(batch, lease_ms)
        return batch

    async def _prepare_and_read(self, r: Redis, count: int, lease_ms: str) -> tuple[Any, Any]:
        """(PREPARE's reply or None when it failed, XREADGROUP's reply); makes the group if missing.

        XREADGROUP runs even when PREPARE fails (a pipeline is not a transaction). When the server
        lacks the script (first use, a restart), PREPARE runs right after: what was delivered is
        not claimable before it registers the lease (an unregistered owner's lease is 24 h). On
        any other failure of PREPARE what was delivered is handed out all the same, its epoch
        unknown (its acks are checked) and its lease the registered one.
        """
        group, me, keys = self._options.group, self.consumer, self._keys
        args = (group, me, lease_ms, self._symfony)
        prepare = ("EVALSHA", lua.PREPARE.sha, len(keys), *keys, *args)
        read = ("XREADGROUP", "GROUP", group, me, "COUNT", count, "STREAMS", self.queue, ">")
        for attempt in (1, 2):
            prepared, entries = await pipelined(r, prepare, read)
            if attempt == 1 and isinstance(entries, Exception) and str(entries).startswith("NOGROUP"):
                await self._create_group(r)
                continue
            if isinstance(prepared, NoScriptError):
                prepared = await lua.PREPARE.run(r, keys, args)
            if isinstance(entries, Exception):
                raise entries
            if isinstance(prepared, Exception):
                if not entries:
                    raise prepared
                prepared = None
            return prepared, entries
        raise AssertionError("unreachable: the second attempt returns or raises")

    async def _claim(self, count: int, lease_ms: str, deadline: float) -> list[Delivery] | None:
        """Take over entries whose lease ended (anyone's, this consumer's too): a delivery counted."""
        keys = (self.queue, *self._keys[3:])
        args = [self._options.group, self.consumer, count, lease_ms]
        reply = await self._link.call_or(
            lambda r: self._eval(r, lua.CLAIM, keys, args), None, until=deadline, shield=True
        )
        if reply is None:
            return None
        epoch, entries, tokens = reply
        self._claim_due = len(entries) == count  # a full batch: there may be more
        queue, symfony = self.queue, self._options.symfony
        claimed = zip(entries, tokens, strict=True)
        return [entry(eid, fields, token, epoch, queue, symfony) for (eid, fields), token in claimed]

    async def _shorten(self, batch: list[Delivery], lease_ms: str) -> None:
        """Write a lease shorter than the registered one into the idle times; one attempt: if
        Redis fails here, these entries keep the registered (longer) lease."""
        args = [self._options.group, self.consumer, lease_ms, *[d.receipt for d in batch]]
        keys = self._with_leases
        await self._link.call_or(
            lambda r: self._eval(r, lua.EXTEND, keys, args), None, until=anyio.current_time(), shield=True
        )

    async def _wait(self, left: float, deadline: float) -> None:
        """Nothing to take: block until a new entry, the next delayed message or lease end."""
        args = [self._options.group, self._symfony]
        reply = await self._link.call_or(
            lambda r: self._eval(r, lua.WAKE, self._keys[:4], args), None, until=deadline
        )
        if reply is not None:
            wake = float(reply[0]) / 1000 if reply[0] is not None else left
            await self._wait_for_new(reply[1], min(left, self._options.recheck, wake), deadline)

    async def _wait_for_new(self, last_id: bytes, pause: float, deadline: float) -> None:
        """Block until an entry after the group's last delivered one exists, or `pause` passed."""
        args = ("XREAD", "COUNT", 1, "BLOCK", block_ms(pause), "STREAMS", self.queue, last_id)
        self._check_open()  # close() may have come while the take ran
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                await self._link.call_or(lambda r: command(r, *args), None, until=deadline)
            finally:
                self._waiting.discard(scope)
        self._check_open()

    async def _give_back(self, batch: list[Delivery]) -> None:
        """Release what a cancelled receive took; one attempt: if Redis fails, the lease ends."""
        await self._link.call_or(
            lambda r: self._eval(r, lua.RELEASE, self._with_epoch, self._settle_args(batch)),
            None,
            until=anyio.current_time(),
        )

    # --- settling ----------------------------------------------------------------------------

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """XACK + XDEL; the receipts are checked only if a lease changed hands since the oldest
        of them was received (see redis_scripts.py, "Acks without the check")."""
        self._check_open()
        if not deliveries:
            return
        leased = [d for d in deliveries if isinstance(d, Leased)]
        if len(leased) == len(deliveries):
            args = [self._options.group, min(d.epoch for d in leased), *[d.entry_id for d in leased]]
            if await self._run(lua.ACK, self._with_epoch, args) >= 0:
                return
        await self._run(lua.ACK_HELD, self._keys[:1], self._settle_args(deliveries))

    async def release(self, deliveries: Sequence[Delivery]) -> None:
        self._check_open()
        if deliveries:
            await self._run(lua.RELEASE, self._with_epoch, self._settle_args(deliveries))
            self._claim_due = True  # so that this transport's next receive takes them back first

    async def extend(self, deliveries: Sequence[Delivery], *, lease: float) -> None:
        self._check_open()
        if deliveries:
            await self._run(lua.EXTEND, self._with_leases, self._settle_args(deliveries, _ms(lease)))

    async def requeue(self, delivery: Delivery, data: bytes, *, delay: float) -> None:
        self._check_open()
        uniq = os.urandom(8).hex()
        args = [*self._settle_args((), _ms(delay), uniq, data, delivery.deliveries), delivery.receipt]
        await self._run(lua.REQUEUE, self._keys[:2], args)

    def _settle_args(self, deliveries: Sequence[Delivery], *extra: Any) -> list[Any]:
        """A settle script's ARGV: group, consumer, extra..., receipts (only leases this consumer
        still holds with that token change)."""
        return [self._options.group, self.consumer, *extra, *[d.receipt for d in deliveries]]

    # --- looking -----------------------------------------------------------------------------

    async def counts(self) -> QueueCounts:
        """ready: never delivered to the group (XINFO GROUPS lag) + leases that ended or were
        released; in_flight: the rest of the pending entries; delayed: the delayed set(s)."""
        self._check_open()
        ready, in_flight, delayed = await self._run(
            admin.COUNTS, self._keys[:4], [self._options.group, self._symfony]
        )
        return QueueCounts(ready=int(ready), in_flight=int(in_flight), delayed=int(delayed))

    async def browse(self, limit: int, offset: int = 0, *, after: str | None = None) -> list[Delivery]:
        """Stream entries in order, then delayed ones by due time; receipts carry no lease."""
        self._check_open()
        if limit < 1:
            return []
        if after is not None and not RECEIPT.fullmatch(after):
            raise TransportError(f"not a receipt of this transport: {after!r}")
        last = after.rpartition(":")[0] if after is not None else ""
        args = [self._options.group, max(offset, 0), limit, last]
        reply = await self._run(admin.BROWSE, self._keys[:2], args)
        return browsed(reply, self.queue, self._options.symfony)

    async def remove(self, receipts: Sequence[str]) -> int:
        self._check_open()
        for receipt in receipts:
            if not RECEIPT.fullmatch(receipt):
                raise TransportError(f"not a receipt of this transport: {receipt!r}")
        if not receipts:
            return 0
        ids = [receipt.rpartition(":")[0] for receipt in receipts]
        return int(await self._run(admin.REMOVE, self._keys[:2], [self._options.group, *ids]))

    # --- the fleet-wide stop mark --------------------------------------------------------------

    async def set_restart_mark(self) -> float:
        """Ask every worker to stop after its current messages: ``<prefix>:restart`` = now.

        The time is the Redis server's clock (one clock for the fleet). A worker compares the
        mark with the one it read when it started: a newer mark means stop.
        """
        self._check_open()
        key = f"{self._options.prefix}:restart"
        return float(await self._link.call(lambda r: admin.SET_MARK.run(r, [key], [])))

    async def restart_mark(self) -> float | None:
        """The time of the last stop request (server clock, seconds), or None if there was none."""
        self._check_open()
        key = f"{self._options.prefix}:restart"
        value = await self._link.call(lambda r: command(r, "GET", key))
        return float(value) if value is not None else None

    # --- plumbing ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop waiting receives, forget this consumer if it holds nothing, close connections."""
        if self._closed:
            return
        self._closed = True
        for scope in list(self._waiting):
            scope.cancel()
        if self._consumer is not None:
            with anyio.CancelScope(shield=True):
                await self._prune()
        await self._link.close()

    async def _prune(self) -> None:
        args = [self._options.group, self.consumer, STALE_CONSUMER_MS]
        await self._link.call_or(
            lambda r: admin.PRUNE.run(r, self._with_leases, args), None, until=anyio.current_time()
        )

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed(self.url)

    async def _run(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._link.call(lambda r: self._eval(r, script, keys, args))

    async def _eval(self, r: Redis, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a script; if the group is missing (first use, or Redis lost it), create it first."""
        try:
            return await script.run(r, keys, args)
        except Exception as exc:
            if not str(exc).startswith("NOGROUP"):
                raise
        await self._create_group(r)
        return await script.run(r, keys, args)

    async def _create_group(self, r: Redis) -> None:
        groups = await admin.CREATE_GROUP.run(r, self._keys[:1], [self._options.group])
        if groups > 1 and not self._warned_groups:
            self._warned_groups = True
            log.warning(
                "%s: stream %r has %d consumer groups; acked entries are deleted for all of them",
                self.url, self.queue, groups,
            )  # fmt: skip


def _ms(seconds: float) -> str:
    """Milliseconds for a script: >= 0 and at most the lease horizon."""
    return f"{min(max(seconds, 0.0) * 1000, lua.HORIZON_MS):.3f}"


def open_redis(url: str, parts: SplitResult) -> RedisTransport:
    """A RedisTransport for a redis:// or rediss:// URL (no connection is made yet)."""
    shown, options, client_kwargs = parse_url(url, parts)
    return RedisTransport(shown, options, lambda: client(client_kwargs))
