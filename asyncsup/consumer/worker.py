"""The consumer loop: priority intake, N long-lived workers, batched acks, lease upkeep, drain.

Shape (all tasks owned by one task group in ``Worker.run``)::

    intake ──receive(batch)──> buffer (one deque per transport, highest priority popped first)
                                  │
                 N workers: pop -> decode -> handler -> outcome
                                  │                     ├ ok: ack later, batched (flusher)
                                  │                     └ error: retry / failure queue, shielded
    extender: one batched extend() per transport every lease/3, for everything still leased
    flusher:  one ack() per transport when the batch is done or after ack_delay

There is no task per message: a message costs a deque pop and a coroutine call, which is what
lets memory:// pass 100,000 msg/s through the whole path. A worker that never waits (fast async
handlers) gives the loop a turn every YIELD_EVERY messages, so that the intake asks for the next
batch and the flusher sends the acks while the workers go on: a transport that works on a thread
(SQLite) then does its part at the same time as the loop, on the other core, when the GIL is
handed over promptly (``hand_over_gil_promptly`` in commands.py, which ``asyncsup consume`` calls).

A message counts as handled only once its ack is committed. On drain, intake stops, prefetched
messages go back at once (release, no attempt counted), running handlers finish and their acks
are flushed; when the shutdown is forced the handlers are cancelled and their messages, never
acked, come back after the lease.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import anyio
import anyio.lowlevel
import anyio.to_thread

from asyncsup.config import Consumer
from asyncsup.consumer.envelope import Envelope, Head, decode
from asyncsup.consumer.handlers import HandlerRegistry
from asyncsup.consumer.limits import Limits, rss_bytes
from asyncsup.consumer.outcomes import Settler, Source
from asyncsup.consumer.prefetch import AutoPrefetch
from asyncsup.consumer.retry import MAX_UNSETTLED_DELIVERIES, unsettled_error
from asyncsup.consumer.statistics import ConsumerStatistics, Durations, TransportTotals, WorkerResult
from asyncsup.lifecycle import Shutdown
from asyncsup.transports.base import Delivery

log = logging.getLogger("asyncsup.consumer")

MEMORY_CHECK_INTERVAL = 0.5  # seconds between RSS reads: /proc costs ~10 µs, not per message
YIELD_EVERY = 64  # messages a worker handles in a row before it lets the loop run other tasks


def _check_deliveries(delivery: Delivery, envelope: Envelope) -> None:
    """A message received again and again without an outcome kills its consumers: fail it."""
    n = delivery.deliveries
    if n > 1 + MAX_UNSETTLED_DELIVERIES and n > envelope.attempt + MAX_UNSETTLED_DELIVERIES:
        raise unsettled_error(n, envelope.attempt)


class Worker:
    """Consumes from `sources` in priority order with `consumer.concurrency` handlers at once."""

    def __init__(
        self,
        consumer: Consumer,
        sources: Sequence[Source],
        registry: HandlerRegistry,
        *,
        shutdown: Shutdown,
        failure: Source | None = None,
        idle_wait: float = 0.5,
        ack_delay: float = 0.005,
        stop_when: Callable[[], Awaitable[str]] | None = None,
        durations: Durations | None = None,
        totals: TransportTotals | None = None,
    ) -> None:
        if not sources:
            raise ValueError("a consumer needs at least one transport")
        self.name = consumer.name
        self._sources = list(sources)
        self._registry = registry
        self._shutdown = shutdown
        self._limits = Limits.of(consumer)
        self._concurrency = consumer.concurrency
        self._lease = consumer.lease
        self._idle_wait = idle_wait
        self._ack_delay = ack_delay
        self._stop_when = stop_when  # returns why to stop (the fleet restart mark, restart_mark.py)
        self._settler = Settler(consumer, self._sources, failure, durations, totals)
        self._auto = None
        if not consumer.prefetch:
            self._auto = AutoPrefetch(consumer.concurrency, self._settler.durations)
        self._set_prefetch(consumer.prefetch or consumer.concurrency)
        self._debug = log.isEnabledFor(logging.DEBUG)
        n = len(self._sources)
        self._queues: list[deque[Delivery]] = [deque() for _ in range(n)]
        self._idle: deque[anyio.Event] = deque()  # parked workers, woken one at a time
        self._waking = 0
        self._buffered = 0
        self._running = 0
        self._received = 0
        self._room_event: anyio.Event | None = None
        self._receive_scope: anyio.CancelScope | None = None
        self._acks_ready = anyio.Event()
        self._acks_signalled = False  # plain flags: cheaper than Event.is_set() per message
        self._flush_now = anyio.Event()
        self._flush_signalled = False
        self._stopped = anyio.Event()
        self._intake_done = anyio.Event()
        self._stop_reason = ""
        self._limit_reached = False
        self._started = 0.0
        self._last_memory_check = 0.0
        self._state = "not started"
        self._limiter = anyio.CapacityLimiter(consumer.concurrency)
        self._workers_scope = anyio.CancelScope()

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<Worker {self.name}: {self._state}, {s.handled} handled, {s.failed} failed, "
            f"{s.running} running, {s.buffered} buffered>"
        )

    def statistics(self) -> ConsumerStatistics:
        st = self._settler
        elapsed = time.monotonic() - self._started if self._started else 0.0
        return ConsumerStatistics(
            st.handled, st.failed, st.retried, st.released, self._running, self._buffered, elapsed
        )

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set()

    def stop(self, reason: str, *, limit: bool = False) -> None:
        """Stop intake and drain: prefetched messages go back now, running handlers finish."""
        if self._stopped.is_set():
            return
        self._stop_reason = reason
        self._limit_reached = limit
        self._state = f"draining ({reason})"
        log.info("consumer %s: %s; draining", self.name, reason)
        for i, queue in enumerate(self._queues):  # taken now, so no worker can start them
            self._settler.to_release(i, queue)
            queue.clear()
        self._buffered = 0
        self._stopped.set()
        self._wake_all()
        if self._receive_scope is not None:
            self._receive_scope.cancel()

    async def run(self) -> WorkerResult:
        """Consume until a shutdown or a limit; returns why it stopped."""
        self._started = time.monotonic()
        self._state = "running"
        self._log_start()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_shutdown)
                tg.start_soon(self._intake)
                tg.start_soon(self._flusher)
                tg.start_soon(self._extender)
                tg.start_soon(self._release_on_stop)
                if self._limits.time:
                    tg.start_soon(self._time_limit)
                if self._stop_when is not None:
                    tg.start_soon(self._stop_on, self._stop_when)
                await self._run_workers()
                with self._workers_scope:  # cancelled too if the shutdown is forced meanwhile
                    await self._intake_done.wait()  # a receive in progress hands its batch back
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self._settler.release_pending()
                await self._settler.flush_acks()
            self._state = f"stopped ({self._stop_reason or 'cancelled'})"
        result = WorkerResult(self._stop_reason, self._limit_reached, self.statistics())
        self._log_summary(result)
        return result

    # --- workers -------------------------------------------------------------------------

    async def _run_workers(self) -> None:
        async with anyio.create_task_group() as workers:
            self._workers_scope = workers.cancel_scope
            if self._shutdown.forced:
                workers.cancel_scope.cancel()
            for _ in range(self._concurrency):
                workers.start_soon(self._work)
        self._workers_scope = anyio.CancelScope()  # what a forced shutdown cancels from now on
        if self._shutdown.forced:
            self._workers_scope.cancel()

    async def _work(self) -> None:
        queues = self._queues
        handled = 0
        while True:
            for i, queue in enumerate(queues):  # highest priority first
                if queue:
                    self._buffered -= 1
                    delivery = queue.popleft()
                    if self._buffered:
                        self._wake_one()  # someone else can start the next one
                    await self._process(i, delivery)
                    handled += 1
                    if handled % YIELD_EVERY == 0:  # the intake and the flusher get their turn
                        await anyio.lowlevel.checkpoint()
                    break
            else:
                if self._stopped.is_set():
                    return
                await self._park()

    async def _process(self, i: int, delivery: Delivery) -> None:
        """One message, start to outcome. The hot path: every line here is paid per message."""
        self._running += 1
        started = time.perf_counter()  # for the duration histogram (and -vv logs)
        envelope: Envelope | None = None
        head: Head | None = None
        try:
            fast = self._registry.decode_fast(delivery.data)
            if fast is not None:  # with msgspec, most messages: envelope and body in one pass
                head, spec, parts = fast
                if delivery.deliveries > 1 or spec.takes_envelope or self._debug:
                    envelope = head.envelope()  # made only where something reads it
                    _check_deliveries(delivery, envelope)
                body = spec.build(parts)
            else:  # field by field, older versions upgraded (upcasters), the precise error
                envelope = decode(delivery.data)
                spec = self._registry.get(envelope.type)
                _check_deliveries(delivery, envelope)
                body = self._registry.decode_body(envelope, spec)
            if self._debug:
                attempt = envelope.attempt if envelope is not None else 1
                log.debug("%s: received %s attempt %d", self.name, spec.message_type, attempt)
            args = (body, envelope) if spec.takes_envelope else (body,)
            if spec.is_async:
                await spec.func(*args)
            else:
                limiter = self._limiter  # abandon on cancel: a forced shutdown cannot wait for a thread
                await anyio.to_thread.run_sync(spec.func, *args, abandon_on_cancel=True, limiter=limiter)
        except Exception as exc:
            if envelope is None and head is not None:
                envelope = head.envelope()
            await self._settler.settle_failure(i, delivery, envelope, exc)
            self._check_limits()
        else:
            self._settler.ack_later(i, delivery, envelope, started)
            if not self._acks_signalled:
                self._acks_signalled = True
                self._acks_ready.set()
        finally:
            self._running -= 1
            self._after_message()

    def _after_message(self) -> None:
        """Wake the flusher when the batch is done or big enough, and the intake when there is room."""
        busy = self._running + self._buffered
        if not self._flush_signalled and (busy == 0 or self._settler.acks_full()):
            self._flush_signalled = True
            self._flush_now.set()
        room_possible = busy == 0 or busy <= self._capacity - self._min_room
        if self._room_event is not None and room_possible and self._intake_ready():
            self._room_event.set()
            self._room_event = None  # the intake holds it; one wake-up is enough

    async def _park(self) -> None:
        event = anyio.Event()
        self._idle.append(event)
        await event.wait()
        self._waking -= 1

    def _wake_one(self) -> None:
        if self._idle and not self._waking:
            self._waking += 1
            self._idle.popleft().set()

    def _wake_all(self) -> None:
        while self._idle:
            self._waking += 1
            self._idle.popleft().set()
        if self._room_event is not None:
            self._room_event.set()

    # --- intake --------------------------------------------------------------------------

    def _set_prefetch(self, prefetch: int) -> None:
        self._capacity = self._concurrency + prefetch
        # Refill in batches, not one by one, when a third is free: two thirds keep the workers busy
        # while the receive runs (on a thread, at the same time: commands.hand_over_gil_promptly).
        # With half, a SQLite claim queued behind an ack often came after the workers ran dry.
        self._min_room = max(1, self._capacity // 3)

    def _room(self) -> int:
        room = self._capacity - self._buffered - self._running
        if self._limits.messages:
            room = min(room, self._limits.messages - self._received)
        return room

    def _intake_ready(self) -> bool:
        room = self._room()
        return room >= self._min_room or (room > 0 and self._buffered + self._running == 0)

    async def _intake(self) -> None:
        try:
            while not self._stopped.is_set():
                if self._auto is not None:  # prefetch = 0: sized by how fast handlers run
                    self._set_prefetch(self._auto.update())
                if not self._intake_ready():
                    room = self._room_event = anyio.Event()
                    await room.wait()
                    self._room_event = None
                    continue
                await self._receive_round(self._room())
        finally:
            self._intake_done.set()

    async def _receive_round(self, room: int) -> None:
        """Strict priority: ask every higher transport before a lower one, restart at the top."""
        if len(self._sources) > 1:
            for i, source in enumerate(self._sources):  # without waiting: whatever is there now
                batch = await source.transport.receive(room, lease=self._lease, wait=0.0)
                if batch:
                    await self._accept(i, batch)
                    return
        # Nothing anywhere: wait on each in turn; a new high message waits at most one slice.
        # stop() cancels the wait: transports lease nothing in a cancelled receive.
        wait = self._idle_wait / len(self._sources)
        for i, source in enumerate(self._sources):
            got: list[Delivery] = []
            with anyio.CancelScope() as self._receive_scope:
                if self._stopped.is_set():
                    return
                got = await source.transport.receive(room, lease=self._lease, wait=wait)
            self._receive_scope = None
            if got:
                await self._accept(i, got)
                return

    async def _accept(self, i: int, batch: list[Delivery]) -> None:
        self._settler.leased(i, batch)
        if self._stopped.is_set():  # the stop came while we were receiving: give them back
            self._settler.to_release(i, batch)
            await self._settler.release_pending()
            return
        self._received += len(batch)
        self._queues[i].extend(batch)
        self._buffered += len(batch)
        if self._debug:
            log.debug("%s: received %d from %s", self.name, len(batch), self._sources[i].name)
        self._wake_one()

    # --- upkeep --------------------------------------------------------------------------

    async def _flusher(self) -> None:
        while True:
            await self._acks_ready.wait()
            with anyio.move_on_after(self._ack_delay):
                await self._flush_now.wait()
            self._acks_ready, self._acks_signalled = anyio.Event(), False
            self._flush_now, self._flush_signalled = anyio.Event(), False
            await self._settler.flush_acks()
            self._check_limits(memory=True)

    async def _extender(self) -> None:
        while True:
            await anyio.sleep(self._lease / 3)
            await self._settler.extend_leases(self._lease)

    async def _release_on_stop(self) -> None:
        await self._stopped.wait()
        await self._settler.release_pending()

    async def _watch_shutdown(self) -> None:
        await self._shutdown.wait_requested()
        self.stop(f"shutdown requested ({self._shutdown.reason})")
        await self._shutdown.wait_forced()
        if self._running:
            log.warning(
                "consumer %s: shutdown forced, cancelling %d running handler(s); "
                "their messages come back after the lease (%gs)",
                self.name,
                self._running,
                self._lease,
            )
        self._workers_scope.cancel()

    async def _time_limit(self) -> None:
        await anyio.sleep(self._limits.time)
        self.stop(f"time limit of {self._limits.time:g}s reached", limit=True)

    async def _stop_on(self, stop_when: Callable[[], Awaitable[str]]) -> None:
        self.stop(await stop_when())

    def _check_limits(self, *, memory: bool = False) -> None:
        rss = None
        now = time.monotonic()
        if memory and self._limits.memory and now - self._last_memory_check >= MEMORY_CHECK_INTERVAL:
            self._last_memory_check = now
            rss = rss_bytes()
        st = self._settler
        reason = self._limits.exceeded(
            settled=st.handled + st.failed + st.retried, failures=st.failures, rss=rss
        )
        if reason is not None:
            self.stop(reason, limit=True)

    # --- logs ----------------------------------------------------------------------------

    def _log_start(self) -> None:
        names = ", ".join(s.name for s in self._sources)
        log.info(
            "consumer %s: consuming %s with %d worker(s), %s, handlers for %s",
            self.name,
            names,
            self._concurrency,
            self._limits,
            ", ".join(self._registry.types()) or "nothing",
        )

    def _log_summary(self, result: WorkerResult) -> None:
        log.info("consumer %s stopped (%s): %s", self.name, result.reason or "cancelled", result.statistics)

