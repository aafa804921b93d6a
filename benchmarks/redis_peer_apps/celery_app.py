"""celery with the Redis broker: ``celery -A celery_app worker --pool solo``; no result backend."""

from __future__ import annotations

import os

from celery import Celery
from probe import PROBE, Stopwatch, enqueue_main

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"])
app.conf.task_default_queue = os.environ["BENCH_STREAM"]


@app.task(name="noop", ignore_result=True)  # named: the enqueuer runs this file as __main__
def noop(n: int) -> None:
    PROBE.done(n)


def enqueue(n: int) -> float:
    """One producer connection for all messages (``delay()`` per call would acquire one each time)."""
    with app.producer_or_acquire() as producer:
        watch = Stopwatch()
        for i in range(n):
            noop.apply_async((i,), producer=producer)
        return watch.seconds()


if __name__ == "__main__":
    enqueue_main(enqueue)
