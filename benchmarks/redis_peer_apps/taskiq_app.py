"""taskiq + taskiq-redis with its Redis Streams broker (consumer group, ack after the task)."""

from __future__ import annotations

import asyncio
import os

from probe import PROBE, Stopwatch, enqueue_main
from taskiq_redis import RedisStreamBroker

broker = RedisStreamBroker(
    os.environ["BENCH_REDIS_URL"],
    queue_name=os.environ["BENCH_STREAM"],
    consumer_group_name="bench",
    consumer_id="0",  # the default "$" would skip what was enqueued before the group existed
)


@broker.task(task_name="noop")  # named: the enqueuer runs this file as __main__
async def noop(n: int) -> None:
    PROBE.done(n)


def enqueue(n: int) -> float:
    async def main() -> float:
        await broker.startup()
        watch = Stopwatch()
        for i in range(n):
            await noop.kiq(i)
        seconds = watch.seconds()
        await broker.shutdown()
        return seconds

    return asyncio.run(main())


if __name__ == "__main__":
    enqueue_main(enqueue)
