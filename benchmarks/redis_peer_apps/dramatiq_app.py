"""dramatiq with its Redis broker: ``dramatiq dramatiq_app --processes 1 --threads 8``."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from probe import PROBE, Stopwatch, enqueue_main

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"], namespace=os.environ["BENCH_STREAM"])
dramatiq.set_broker(broker)


@dramatiq.actor(max_retries=0)
def noop(n: int) -> None:
    PROBE.done(n)


def enqueue(n: int) -> float:
    watch = Stopwatch()
    for i in range(n):
        noop.send(i)
    return watch.seconds()


if __name__ == "__main__":
    enqueue_main(enqueue)
