"""Raw numbers for the transports alone, against the ceiling of the hand-written sqlite3 loop.

    python benchmarks/transports.py [--messages 20000] [--rounds 5] [--batch 500]

Each round, on a fresh database file and in the same process (so the ratios hold on a noisy
machine): the raw sqlite3 ceiling (insert in batches; claim a batch of ready rows and delete it in
one transaction), then the SQLite transport (publish in batches; receive(batch) + ack(batch) until
empty), then the memory transport. Prints the median of the rounds, and the transport's share of
the raw ceiling. Nothing is done per message but the transport's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from asyncsup.transports._sqlite_store import SCHEMA, TABLE
from asyncsup.transports.base import Transport, open_transport
from asyncsup.transports.memory import MemoryBroker

T = TypeVar("T")

BODY = b'{"id": "0123456789abcdef", "type": "app.Noop", "version": 1, "body": {"n": 42}}' * 2


def raw_sqlite(path: Path, messages: int, batch: int) -> tuple[float, float]:
    """(insert msg/s, claim+delete msg/s) with sqlite3 and nothing else: the ceiling."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statement in SCHEMA:
        conn.execute(statement)
    insert = f"INSERT INTO {TABLE} (queue, body, available_at, created_at) VALUES (?, ?, ?, ?)"
    started = time.perf_counter()
    for _ in range(0, messages, batch):
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, [("raw", BODY, now, now)] * batch)
        conn.execute("COMMIT")
    published = time.perf_counter()
    select = (
        f"SELECT id, body FROM {TABLE}"
        " WHERE queue = ? AND available_at <= ? ORDER BY available_at, id LIMIT ?"
    )
    done = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(select, ("raw", time.time(), batch)).fetchall()
        conn.executemany(f"DELETE FROM {TABLE} WHERE id = ?", [(row[0],) for row in rows])
        conn.execute("COMMIT")
        if not rows:
            break
        done += len(rows)
    finished = time.perf_counter()
    conn.close()
    assert done == messages, (done, messages)
    return messages / (published - started), messages / (finished - published)


async def through(transport: Transport, messages: int, batch: int) -> tuple[float, float]:
    """(publish msg/s, receive+ack msg/s) of a transport, batch by batch."""
    started = time.perf_counter()
    for _ in range(0, messages, batch):
        await transport.publish([BODY] * batch)
    published = time.perf_counter()
    done = 0
    while got := await transport.receive(batch, lease=60.0, wait=0.0):
        await transport.ack(got)
        done += len(got)
    finished = time.perf_counter()
    await transport.close()
    assert done == messages, (done, messages)
    return messages / (published - started), messages / (finished - published)


async def one_by_one(transport: Transport, messages: int) -> float:
    """receive(1) + ack(1) msg/s: what a consumer that does not batch would get."""
    await transport.publish([BODY] * messages)
    started = time.perf_counter()
    for _ in range(messages):
        await transport.ack(await transport.receive(1, lease=60.0, wait=0.0))
    rate = messages / (time.perf_counter() - started)
    await transport.close()
    return rate


PUBLISHER = """
import sys, time, anyio
from asyncsup.transports.base import open_transport
async def main(url, count):
    transport = open_transport(url)
    for _ in range(count):
        await transport.publish([repr(time.time()).encode()])
        await anyio.sleep(0.02)
    await transport.close()
anyio.run(main, sys.argv[1], int(sys.argv[2]))
"""


async def cross_process_latency(url: str, count: int) -> list[float]:
    """Seconds from another process's publish to this process's receive, idle receiver waiting."""
    import anyio

    consumer = open_transport(url)
    await consumer.counts()  # create the file first: the publisher must not race us for it
    latencies: list[float] = []
    async with await anyio.open_process([sys.executable, "-c", PUBLISHER, url, str(count)]):
        while len(latencies) < count:
            for delivery in await consumer.receive(1, lease=60.0, wait=10.0):
                latencies.append(time.time() - float(delivery.data))
                await consumer.ack([delivery])
    await consumer.close()
    return latencies


def one_round(folder: Path, number: int, messages: int, batch: int) -> dict[str, float]:
    raw_insert, raw_consume = raw_sqlite(folder / f"raw{number}.db", messages, batch)
    url = f"sqlite:///{folder}/asyncsup{number}.db"
    sqlite_publish, sqlite_consume = run(through(open_transport(url), messages, batch))
    sqlite_single = run(one_by_one(open_transport(url + "?queue=one"), max(messages // 10, 1)))
    broker = MemoryBroker()
    memory = open_transport("memory://bench", memory=broker)
    memory_publish, memory_consume = run(through(memory, messages, batch))
    return {
        "raw sqlite3: insert": raw_insert,
        "raw sqlite3: claim + delete": raw_consume,
        "sqlite transport: publish": sqlite_publish,
        "sqlite transport: receive + ack": sqlite_consume,
        "sqlite transport: receive(1) + ack(1)": sqlite_single,
        "memory transport: publish": memory_publish,
        "memory transport: receive + ack": memory_consume,
    }


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def report(rounds: list[dict[str, float]], messages: int, batch: int) -> None:
    medians = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    print(f"{messages:,} messages of {len(BODY)} bytes, batches of {batch}, median of {len(rounds)}")
    print(f"sqlite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}")
    for name, rate in medians.items():
        print(f"  {name:<40} {rate:>12,.0f} msg/s")
    ratio: Callable[[str, str], float] = lambda a, b: medians[a] / medians[b]  # noqa: E731
    consume = ratio("raw sqlite3: claim + delete", "sqlite transport: receive + ack")
    insert = ratio("raw sqlite3: insert", "sqlite transport: publish")
    print(f"  raw ceiling / transport: consume {consume:.2f}x, publish {insert:.2f}x")


def latency_report(folder: Path) -> None:
    latencies = run(cross_process_latency(f"sqlite:///{folder}/latency.db", 50))
    quantiles = statistics.quantiles(latencies, n=10)
    print(
        "  sqlite cross-process pick-up latency (poll=0.05 s, 50 messages): "
        f"median {statistics.median(latencies) * 1000:.0f} ms, "
        f"p90 {quantiles[-1] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asyncsup-bench-") as folder:
        one_round(Path(folder), 0, args.messages, args.batch)  # warm-up: imports, caches, CPU
        rounds = [
            one_round(Path(folder), n, args.messages, args.batch)
            for n in range(1, args.rounds + 1)
        ]
        report(rounds, args.messages, args.batch)
        latency_report(Path(folder))


if __name__ == "__main__":
    main()
