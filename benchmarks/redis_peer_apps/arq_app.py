"""arq: ``arq arq_app.WorkerSettings``, on uvloop, max_jobs=100, poll_delay=10 ms (as in PEERS.md)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import uvloop
from arq import create_pool
from arq.connections import RedisSettings
from probe import PROBE, Stopwatch, enqueue_main

uvloop.install()  # arq's CLI makes its loop with asyncio.get_event_loop(): this makes it uvloop
REDIS = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])
QUEUE = os.environ["BENCH_STREAM"]
# arq logs every job at INFO; the other workers log nothing per message, so neither does arq here.
QUIET_LOGS = {"version": 1, "disable_existing_loggers": False, "loggers": {"arq": {"level": "WARNING"}}}


async def noop(ctx: dict[str, Any], n: int) -> None:
    PROBE.done(n)


class WorkerSettings:
    functions = [noop]  # noqa: RUF012 (arq reads class attributes)
    redis_settings = REDIS
    queue_name = QUEUE
    max_jobs = 100
    poll_delay = 0.01


def enqueue(n: int) -> float:
    async def main() -> float:
        pool = await create_pool(REDIS, default_queue_name=QUEUE)
        watch = Stopwatch()
        for i in range(n):
            await pool.enqueue_job("noop", i)
        seconds = watch.seconds()
        await pool.aclose()
        return seconds

    return asyncio.run(main())


if __name__ == "__main__":
    enqueue_main(enqueue)
