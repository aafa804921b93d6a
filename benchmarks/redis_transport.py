"""The Redis transport against the raw redis-py ceiling, and its idle pick-up latency.

    python benchmarks/redis_transport.py [--messages 20000] [--rounds 5] [--batch 500] [--url redis://...]

Each round, in one process and on the same Redis (so the ratios hold on a noisy machine), with a
no-op "handler" (nothing is done per message but the transport's own work):

- raw publish: redis-py asyncio, pipelined ``XADD`` in batches (one round trip per batch);
- raw consume: ``XREADGROUP COUNT <batch>`` + one ``XACK`` of the whole batch: the ceiling;
- raw consume + XDEL: the same plus one ``XDEL`` per batch, which the transport also does (an
  acked entry is deleted, so the stream does not grow);
- the transport: publish(batch), then receive(batch) + ack(batch) until the stream is empty.

Then the idle latency: a receive waits on an empty stream, another transport publishes one
message; the time from just before publish() to receive() returning, over many messages.
Prints medians over the rounds, ratios taken within each round, and CPU microseconds per message
(this process only; Redis's CPU is not counted). Keys are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere: asyncsup comes from this checkout

import redis  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from asyncsup.transports.base import QueueCounts, open_transport  # noqa: E402

T = TypeVar("T")
BODY = b'{"id": "0123456789abcdef", "type": "app.Noop", "version": 1, "body": {"n": 42}}' * 2
GROUP = "bench"


@dataclass(frozen=True)
class Measure:
    rate: float  # messages per second of wall time
    cpu: float  # microseconds of this process's CPU per message


class Stopwatch:
    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, messages: int) -> Measure:
        wall, cpu = time.perf_counter(), time.process_time()
        measure = Measure(messages / (wall - self._wall), (cpu - self._cpu) * 1e6 / messages)
        self._wall, self._cpu = wall, cpu
        return measure


async def raw(
    url: str, stream: str, messages: int, batch: int, xdel: bool, after_lap: Callable[[], object] = tuple
) -> tuple[Measure, Measure]:
    """(publish, consume) with redis-py and nothing else; ``after_lap()`` runs untimed after each."""
    r = Redis.from_url(url)
    await r.xgroup_create(stream, GROUP, id="0", mkstream=True)
    watch = Stopwatch()
    for _ in range(0, messages, batch):
        async with r.pipeline(transaction=False) as pipe:
            for _ in range(batch):
                pipe.xadd(stream, {b"m": BODY})
            await pipe.execute()
    published = watch.lap(messages)
    after_lap()  # redis_peers.py reads the Redis server's CPU time here
    watch = Stopwatch()
    done = 0
    while reply := await r.xreadgroup(GROUP, "raw", {stream: ">"}, count=batch):
        ids = [entry_id for entry_id, _ in reply[0][1]]
        if not ids:
            break
        async with r.pipeline(transaction=False) as pipe:
            pipe.xack(stream, GROUP, *ids)
            if xdel:
                pipe.xdel(stream, *ids)
            await pipe.execute()
        done += len(ids)
    consumed = watch.lap(messages)
    after_lap()
    await r.aclose()
    assert done == messages, (done, messages)
    return published, consumed


async def ours(url: str, stream: str, messages: int, batch: int) -> tuple[Measure, Measure]:
    transport = open_transport(f"{url}?stream={stream}&group={GROUP}")
    await transport.counts()  # connect before the clock starts
    watch = Stopwatch()
    for _ in range(0, messages, batch):
        await transport.publish([BODY] * batch)
    published = watch.lap(messages)
    done = 0
    while got := await transport.receive(batch, lease=60.0, wait=0.0):
        await transport.ack(got)
        done += len(got)
    consumed = watch.lap(messages)
    assert done == messages, (done, messages)
    assert await transport.counts() == QueueCounts(ready=0, in_flight=0, delayed=0)
    await transport.close()
    return published, consumed


async def idle_latency(url: str, stream: str, count: int) -> list[float]:
    """Seconds from publish() to the waiting receive() returning it (the receiver idle 20 ms)."""
    import anyio

    consumer = open_transport(f"{url}?stream={stream}")
    producer = open_transport(f"{url}?stream={stream}")
    await consumer.receive(1, lease=60.0, wait=0.0)  # connect, create the group
    await producer.counts()
    latencies: list[float] = []

    async def receive_one() -> None:
        got = await consumer.receive(1, lease=60.0, wait=10.0)
        latencies.append(time.perf_counter() - start)
        await consumer.ack(got)

    for _ in range(count):
        async with anyio.create_task_group() as tg:
            tg.start_soon(receive_one)
            await anyio.sleep(0.02)  # the receive is now blocked in XREAD, as an idle worker is
            start = time.perf_counter()
            await producer.publish([BODY])
    await consumer.close()
    await producer.close()
    return latencies


def one_round(url: str, prefix: str, n: int, messages: int, batch: int) -> dict[str, Measure]:
    raw_publish, raw_consume = run(raw(url, f"{prefix}raw{n}", messages, batch, xdel=False))
    _, raw_consume_del = run(raw(url, f"{prefix}rawdel{n}", messages, batch, xdel=True))
    our_publish, our_consume = run(ours(url, f"{prefix}ours{n}", messages, batch))
    return {
        RAW_PUBLISH: raw_publish,
        RAW_CONSUME: raw_consume,
        RAW_CONSUME_DEL: raw_consume_del,
        OUR_PUBLISH: our_publish,
        OUR_CONSUME: our_consume,
    }


RAW_PUBLISH = "raw redis-py: pipelined XADD"
RAW_CONSUME = "raw redis-py: XREADGROUP + XACK"
RAW_CONSUME_DEL = "raw redis-py: XREADGROUP + XACK + XDEL"
OUR_PUBLISH = "redis transport: publish"
OUR_CONSUME = "redis transport: receive + ack"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def report(rounds: list[dict[str, Measure]], messages: int, batch: int, server: str) -> None:
    loop = "uvloop" if "uvloop" in sys.modules else "asyncio"
    print(f"{messages:,} messages of {len(BODY)} bytes, batches of {batch}, median of {len(rounds)}")
    print(f"Redis {server}, redis-py {redis.__version__}, Python {sys.version.split()[0]}, {loop}")
    print(f"  {'':<42} {'msg/s':>12} {'CPU us/msg':>11}")
    for name in rounds[0]:
        rate = statistics.median(r[name].rate for r in rounds)
        cpu = statistics.median(r[name].cpu for r in rounds)
        print(f"  {name:<42} {rate:>12,.0f} {cpu:>11.2f}")
    pairs = [
        ("consume vs XREADGROUP + XACK (goal >= 50%)", RAW_CONSUME, OUR_CONSUME),
        ("consume vs XREADGROUP + XACK + XDEL", RAW_CONSUME_DEL, OUR_CONSUME),
        ("publish vs pipelined XADD (goal >= 50%)", RAW_PUBLISH, OUR_PUBLISH),
    ]
    for label, raw_name, our_name in pairs:
        share = statistics.median(r[our_name].rate / r[raw_name].rate for r in rounds)
        cpu = statistics.median(r[our_name].cpu / r[raw_name].cpu for r in rounds)
        print(f"  transport {label}: {share:.0%} of raw throughput, {cpu:.2f}x the CPU")


def latency_report(url: str, prefix: str, count: int) -> None:
    latencies = sorted(run(idle_latency(url, f"{prefix}latency", count)))
    p50, p90 = statistics.median(latencies), latencies[int(len(latencies) * 0.9)]
    print(
        f"  idle latency publish -> receive ({count} messages, one at a time): "
        f"p50 {p50 * 1e3:.2f} ms, p90 {p90 * 1e3:.2f} ms, max {latencies[-1] * 1e3:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--latency", type=int, default=300, help="messages for the latency run")
    parser.add_argument("--url", default=os.environ.get("ASYNCSUP_BENCH_REDIS", "redis://127.0.0.1:6379/0"))
    args = parser.parse_args()
    prefix = f"asyncsup-bench:{os.getpid()}:"
    client = redis.Redis.from_url(args.url)
    server = client.info("server")["redis_version"]
    try:
        one_round(args.url, prefix, 0, args.messages, args.batch)  # warm-up: imports, scripts, CPU
        numbers = range(1, args.rounds + 1)
        rounds = [one_round(args.url, prefix, n, args.messages, args.batch) for n in numbers]
        report(rounds, args.messages, args.batch, server)
        latency_report(args.url, prefix, args.latency)
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


if __name__ == "__main__":
    main()
