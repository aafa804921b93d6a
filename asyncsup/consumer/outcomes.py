"""Settling messages: batched acks, retries, the failure queue, releases and lease upkeep.

Everything that tells a transport what became of a message lives here, and every call to a
transport runs under a shield: a cancellation (forced shutdown) must not stop an outcome half-way,
e.g. publish to the failure queue done but the original not acked, or an ack lost after the
handler's side effects.

Without a failure transport, a message that cannot be handled is logged at ERROR with its whole
envelope (up to LOG_ENVELOPE_LIMIT bytes) and acked: keeping it would make it come back forever,
and the log line is then the only record of it. The consumer warns about this once at start.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import anyio

from asyncsup.config import Consumer
from asyncsup.consumer.envelope import Envelope, encode, new_id
from asyncsup.consumer.retry import Verdict, decide, failure_headers
from asyncsup.consumer.statistics import Durations, TransportTotals
from asyncsup.errors import DecodeError
from asyncsup.transports.base import Delivery, Transport

log = logging.getLogger("asyncsup.consumer")

UNDECODABLE = "asyncsup.Undecodable"  # the type a message gets in the failure queue when its
# bytes are not an envelope; the original bytes travel in headers.raw_base64
LOG_ENVELOPE_LIMIT = 64 * 1024


HANDLED, FAILED, RETRIED = range(3)  # TransportTotals.KINDS


@dataclass(frozen=True, slots=True)
class Source:
    """A transport with the name people know it by (the [transports] key, or its URL)."""

    name: str
    transport: Transport

    def __repr__(self) -> str:
        return f"<Source {self.name} ({self.transport.url})>"


class Settler:
    """Counts and carries out outcomes for one consumer's transports."""

    def __init__(
        self,
        consumer: Consumer,
        sources: Sequence[Source],
        failure: Source | None,
        durations: Durations | None = None,
        totals: TransportTotals | None = None,
    ):
        self.name = consumer.name
        self.durations = durations if durations is not None else Durations()
        self.totals = totals if totals is not None else TransportTotals()
        self._policy = consumer.retry
        self._sources = sources
        self._failure = failure
        n = len(sources)
        self._leased: list[dict[str, Delivery]] = [{} for _ in range(n)]
        self._acks: list[list[Delivery]] = [[] for _ in range(n)]
        self._releases: list[list[Delivery]] = [[] for _ in range(n)]
        self._timings: list[tuple[str, float]] = []  # (type, started) of pending acks, at -vv
        self._pending = 0
        self._ack_batch = max(64, 2 * consumer.concurrency)
        self._debug = log.isEnabledFor(logging.DEBUG)
        self.handled = self.failed = self.retried = self.released = self.failures = 0
        if failure is None:
            log.warning(
                "consumer %s has no failure_transport: messages that cannot be handled are "
                "logged at ERROR with their envelope and dropped",
                self.name,
            )

    # --- leases --------------------------------------------------------------------------

    def leased(self, i: int, batch: Iterable[Delivery]) -> None:
        self._leased[i].update((d.receipt, d) for d in batch)

    async def extend_leases(self, lease: float) -> None:
        """One extend() per transport for everything received and not yet settled."""
        for i, source in enumerate(self._sources):
            held = list(self._leased[i].values())
            if held:
                with anyio.CancelScope(shield=True):
                    await source.transport.extend(held, lease=lease)

    def to_release(self, i: int, batch: Iterable[Delivery]) -> None:
        self._releases[i].extend(batch)

    async def release_pending(self) -> None:
        """Give back, unchanged and without an attempt counted, what was received but not started."""
        for i, source in enumerate(self._sources):
            batch, self._releases[i] = self._releases[i], []
            if batch:
                with anyio.CancelScope(shield=True):
                    await source.transport.release(batch)
                self._settled(i, batch)
                self.released += len(batch)
                log.info("consumer %s: released %d prefetched message(s) to %s",
                         self.name, len(batch), source.name)  # fmt: skip

    def _settled(self, i: int, batch: Iterable[Delivery]) -> None:
        leased = self._leased[i]
        for d in batch:
            leased.pop(d.receipt, None)

    # --- acks ----------------------------------------------------------------------------

    def ack_later(self, i: int, delivery: Delivery, envelope: Envelope | None, started: float) -> None:
        self._acks[i].append(delivery)
        self._pending += 1
        self.durations.observe(time.perf_counter() - started)
        if self._debug and envelope is not None:
            self._timings.append((envelope.type, started))

    def acks_full(self) -> bool:
        return self._pending >= self._ack_batch

    async def flush_acks(self) -> None:
        """Commit every pending ack, one call per transport; only then are they 'handled'."""
        batches = [(i, b) for i, b in enumerate(self._acks) if b]
        if not batches:
            return
        self._acks = [[] for _ in self._sources]
        timings, self._timings = self._timings, []
        self._pending = 0
        with anyio.CancelScope(shield=True):
            for i, batch in batches:
                await self._sources[i].transport.ack(batch)
                self._settled(i, batch)
                self.handled += len(batch)
                self.totals.add(self._sources[i].name, HANDLED, len(batch))
        if timings:
            now = time.perf_counter()
            for message_type, started in timings:
                log.debug("%s: handled %s in %.2f ms", self.name, message_type, (now - started) * 1e3)

    # --- failures ------------------------------------------------------------------------

    async def settle_failure(
        self, i: int, delivery: Delivery, envelope: Envelope | None, exc: Exception
    ) -> None:
        """Retry the message or send it to the failure queue, as the policy decides."""
        self.failures += 1
        attempt = envelope.attempt if envelope is not None else 1
        verdict = decide(self._policy, attempt, exc)
        with anyio.CancelScope(shield=True):
            if verdict.action == "retry" and envelope is not None:
                try:
                    await self._retry(i, delivery, envelope, verdict)
                    return
                except DecodeError as why:  # headers that cannot be re-encoded: nothing to retry
                    exc = why
            await self._fail(i, delivery, envelope, exc, verdict.reason)

    async def _retry(self, i: int, delivery: Delivery, envelope: Envelope, verdict: Verdict) -> None:
        headers = dict(envelope.headers, attempt=envelope.attempt + 1, error=verdict.reason)
        retry = Envelope(envelope.id, envelope.type, envelope.body, envelope.version, headers)
        await self._sources[i].transport.requeue(delivery, encode(retry), delay=verdict.delay)
        self._settled(i, [delivery])
        self.retried += 1
        self.totals.add(self._sources[i].name, RETRIED)
        # INFO, not debug: a retry is an event an operator wants to see, like a failure.
        log.info("%s: %s %s attempt %d failed, retrying in %.3gs: %s", self.name, envelope.type,
                 envelope.id, envelope.attempt, verdict.delay, verdict.reason)  # fmt: skip

    async def _fail(
        self, i: int, delivery: Delivery, envelope: Envelope | None, exc: Exception, reason: str
    ) -> None:
        source = self._sources[i]
        attempts = envelope.attempt if envelope is not None else 1
        headers = failure_headers(exc, reason, attempts=attempts, origin=source.name)
        failed = _failed_envelope(delivery, envelope, headers)
        try:
            data = encode(failed)
        except DecodeError:  # keep the exact bytes instead: never lose a message to its encoding
            failed = _failed_envelope(delivery, None, headers)
            data = encode(failed)
        if self._failure is not None:
            await self._failure.transport.publish([data])
            log.warning("%s: %s %s failed, sent to %s: %s",
                        self.name, failed.type, failed.id, self._failure.name, reason)  # fmt: skip
        else:
            shown = data[:LOG_ENVELOPE_LIMIT].decode("utf-8", "replace")
            big = len(data) > LOG_ENVELOPE_LIMIT
            cut = f" (first {LOG_ENVELOPE_LIMIT} of {len(data)} bytes)" if big else ""
            log.error("%s: %s %s failed and is dropped (no failure_transport): %s; envelope%s: %s",
                      self.name, failed.type, failed.id, reason, cut, shown)  # fmt: skip
        await source.transport.ack([delivery])
        self._settled(i, [delivery])
        self.failed += 1
        self.totals.add(source.name, FAILED)


def _failed_envelope(
    delivery: Delivery, envelope: Envelope | None, headers: dict[str, object]
) -> Envelope:
    """The message as it is kept in the failure queue: the original plus why it failed."""
    if envelope is None:  # not an envelope at all: keep the exact bytes, to inspect or replay
        raw = base64.b64encode(delivery.data).decode()
        return Envelope(new_id(), UNDECODABLE, None, 1, {**headers, "raw_base64": raw})
    merged = {**envelope.headers, **headers}
    merged.pop("error_history", None)
    return Envelope(envelope.id, envelope.type, envelope.body, envelope.version, merged)
