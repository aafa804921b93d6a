"""prefetch = 0 (auto): fast handlers get big receives, slow handlers get `concurrency`."""

from __future__ import annotations

import itertools
import sys
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from consumer_rig import Rig, consumer, run_until_stopped, worker_for

from asyncsup.consumer.commands import SWITCH_INTERVAL, hand_over_gil_promptly
from asyncsup.consumer.prefetch import MAX, WINDOW, prefetch_for
from asyncsup.consumer.worker import Worker

pytestmark = pytest.mark.anyio


def test_prefetch_holds_a_window_of_work_between_concurrency_and_max() -> None:
    assert prefetch_for(0.0, 16) == MAX  # a no-op handler, too fast to time
    assert prefetch_for(10e-6, 16) == MAX
    assert prefetch_for(0.010, 16) == int(WINDOW * 16 / 0.010)  # 80: 50 ms of 16 workers' work
    assert prefetch_for(1.0, 16) == 16  # slow handlers: one message per worker, as before


async def test_fast_handlers_receive_far_more_than_concurrency_at_once(rig: Rig) -> None:
    """Given 2,000 messages and a no-op handler, the consumer soon holds far more than 4 at once."""
    source = rig.source("q")
    await rig.publish(source, *({"n": n} for n in range(2000)))
    held: list[int] = []

    async def ping(body: Any) -> None:
        held.append(worker.statistics().buffered)

    worker = worker_for(consumer(concurrency=4, prefetch=0, limit=2000), source, ping)
    result = await run_until_stopped(worker)
    assert result.statistics.handled == 2000
    assert max(held) > 4 * 4, max(held)  # a fixed prefetch of 4 would hold at most 4 (+4 running)


async def test_fast_handlers_let_the_loop_run_other_tasks_while_they_work(rig: Rig) -> None:
    """Given 2,000 messages and a handler that never waits, the other tasks (the intake, the flusher)
    still get a turn after every YIELD_EVERY messages of each worker, not only once a receive's
    batch (up to MAX messages) is done: the next receive and the acks overlap the handling."""
    source = rig.source("q")
    await rig.publish(source, *({"n": n} for n in range(2000)))
    turns = 0
    seen: list[int] = []

    async def ping(body: Any) -> None:
        seen.append(turns)

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await anyio.lowlevel.checkpoint()
            turns += 1

    worker = worker_for(consumer(concurrency=4, prefetch=0, limit=2000), source, ping)
    async with anyio.create_task_group() as tg:
        tg.start_soon(count_turns)
        result = await run_until_stopped(worker)
        tg.cancel_scope.cancel()
    assert result.statistics.handled == 2000
    handled_in_one_turn = max(len(list(run)) for _, run in itertools.groupby(seen))
    assert handled_in_one_turn < MAX // 2, handled_in_one_turn  # what one receive brings at most


def test_consume_hands_the_gil_over_promptly_and_never_more_slowly() -> None:
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)  # Python's default
        hand_over_gil_promptly()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
        sys.setswitchinterval(SWITCH_INTERVAL / 4)  # someone wanted it shorter still: kept
        hand_over_gil_promptly()
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL / 4)
    finally:
        sys.setswitchinterval(before)


async def test_slow_handlers_never_hold_more_than_a_window_of_work(rig: Rig) -> None:
    """Given handlers of 20 ms, 4 workers hold at most WINDOW's worth ahead: 10, not hundreds."""
    source = rig.source("q")
    await rig.publish(source, *({"n": n} for n in range(60)))
    held: list[int] = []

    async def ping(body: Any) -> None:
        held.append(worker.statistics().buffered)
        await anyio.sleep(0.02)  # a slower machine only makes it slower: the bound still holds

    worker: Worker = worker_for(consumer(concurrency=4, prefetch=0, limit=60), source, ping)
    result = await run_until_stopped(worker)
    assert result.statistics.handled == 60
    assert max(held) <= prefetch_for(0.02, 4), held
