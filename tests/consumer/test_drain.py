"""Stopping: limits, a graceful drain, a forced one, and leases kept alive while handlers run."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest
from consumer_rig import WAIT, Counter, LogEvent, Rig, Running, consumer, registry, run_until_stopped

from asyncsup.consumer.worker import Worker
from asyncsup.lifecycle import Shutdown

pytestmark = pytest.mark.anyio


async def noop(body: Any) -> None: ...


async def test_message_limit_stops_after_exactly_that_many(rig: Rig) -> None:
    source = rig.source("q")
    await rig.publish(source, *({"n": n} for n in range(50)))
    result = await run_until_stopped(Worker(consumer(limit=20, concurrency=8), [source],
                                            registry(("Ping", noop)), shutdown=Shutdown(5)))  # fmt: skip
    assert result.limit_reached and result.reason == "message limit of 20 reached"
    assert result.statistics.handled == 20
    counts = await source.transport.counts()
    assert (counts.ready, counts.in_flight) == (30, 0)


async def test_failure_limit_stops_the_worker(rig: Rig) -> None:
    source, failed = rig.source("q"), rig.source("failed")
    await rig.publish(source, *({"n": n} for n in range(10)), type="Nobody")
    worker = Worker(consumer(failure_limit=3, concurrency=1), [source], registry(("Ping", noop)),
                    shutdown=Shutdown(5), failure=failed)  # fmt: skip
    result = await run_until_stopped(worker)
    assert result.limit_reached and result.reason == "failure limit of 3 reached"
    assert result.statistics.failed == 3
    assert (await source.transport.counts()).ready == 7  # the prefetched one went back


async def test_time_limit_stops_an_idle_worker(rig: Rig) -> None:
    source = rig.source("q")
    worker = Worker(consumer(time_limit=0.2), [source], registry(("Ping", noop)), shutdown=Shutdown(5))
    result = await run_until_stopped(worker)
    assert result.limit_reached and result.reason == "time limit of 0.2s reached"


async def test_memory_limit_stops_after_a_batch(rig: Rig) -> None:
    source = rig.source("q")
    await rig.publish(source, *({"n": n} for n in range(5)))
    worker = Worker(consumer(memory_limit=1), [source], registry(("Ping", noop)), shutdown=Shutdown(5))
    result = await run_until_stopped(worker)
    assert result.limit_reached and result.reason.startswith("memory limit reached: RSS")
    assert result.statistics.handled >= 1


async def test_drain_finishes_running_handlers_and_returns_prefetched_at_once(rig: Rig) -> None:
    """Given 2 handlers running and 8 prefetched, when shutdown is requested:
    1. the 8 prefetched go back to the queue at once, with no delivery counted;
    2. the 2 running finish (once we let them) and are acked; the worker returns."""
    source = rig.source("q")
    await rig.publish(source, *({"n": n} for n in range(20)))
    started, gate = Counter(), anyio.Event()

    async def slow(body: Any) -> None:
        started.hit(body["n"])
        await gate.wait()

    shutdown = Shutdown(WAIT)
    running = Running(Worker(consumer(concurrency=2, prefetch=8), [source], registry(("Ping", slow)),
                             shutdown=shutdown), shutdown)  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(running.run)
        await started.wait_for(2)
        assert (await source.transport.counts()).in_flight == 10
        with LogEvent("released 8 prefetched") as released:
            shutdown.request("test")
            with anyio.fail_after(WAIT):  # released at once, while the handlers still run
                await released.wait()
        assert (await source.transport.counts()).in_flight == 2
        gate.set()
        result = await running.wait()
    assert result.statistics.handled == 2 and result.statistics.released == 8
    assert not result.limit_reached and "shutdown requested" in result.reason
    assert len(started.calls) == 2
    counts = await source.transport.counts()
    assert (counts.ready, counts.in_flight) == (18, 0)
    again = await source.transport.receive(100, lease=30, wait=0)
    assert len(again) == 18 and {d.deliveries for d in again} == {1}  # release counted nothing


async def test_forced_shutdown_cancels_handlers_and_their_messages_come_back(rig: Rig) -> None:
    """A handler hanging past the deadline is cancelled; its message is not acked, and it is
    received again once its lease runs out (with the delivery counted)."""
    source = rig.source("q")
    await rig.publish(source, {"n": 1})
    started, cancelled = Counter(), Counter()

    async def hang(body: Any) -> None:
        started.hit()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.hit()
            raise

    shutdown = Shutdown(0.1)  # the drain deadline
    running = Running(Worker(consumer(lease=0.5), [source], registry(("Ping", hang)), shutdown=shutdown),
                      shutdown)  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(running.run)
        tg.start_soon(shutdown.enforce_deadline)
        await started.wait_for(1)
        shutdown.request("test")
        result = await running.wait()
    assert cancelled.calls and shutdown.forced
    assert result.statistics.handled == 0 and result.statistics.failed == 0
    assert (await source.transport.counts()).in_flight == 1  # not acked, not failed: leased
    with anyio.fail_after(WAIT):
        [back] = await source.transport.receive(1, lease=30, wait=WAIT)
    assert back.deliveries == 2


async def test_lease_is_extended_while_a_handler_runs(rig: Rig) -> None:
    """A handler that runs for several leases keeps its message: nobody else can receive it."""
    source = rig.source("q")
    other = rig.source("q")  # a second consumer of the same queue
    await rig.publish(source, {"n": 1})
    started, gate = Counter(), anyio.Event()

    async def slow(body: Any) -> None:
        started.hit()
        await gate.wait()

    shutdown = Shutdown(WAIT)
    # lease 2 s, extended every 0.67 s: the loop may stall 1.3 s on a noisy machine before it fails
    running = Running(Worker(consumer(lease=2.0), [source], registry(("Ping", slow)), shutdown=shutdown),
                      shutdown)  # fmt: skip
    async with anyio.create_task_group() as tg:
        tg.start_soon(running.run)
        await started.wait_for(1)
        stolen = await other.transport.receive(1, lease=30, wait=4.5)  # over two leases long
        gate.set()
        shutdown.request("test")
        result = await running.wait()
    assert stolen == []
    assert result.statistics.handled == 1
    assert await rig.everything(source) == []


async def test_idle_worker_stops_promptly_on_shutdown(rig: Rig) -> None:
    source = rig.source("q")
    shutdown = Shutdown(WAIT)
    worker = Worker(consumer(), [source], registry(("Ping", noop)), shutdown=shutdown, idle_wait=60)
    running = Running(worker, shutdown)
    async with anyio.create_task_group() as tg:
        tg.start_soon(running.run)
        await anyio.lowlevel.checkpoint()
        shutdown.request("test")
        result = await running.wait()  # would take idle_wait (60 s) if the receive were not cancelled
    assert result.statistics.settled == 0


async def test_summary_line_at_stop(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    source = rig.source("q")
    await rig.publish(source, *({"n": n} for n in range(3)))
    with caplog.at_level(logging.INFO, logger="asyncsup.consumer"):
        await run_until_stopped(Worker(consumer(limit=3), [source], registry(("Ping", noop)),
                                       shutdown=Shutdown(5)))  # fmt: skip
    summary = [r.getMessage() for r in caplog.records if "stopped" in r.getMessage()]
    assert summary and "3 handled, 0 failed, 0 retried, 0 released" in summary[-1]
    assert "msg/s" in summary[-1]
