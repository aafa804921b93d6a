"""Raw numbers for the transports alone, against the ceiling of the hand-written sqlite3 loop.

    python benchmarks/transports.py [--messages 20000] [--rounds 7] [--batch 500]

Each round, on a fresh database file and in the same process (so the ratios hold on a noisy
machine): the raw sqlite3 ceiling (insert in batches; claim a batch of ready rows and delete it in
one transaction), then the SQLite transport (publish in batches; receive(batch) + ack(batch) until
empty), then the memory transport. Prints the medians of the rounds, and the transport's cost
against the raw loops (wall and CPU time, compared within each round). Nothing is done per
message but the transport's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import _raw_sqlite

from asyncsup.transports._sqlite_store import INSERT, READY, SCHEMA, TABLE
from asyncsup.transports.base import Transport, open_transport
from asyncsup.transports.memory import MemoryBroker

T = TypeVar("T")

BODY = b'{"id": "0123456789abcdef", "type": "app.Noop", "version": 1, "body": {"n": 42}}' * 2


@dataclass(frozen=True)
class Measure:
    rate: float  # messages per second of wall time
    cpu: float  # microseconds of this process's CPU (every thread) per message


class Stopwatch:
    """Wall and CPU time since the last lap: CPU per message is the steadier figure when noisy."""

    def __init__(self) -> None:
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, messages: int) -> Measure:
        wall, cpu = time.perf_counter(), time.process_time()
        measure = Measure(messages / (wall - self._wall), (cpu - self._cpu) * 1e6 / messages)
        self._wall, self._cpu = wall, cpu
        return measure


def raw_sqlite(path: Path, messages: int, batch: int) -> tuple[Measure, Measure]:
    """(insert msg/s, claim+delete msg/s) with sqlite3 and nothing else: the ceiling."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statement in SCHEMA:
        conn.execute(statement)
    insert = f"INSERT INTO {TABLE} (queue, body, available_at, created_at) VALUES (?, ?, ?, ?)"
    watch = Stopwatch()
    for _ in range(0, messages, batch):
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, [("raw", BODY, now, now)] * batch)
        conn.execute("COMMIT")
    published = watch.lap(messages)
    select = (
        f"SELECT id, body FROM {TABLE}"
        " WHERE queue = ? AND available_at <= ? AND lease_token IS NULL ORDER BY available_at, id LIMIT ?"
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
    consumed = watch.lap(messages)
    conn.close()
    assert done == messages, (done, messages)
    return published, consumed


def raw_leasing(path: Path, messages: int, batch: int) -> Measure:
    """The same SQL the transport runs, by hand: lease a batch (commit), delete it (commit).

    At-least-once needs both commits (a received message must survive a crash as leased, an
    acked one as gone); the claim + delete ceiling above has only one.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statement in SCHEMA:
        conn.execute(statement)
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(INSERT, [("raw", BODY, now, now)] * messages)
    conn.execute("COMMIT")
    watch, done, token = Stopwatch(), 0, 7
    while True:
        conn.execute("BEGIN IMMEDIATE")
        now = time.time()
        rows = conn.execute(READY, ("raw", now, batch)).fetchall()
        ids = [row[0] for row in rows]
        if ids:
            _raw_sqlite.lease(conn, "raw", token, ids, now, now + 60.0)
        conn.execute("COMMIT")
        if not rows:
            break
        conn.execute("BEGIN IMMEDIATE")
        _raw_sqlite.ack(conn, token, ids)
        conn.execute("COMMIT")
        token += 1
        done += len(rows)
    consumed = watch.lap(messages)
    conn.close()
    assert done == messages, (done, messages)
    return consumed


async def through(transport: Transport, messages: int, batch: int) -> tuple[Measure, Measure]:
    """(publish, receive + ack) of a transport, batch by batch."""
    await transport.counts()  # open the connection before the clock starts
    watch = Stopwatch()
    for _ in range(0, messages, batch):
        await transport.publish([BODY] * batch)
    published = watch.lap(messages)
    done = 0
    while got := await transport.receive(batch, lease=60.0, wait=0.0):
        await transport.ack(got)
        done += len(got)
    consumed = watch.lap(messages)
    await transport.close()
    assert done == messages, (done, messages)
    return published, consumed


async def one_by_one(transport: Transport, messages: int) -> Measure:
    """receive(1) + ack(1): what a consumer that does not batch would get."""
    await transport.publish([BODY] * messages)
    watch = Stopwatch()
    for _ in range(messages):
        await transport.ack(await transport.receive(1, lease=60.0, wait=0.0))
    measure = watch.lap(messages)
    await transport.close()
    return measure


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


def one_round(folder: Path, number: int, messages: int, batch: int) -> dict[str, Measure]:
    raw_insert, raw_consume = raw_sqlite(folder / f"raw{number}.db", messages, batch)
    raw_lease = raw_leasing(folder / f"lease{number}.db", messages, batch)
    url = f"sqlite:///{folder}/asyncsup{number}.db"
    sqlite_publish, sqlite_consume = run(through(open_transport(url), messages, batch))
    sqlite_single = run(one_by_one(open_transport(url + "?queue=one"), max(messages // 10, 1)))
    memory = open_transport("memory://bench", memory=MemoryBroker())
    memory_publish, memory_consume = run(through(memory, messages, batch))
    return {
        RAW_INSERT: raw_insert,
        RAW_CONSUME: raw_consume,
        RAW_LEASE: raw_lease,
        SQLITE_PUBLISH: sqlite_publish,
        SQLITE_CONSUME: sqlite_consume,
        "sqlite transport: receive(1) + ack(1)": sqlite_single,
        "memory transport: publish": memory_publish,
        "memory transport: receive + ack": memory_consume,
    }


RAW_INSERT, RAW_CONSUME = "raw sqlite3: insert", "raw sqlite3: claim + delete"
RAW_LEASE = "raw sqlite3: lease, commit, delete, commit"
SQLITE_PUBLISH, SQLITE_CONSUME = "sqlite transport: publish", "sqlite transport: receive + ack"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def report(rounds: list[dict[str, Measure]], messages: int, batch: int) -> None:
    print(f"{messages:,} messages of {len(BODY)} bytes, batches of {batch}, median of {len(rounds)}")
    print(f"sqlite {sqlite3.sqlite_version}, Python {sys.version.split()[0]}")
    print(f"  {'':<44} {'msg/s':>12} {'CPU us/msg':>11}")
    for name in rounds[0]:
        rate = statistics.median(r[name].rate for r in rounds)
        cpu = statistics.median(r[name].cpu for r in rounds)
        print(f"  {name:<44} {rate:>12,.0f} {cpu:>11.2f}")
    pairs = [
        ("consume", RAW_CONSUME, SQLITE_CONSUME),
        ("consume, same SQL by hand", RAW_LEASE, SQLITE_CONSUME),
        ("publish", RAW_INSERT, SQLITE_PUBLISH),
    ]
    for label, raw, ours in pairs:
        # Ratios within a round, then their median: both sides of a ratio saw the same noise.
        wall = statistics.median(r[raw].rate / r[ours].rate for r in rounds)
        cpu = statistics.median(r[ours].cpu / r[raw].cpu for r in rounds)
        print(f"  transport vs raw, {label}: {wall:.2f}x the wall time, {cpu:.2f}x the CPU")


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
    parser.add_argument("--rounds", type=int, default=7)
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
