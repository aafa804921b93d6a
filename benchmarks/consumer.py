"""The consumer end to end, against what a user would pick instead, with a no-op handler.

    python benchmarks/consumer.py [--messages 20000] [--rounds 3] [--out benchmarks/results]

Every case runs in a fresh process (enqueue in one, consume in another, so the consumer's CPU
and RSS are its own), on a fresh SQLite file, one consumer process:

- asyncsup memory://: enqueue and consume in one process (the queue lives in it); the full path:
  receive, envelope decode, registry lookup, body decode into a dataclass, handler call, batched ack.
- asyncsup sqlite://: `Sender.send_batch` to enqueue; `Worker` (what `asyncsup consume` runs) to
  consume, with the defaults (concurrency 16, prefetch auto) and with a fixed prefetch of 500, in
  a process set up as `asyncsup consume` sets up its own (the GIL handed over within 20 µs, young
  objects collected every 20,000 allocations).
- huey (SQLite storage), installed into benchmarks/.cache/huey-venv: `task()` per message to enqueue,
  the consumer's worker loop (one worker) to consume.
- raw sqlite3: insert in batches of 500; claim 500 + delete in one transaction, in the table and
  index of the SQLite transport (a queue column, an index on (queue, available_at): what lets
  several queues share a file and a receive stay fast behind a million delayed messages). The
  ceiling of any SQLite queue written in Python; the goal is measured against it.
- raw sqlite3 with a lease: what an at-least-once queue must do at the least, on the same table
  and index: claim 500 (select, then the lease write: available_at moved to the lease's end, a
  token, the delivery counted) in one transaction, then delete them by id and token in a second
  one, as an ack after the handlers would. Shown for reference: what the lease itself costs.
- raw sqlite3, bare table: the same loop on a table with no queue column and no index (it finds
  ready rows by scanning the rowid order, which a queue with delayed messages cannot do): shown
  for reference, how much the index costs.

Consume rate = messages / (worker start -> last message done). Median of the rounds; ratios are
medians of per-round ratios, which hold better than absolute numbers on a noisy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
HUEY_VENV = HERE / ".cache" / "huey-venv"
CASES = (
    "asyncsup-memory",
    "asyncsup-sqlite",
    "asyncsup-sqlite-prefetch500",
    "huey-sqlite",
    "raw-sqlite3",
    "raw-sqlite3-lease",
    "raw-sqlite3-bare",
)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- children: one case, one phase, prints one JSON line ------------------------------------------


@dataclass
class Ping:
    n: int


async def ping(msg: Ping) -> None:
    """The no-op handler: its body is decoded and validated into Ping, then nothing."""


def child_asyncsup(case: str, phase: str, db: str, n: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    import anyio

    async def main() -> dict[str, float]:
        from asyncsup.config import Consumer
        from asyncsup.consumer.commands import tune_process_for_consuming
        from asyncsup.consumer.handlers import HandlerRegistry
        from asyncsup.consumer.outcomes import Source
        from asyncsup.consumer.send import Sender
        from asyncsup.consumer.worker import Worker
        from asyncsup.lifecycle import Shutdown
        from asyncsup.transports.base import open_transport

        url = "memory://bench" if case == "asyncsup-memory" else f"sqlite:///{db}?queue=bench"
        out: dict[str, float] = {}
        if phase == "enqueue" or case == "asyncsup-memory":
            t0 = time.perf_counter()
            async with Sender(url) as sender:
                await sender.send_batch(Ping(i) for i in range(n))
            out["enqueue_s"] = time.perf_counter() - t0
            if case != "asyncsup-memory":
                return out
        tune_process_for_consuming()  # as `asyncsup consume` does before it starts its Worker
        registry = HandlerRegistry()
        registry.add(ping)
        prefetch = 500 if case == "asyncsup-sqlite-prefetch500" else 0
        consumer = Consumer("bench", ("bench",), (), concurrency=16, prefetch=prefetch, limit=n)
        transport = open_transport(url)
        await transport.counts()  # the file opened before the clock starts, as in the raw loops
        worker = Worker(consumer, [Source("bench", transport)], registry, shutdown=Shutdown(30))
        c0, t0 = cpu(), time.perf_counter()
        result = await worker.run()
        out["consume_s"] = time.perf_counter() - t0
        out["cpu_s"] = cpu() - c0
        out["rss_mb"] = rss_mb()
        await transport.close()
        assert result.statistics.handled == n, result
        return out

    return anyio.run(main, backend_options={"use_uvloop": True})


def child_huey(phase: str, db: str, n: int) -> dict[str, float]:
    from huey import SqliteHuey
    from huey.consumer import Worker

    huey = SqliteHuey("bench", filename=db)
    done = [0]

    @huey.task()
    def noop(i: int) -> None:
        done[0] += 1

    if phase == "enqueue":
        t0 = time.perf_counter()
        for i in range(n):
            noop(i)
        return {"enqueue_s": time.perf_counter() - t0}
    import threading

    worker = Worker(huey, threading.Event(), default_delay=0.1, max_delay=10.0, backoff=1.15)
    c0, t0 = cpu(), time.perf_counter()
    while done[0] < n:
        worker.loop()
    return {"consume_s": time.perf_counter() - t0, "cpu_s": cpu() - c0, "rss_mb": rss_mb()}


# The bare table: no queue column, no index. Ready rows are found by walking the rowid order.
BARE_SCHEMA = ("CREATE TABLE IF NOT EXISTS q (id INTEGER PRIMARY KEY, data BLOB, available_at REAL)",)
BARE_SQL = (
    "INSERT INTO q (data, available_at) VALUES (?, ?)",
    "SELECT id, data FROM q WHERE available_at <= ? ORDER BY id LIMIT 500",
    "DELETE FROM q WHERE id = ?",
)


def consume_and_delete(
    conn: sqlite3.Connection, select: str, delete: str, key: tuple[str, ...], n: int
) -> None:
    """Claim 500 and delete them in one transaction: no lease, nothing comes back after a crash."""
    done = 0
    while done < n:
        conn.execute("BEGIN IMMEDIATE")
        rows = conn.execute(select, (*key, time.time())).fetchall()
        conn.executemany(delete, [(r[0],) for r in rows])
        conn.execute("COMMIT")
        done += len(rows)


def consume_with_lease(conn: sqlite3.Connection, select: str, n: int) -> None:
    """Claim 500 (the lease written: the rows marked, one lease row) in one transaction, delete them
    by id and token and close the lease in another, with the transport's own statements (child_raw
    put the repo on sys.path)."""
    import _raw_sqlite

    done = token = 0
    while done < n:
        token += 1
        conn.execute("BEGIN IMMEDIATE")
        now = time.time()
        ids = [row[0] for row in conn.execute(select, ("bench", now)).fetchall()]
        _raw_sqlite.lease(conn, "bench", token, ids, now, now + 30.0)
        conn.execute("COMMIT")
        conn.execute("BEGIN IMMEDIATE")  # the handlers would run here
        _raw_sqlite.ack(conn, token, ids)
        conn.execute("COMMIT")
        done += len(ids)


def child_raw(case: str, phase: str, db: str, n: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT))
    from asyncsup.transports._sqlite_store import SCHEMA, TABLE

    if case == "raw-sqlite3-bare":
        schema, (insert, select, delete), key = BARE_SCHEMA, BARE_SQL, ()
    else:  # the transport's own table and index, and the query its receive runs
        schema, key = SCHEMA, ("bench",)
        insert = f"INSERT INTO {TABLE} (queue, body, available_at, created_at) VALUES (?, ?, ?, 0)"
        select = (f"SELECT id, body FROM {TABLE} WHERE queue = ? AND available_at <= ?"
                  " AND lease_token IS NULL ORDER BY available_at, id LIMIT 500")  # fmt: skip
        delete = f"DELETE FROM {TABLE} WHERE id = ?"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    for statement in schema:
        conn.execute(statement)
    if phase == "enqueue":
        body = b'{"id":"0123456789abcdef01234567","type":"Ping","version":1,"body":{"n":1},"headers":{}}'
        t0 = time.perf_counter()
        for start in range(0, n, 500):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(insert, [(*key, body, 0.0)] * min(500, n - start))
            conn.execute("COMMIT")
        return {"enqueue_s": time.perf_counter() - t0}
    c0, t0 = cpu(), time.perf_counter()
    if case == "raw-sqlite3-lease":
        consume_with_lease(conn, select, n)
    else:
        consume_and_delete(conn, select, delete, key, n)
    return {"consume_s": time.perf_counter() - t0, "cpu_s": cpu() - c0, "rss_mb": rss_mb()}


def child_main(case: str, phase: str, db: str, n: int) -> None:
    if case.startswith("asyncsup"):
        out = child_asyncsup(case, phase, db, n)
    elif case == "huey-sqlite":
        out = child_huey(phase, db, n)
    else:
        out = child_raw(case, phase, db, n)
    print(json.dumps(out))


# --- the orchestrator ----------------------------------------------------------------------------


def ensure_huey() -> Path:
    python = HUEY_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(HUEY_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "huey"], check=True)
    return python


def run_child(python: str, case: str, phase: str, db: str, n: int) -> dict[str, float]:
    argv = [python, str(Path(__file__)), "--child", case, "--phase", phase, "--db", db, "--messages", str(n)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{case} {phase} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def one_round(n: int, huey_python: str | None) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for case in CASES:
        python = huey_python if case == "huey-sqlite" else sys.executable
        if python is None:
            continue
        with tempfile.TemporaryDirectory(prefix="asyncsup-bench-") as tmp:
            db = str(Path(tmp) / "queue.db")
            out: dict[str, float] = {}
            if case != "asyncsup-memory":
                out.update(run_child(python, case, "enqueue", db, n))
            out.update(run_child(python, case, "consume", db, n))
        out["enqueue_rate"] = n / out["enqueue_s"]
        out["consume_rate"] = n / out["consume_s"]
        out["cpu_us_per_msg"] = out["cpu_s"] / n * 1e6
        results[case] = out
        print(f"  {case:24} enqueue {out['enqueue_rate']:>9,.0f}/s  "
              f"consume {out['consume_rate']:>9,.0f}/s  CPU {out['cpu_us_per_msg']:6.1f} µs/msg  "
              f"RSS {out['rss_mb']:5.1f} MB", flush=True)  # fmt: skip
    return results


def median_of(rounds: list[dict[str, dict[str, float]]], case: str, key: str) -> float | None:
    values = [r[case][key] for r in rounds if case in r]
    return statistics.median(values) if values else None


def ratio_of(rounds: list[dict[str, dict[str, float]]], a: str, b: str) -> float | None:
    values = [r[a]["consume_rate"] / r[b]["consume_rate"] for r in rounds if a in r and b in r]
    return statistics.median(values) if values else None


def report(rounds: list[dict[str, dict[str, float]]], n: int) -> str:
    lines = [
        f"Consumer benchmark: {n:,} messages, no-op handler, one process, median of {len(rounds)} rounds.",
        "",
        "| case | enqueue msg/s | consume msg/s | CPU µs/msg | RSS MB | vs huey | vs raw sqlite3 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for case in CASES:
        if median_of(rounds, case, "consume_rate") is None:
            continue
        vs_huey = ratio_of(rounds, case, "huey-sqlite")
        vs_raw = ratio_of(rounds, case, "raw-sqlite3")
        cells = [f"{median_of(rounds, case, key) or 0:{fmt}}" for key, fmt in _COLUMNS]
        lines.append(f"| {case} | {' | '.join(cells)} | {_x(vs_huey)} | {_x(vs_raw)} |")
    lines += ["", "Goals:"]
    memory = median_of(rounds, "asyncsup-memory", "consume_rate") or 0.0
    vs_huey = ratio_of(rounds, "asyncsup-sqlite", "huey-sqlite")
    raw_over = ratio_of(rounds, "raw-sqlite3", "asyncsup-sqlite")
    met = "met" if memory >= 100_000 else "NOT met"
    lines.append(f"- memory:// >= 100,000 msg/s: {memory:,.0f} -> {met}")
    if vs_huey is not None:
        lines.append(f"- sqlite >= 20x huey: {vs_huey:.1f}x -> {'met' if vs_huey >= 20 else 'NOT met'}")
    if raw_over is not None:
        lines.append(f"- sqlite within 3x of raw sqlite3: raw is {raw_over:.2f}x -> "
                     f"{'met' if raw_over <= 3 else 'NOT met'}")  # fmt: skip
    return "\n".join(lines)


_COLUMNS = (("enqueue_rate", ",.0f"), ("consume_rate", ",.0f"), ("cpu_us_per_msg", ".1f"), ("rss_mb", ".1f"))


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-huey", action="store_true", help="skip huey (no venv install)")
    parser.add_argument("--out", type=Path, help="also write the report and raw numbers here")
    parser.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("enqueue", "consume"), help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child, args.phase, args.db, args.messages)
        return 0
    huey_python = None if args.no_huey else str(ensure_huey())
    rounds = []
    for i in range(args.rounds):
        print(f"round {i + 1}/{args.rounds}", flush=True)
        rounds.append(one_round(args.messages, huey_python))
    text = report(rounds, args.messages)
    print("\n" + text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "consumer.md").write_text(text + "\n")
        (args.out / "consumer.json").write_text(json.dumps(rounds, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
