"""prefetch = 0 (auto): fast handlers get big receives, slow handlers get `concurrency`."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from consumer_rig import Rig, consumer, run_until_stopped, worker_for

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
