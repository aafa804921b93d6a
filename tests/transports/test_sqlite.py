"""What only the SQLite transport promises: several OS processes on one file, kill -9 safety, the
index that keeps receive cheap, its thread, and driver errors mapped to TransportError."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from asyncsup.errors import TransportError
from asyncsup.transports._sqlite_checkpoint import CHECKPOINT_FRAMES, Checkpointer
from asyncsup.transports._sqlite_store import (
    COUNT_DELAYED,
    COUNT_READY,
    ENDED_LEASES,
    FIRST_DUE,
    FIRST_LEASE_END,
    FORMAT,
    LEASE_RANGE,
    LEASE_READY,
    LEASES,
    NEXT_TIMES,
    READY,
    READY_COUNTS,
    READY_PACKED,
    SCHEMA,
    TABLE,
    Store,
)
from asyncsup.transports.base import Delivery, QueueCounts, Transport, open_transport
from asyncsup.transports.sqlite import SqliteTransport

pytestmark = pytest.mark.anyio

CHILD = str(Path(__file__).with_name("sqlite_child.py"))
BOUND = 60.0  # generous: two Python processes start on two shared cores


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the contract suite covers uvloop; these tests are about processes


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'queue.db'}?queue=jobs"


async def read_lines(process: Process, count: int) -> list[str]:
    assert process.stdout is not None
    buffer = b""
    while buffer.count(b"\n") < count:
        buffer += await process.stdout.receive()
    return buffer.decode().splitlines()


async def receive_at_least(transport: Transport, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    while len(got) < count:
        got += await transport.receive(count, lease=BOUND, wait=BOUND)
    return got


async def test_two_processes_consume_one_file_exactly_once(url: str) -> None:
    """Given two consumer processes on a file that does not exist yet, when this process publishes
    3,000 messages while they consume, then each message is handled once, with no error at all
    (no "database is locked": writers wait for each other)."""
    sent = [str(i) for i in range(3000)]
    results: list[subprocess.CompletedProcess[bytes]] = []
    argv = [sys.executable, CHILD, "consume", url, "50", "30"]

    async def consumer() -> None:
        results.append(await anyio.run_process(argv, check=False))

    producer = open_transport(url)
    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:
            tg.start_soon(consumer)
            tg.start_soon(consumer)
            for start in range(0, len(sent), 100):
                await producer.publish([m.encode() for m in sent[start : start + 100]])
            await producer.publish([b"stop", b"stop"])

    assert [(r.returncode, r.stderr.decode()) for r in results] == [(0, ""), (0, "")]
    handled = [m for r in results for m in r.stdout.decode().split()]
    assert sorted(handled, key=int) == sent
    assert await producer.counts() == QueueCounts(ready=0, in_flight=0, delayed=0)
    await producer.close()


async def test_a_killed_consumer_s_leased_messages_come_back(url: str) -> None:
    """Given a consumer that received 5 messages and acked 2, when it is killed with SIGKILL,
    then the 3 it held come back after their lease (delivery #2) and the 2 acked never do."""
    transport = open_transport(url)
    await transport.publish([str(i).encode() for i in range(10)])

    with anyio.fail_after(BOUND):
        async with await anyio.open_process([sys.executable, CHILD, "hold", url, "5", "2"]) as child:
            acked_line, holding_line = await read_lines(child, 2)
            child.kill()
            await child.wait()
        got = await receive_at_least(transport, 8)

    acked, holding = acked_line.split()[1:], holding_line.split()[1:]
    deliveries = {d.data.decode(): d.deliveries for d in got}
    assert (len(acked), len(holding)) == (2, 3)
    assert sorted(deliveries, key=int) == sorted(set(map(str, range(10))) - set(acked), key=int)
    assert {deliveries[m] for m in holding} == {2}
    assert {n for m, n in deliveries.items() if m not in holding} == {1}
    await transport.close()


async def test_a_kill_at_any_moment_loses_no_ack_and_no_message(url: str) -> None:
    """Given a consumer acking batches of 20 from 5,000 messages, when it is killed with SIGKILL
    mid-stream, then nothing it reported acked comes back, everything else does (its last batch
    after the lease), and at most the one batch acked but not yet reported is neither."""
    sent = {str(i) for i in range(5000)}
    transport = open_transport(url)
    await transport.publish(sorted(m.encode() for m in sent))

    with anyio.fail_after(BOUND):
        async with await anyio.open_process([sys.executable, CHILD, "consume", url, "20", "0.5"]) as child:
            reported = await read_lines(child, 3)
            child.kill()
            await child.wait()
            assert child.stdout is not None
            reported += (await read_rest(child)).splitlines()
        counts = await transport.counts()
        total = counts.ready + counts.in_flight
        rest = {d.data.decode() for d in await receive_at_least(transport, total)}

    acked = {m for line in reported for m in line.split()}
    assert rest, "the consumer finished before the kill: the test proves nothing"
    assert not acked & rest
    assert len(sent - acked - rest) <= 20
    await transport.close()


async def read_rest(process: Process) -> str:
    assert process.stdout is not None
    chunks = [chunk async for chunk in process.stdout]
    return b"".join(chunks).decode()


def test_receive_and_counts_use_the_index_without_sorting(tmp_path: Path) -> None:
    """Receive stays O(log n) with a million queued: an index range scan, never a sort or scan."""
    conn = sqlite3.connect(tmp_path / "plan.db")
    for statement in SCHEMA:
        conn.execute(statement)
    claim = ((READY_PACKED, ("q", 0.0, 10)), (READY_COUNTS, ("q", 0.0, 10)), (LEASE_READY, (1, "q", 0.0, 10)))
    by_range = conn.execute("EXPLAIN QUERY PLAN " + LEASE_RANGE, (1, 1, 9, "q", 0.0)).fetchall()
    assert [row[3] for row in by_range] == [f"SEARCH {TABLE} USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"]
    counts = ((COUNT_READY, ("q", 0.0)), (COUNT_DELAYED, ("q", 0.0)))
    reads = ((READY, ("q", 0.0, 10)), (FIRST_DUE, ("q",)), *counts)
    for sql, params in (*reads, *claim):
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert f"INDEX {TABLE}_ready (queue=?" in plan, plan
        # The packed read walks its subquery's rows as they come (a co-routine), in index order.
        plan = plan.replace("SCAN (subquery-1)", "")
        assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan
    for sql, params in ((FIRST_LEASE_END, ("q",)), (ENDED_LEASES, ("q", 0.0))):
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
        assert f"INDEX {LEASES}_until (queue=?" in plan, plan
    plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + NEXT_TIMES, ("q", "q")))
    assert f"INDEX {TABLE}_ready (queue=?" in plan and f"INDEX {LEASES}_until (queue=?" in plan, plan
    plan = plan.replace("SCAN CONSTANT ROW", "")  # the outer SELECT of the two subqueries
    assert "TEMP B-TREE" not in plan and "SCAN" not in plan, plan
    conn.close()


def test_a_lease_that_ends_gives_back_only_its_unsettled_messages(tmp_path: Path) -> None:
    """Two of five acked, one requeued with a delay; the lease ends (its consumer died): the next
    claim hands out the other two again, counted as second deliveries, and the lease row is gone."""
    store = Store(str(tmp_path / "q.db"), synchronous="NORMAL", busy_timeout=BOUND)
    ids = store.publish("q", [b"a", b"b", b"c", b"d", b"e"], 0.0)
    got = store.claim("q", 5, lease=0.2)[0].deliveries()
    token = int(got[0].receipt.partition(":")[2], 16)
    store.ack({token: [ids[0], ids[3]]})
    store.requeue(ids[4], token, b"e2", delay=BOUND)
    assert store.counts("q") == QueueCounts(ready=0, in_flight=2, delayed=1)

    time.sleep(0.3)
    assert store.counts("q") == QueueCounts(ready=2, in_flight=0, delayed=1)
    again = store.claim("q", 5, lease=BOUND)[0].deliveries()

    assert [(d.data, d.deliveries) for d in again] == [(b"b", 2), (b"c", 2)]
    assert store.counts("q") == QueueCounts(ready=0, in_flight=2, delayed=1)
    conn = sqlite3.connect(tmp_path / "q.db")
    assert conn.execute(f"SELECT COUNT(*) FROM {LEASES} WHERE token = ?", (token,)).fetchall() == [(0,)]
    conn.close()
    store.ack({token: [ids[1], ids[2]]})  # the dead consumer's late ack: its lease is gone
    assert store.counts("q").in_flight == 2
    store.close()


def test_settling_a_whole_lease_drops_it_and_remove_counts_off(tmp_path: Path) -> None:
    """Acks, a release and an admin remove each count their messages off the lease; the lease row
    goes with the last one, so in-flight counts stay exact and no row is left behind."""
    store = Store(str(tmp_path / "q.db"), synchronous="NORMAL", busy_timeout=BOUND)
    ids = store.publish("q", [b"a", b"b", b"c", b"d"], 0.0)
    token = int(store.claim("q", 4, lease=BOUND)[0].deliveries()[0].receipt.partition(":")[2], 16)
    store.ack({token: ids[:2]})
    assert store.remove("q", [ids[2]]) == 1
    assert store.counts("q") == QueueCounts(ready=0, in_flight=1, delayed=0)
    store.release([(ids[3], token)])
    assert store.counts("q") == QueueCounts(ready=1, in_flight=0, delayed=0)
    conn = sqlite3.connect(tmp_path / "q.db")
    assert conn.execute(f"SELECT COUNT(*) FROM {LEASES}").fetchall() == [(0,)]
    conn.close()
    [back] = store.claim("q", 4, lease=BOUND)[0].deliveries()
    assert (back.data, back.deliveries) == (b"d", 1)  # a release does not count the delivery
    store.close()


SCHEMA_1 = (
    """CREATE TABLE asyncsup_messages (id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL,
    body BLOB NOT NULL, available_at REAL NOT NULL, lease_token INTEGER,
    deliveries INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL)""",
    "CREATE INDEX asyncsup_messages_due ON asyncsup_messages (queue, available_at)",
)


def test_a_schema_1_file_is_moved_on_open_and_nothing_is_lost(tmp_path: Path) -> None:
    """A file written by an earlier asyncsup: ready, delayed and leased messages (one lease live,
    one ended), two queues. Opened now, every message is there in its order; leased ones are ready
    again (their consumer's receipts are void), the delayed one stays delayed, the old table goes."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in SCHEMA_1:
        conn.execute(statement)
    now = time.time()
    rows = [  # queue, body, available_at, lease_token, deliveries, created_at
        ("q", b"ready", now - 50, None, 0, now - 50),
        ("q", b"leased", now + 30, 7, 1, now - 40),
        ("q", b"lease ended", now - 5, 8, 2, now - 30),
        ("q", b"delayed", now + 3600, None, 1, now - 20),
        ("other", b"elsewhere", now - 10, None, 0, now - 10),
    ]
    conn.executemany(
        "INSERT INTO asyncsup_messages (queue, body, available_at, lease_token, deliveries, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.close()

    store = Store(str(path), synchronous="NORMAL", busy_timeout=BOUND)
    assert store.counts("q") == QueueCounts(ready=3, in_flight=0, delayed=1)
    got = store.claim("q", 10, lease=BOUND)[0].deliveries()
    assert [(d.data, d.deliveries) for d in got] == [(b"ready", 1), (b"leased", 2), (b"lease ended", 3)]
    assert [d.data for d in store.claim("other", 10, lease=BOUND)[0].deliveries()] == [b"elsewhere"]
    tables = store._connection().execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    assert ("asyncsup_messages",) not in tables
    store.close()


def test_deliveries_count_what_did_not_end_in_an_ack_or_a_release(tmp_path: Path) -> None:
    """A lease writes no count; a receipt still says which delivery it is: a requeue (retry) and an
    ended lease count theirs, a release does not, and browsing a leased message counts the current
    one, as its receipt does."""
    store = Store(str(tmp_path / "q.db"), synchronous="NORMAL", busy_timeout=BOUND)
    [retried, _, released] = store.publish("q", [b"retried", b"died", b"released"], 0.0)
    got = store.claim("q", 3, lease=0.2)[0].deliveries()
    token = int(got[0].receipt.partition(":")[2], 16)
    assert [d.deliveries for d in got] == [1, 1, 1]
    assert [d.deliveries for d in store.browse("q", 10, 0, None)] == [1, 1, 1]
    store.requeue(retried, token, b"retried", delay=0.0)
    store.release([(released, token)])
    assert [d.deliveries for d in store.browse("q", 10, 0, None)] == [1, 1, 0]
    time.sleep(0.3)  # the lease ends with "died" unsettled
    again = store.claim("q", 3, lease=BOUND)[0].deliveries()
    assert sorted((d.data, d.deliveries) for d in again) == [(b"died", 2), (b"released", 1), (b"retried", 2)]
    store.close()


def test_a_format_2_file_has_the_current_delivery_taken_off_its_leased_messages(tmp_path: Path) -> None:
    """Files written before this format counted a delivery when leasing: opened now, a leased
    message's count loses that one (its lease counts it when it ends), others keep theirs. So a
    receipt says what it said before: an ended lease's message is at its third delivery."""
    path = tmp_path / "q.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in SCHEMA:
        conn.execute(statement)
    now = time.time()
    conn.executemany(
        f"INSERT INTO {TABLE} (queue, body, available_at, lease_token, deliveries, created_at)"
        " VALUES ('q', ?, ?, ?, ?, ?)",
        [(b"ready", now - 9, None, 1, now - 9), (b"leased", now - 8, 7, 2, now - 8)],
    )
    conn.execute(f"INSERT INTO {LEASES} VALUES (7, 'q', ?, ?, 1)", (now - 1, "2"))
    conn.close()

    store = Store(str(path), synchronous="NORMAL", busy_timeout=BOUND)
    got = store.claim("q", 10, lease=BOUND)[0].deliveries()
    assert sorted((d.data, d.deliveries) for d in got) == [(b"leased", 3), (b"ready", 2)]
    assert store._connection().execute("PRAGMA user_version").fetchall() == [(FORMAT,)]
    store.close()
    again = Store(str(path), synchronous="NORMAL", busy_timeout=BOUND)  # converted once, not twice
    assert [d.deliveries for d in again.browse("q", 10, 0, None)] == [2, 3]
    again.close()


def test_checkpoints_run_on_their_own_thread_once_the_wal_has_grown(tmp_path: Path) -> None:
    """The store's connection never checkpoints (wal_autocheckpoint off); its Checkpointer does,
    on another thread, once CHECKPOINT_FRAMES wait: the WAL's backlog stays bounded as SQLite's
    own would, and every message is still there."""
    path = str(tmp_path / "q.db")
    store = Store(path, synchronous="NORMAL", busy_timeout=BOUND)
    body = b"x" * 1000  # 4 a page: 1,000 frames in about 4,000 messages
    for _ in range(12):
        store.publish("q", [body] * 1000, 0.0)
    conn = store._connection()
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchall() == [(0,)]
    checkpointer = store._checkpointer
    deadline = time.monotonic() + BOUND
    while checkpointer.checkpoints < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checkpointer.checkpoints >= 2, checkpointer
    threads = {t.name.rsplit("_", 1)[0] for t in threading.enumerate()}
    assert "asyncsup-sqlite-checkpoint" in threads
    if checkpointer._running is not None:
        checkpointer._running.result(timeout=BOUND)  # the last one done: the backlog is what came since
    waiting = checkpointer.waiting()
    assert waiting is not None and waiting < CHECKPOINT_FRAMES
    assert store.counts("q") == QueueCounts(ready=12_000, in_flight=0, delayed=0)
    store.close()
    assert "asyncsup-sqlite-checkpoint" not in {t.name.rsplit("_", 1)[0] for t in threading.enumerate()}


def test_without_a_readable_wal_index_sqlite_checkpoints_by_itself(tmp_path: Path) -> None:
    """No -shm file, or one in a layout we do not know: the Checkpointer stays off, so the store
    keeps SQLite's own autocheckpoint."""
    assert not Checkpointer(str(tmp_path / "none.db"), 1.0).start()
    (tmp_path / "odd.db-shm").write_bytes(b"\x01" * 136)
    assert not Checkpointer(str(tmp_path / "odd.db"), 1.0).start()


BODIES = [b"", bytes(range(256)), b"\x00\xff\x00", "é,:'".encode(), b"x" * 10_000, b"last"]


def test_a_claim_hands_out_any_bytes_oldest_due_first(tmp_path: Path) -> None:
    """The claim reads a batch in one packed row: every body comes back exact, and in the order
    of (due time, id), also when an older message is due later than newer ones (a retry)."""
    store = Store(str(tmp_path / "q.db"), synchronous="NORMAL", busy_timeout=BOUND)
    ids = store.publish("q", BODIES, 0.0)
    due = dict(zip(ids, [5, 2, 3, 1, 4, 6], strict=True))  # the order we want them back in
    other = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    other.executemany(f"UPDATE {TABLE} SET available_at = ? WHERE id = ?", [(t, i) for i, t in due.items()])
    other.close()

    first = store.claim("q", 5, lease=BOUND)[0].deliveries()
    rest = store.claim("q", 5, lease=BOUND)[0].deliveries()

    expected = [body for _, body in sorted(zip(due.values(), BODIES, strict=True))]
    assert [d.data for d in first] == expected[:5] and [d.data for d in rest] == expected[5:]
    assert [d.deliveries for d in first + rest] == [1] * 6
    assert store.counts("q") == QueueCounts(ready=0, in_flight=6, delayed=0)
    store.close()


def test_a_lease_marks_exactly_the_claimed_rows_when_their_ids_have_gaps(tmp_path: Path) -> None:
    """A batch whose ids are every id from lowest to highest is leased by that range; one with a
    gap (another queue's message, a delayed one) by the claim's query: either way exactly what the
    claim hands out, and the message in the gap stays where it was."""
    store = Store(str(tmp_path / "q.db"), synchronous="NORMAL", busy_timeout=BOUND)
    store.publish("q", [b"a", b"b"], 0.0)
    store.publish("other", [b"x"], 0.0)
    store.publish("q", [b"c"], BOUND)  # delayed
    store.publish("q", [b"d", b"e"], 0.0)
    gapped = store.claim("q", 10, lease=BOUND)[0].deliveries()
    assert [d.data for d in gapped] == [b"a", b"b", b"d", b"e"]
    assert store.counts("q") == QueueCounts(ready=0, in_flight=4, delayed=1)
    assert store.counts("other") == QueueCounts(ready=1, in_flight=0, delayed=0)
    store.publish("q", [b"f", b"g", b"h"], 0.0)
    ranged = store.claim("q", 10, lease=BOUND)[0].deliveries()
    assert [d.data for d in ranged] == [b"f", b"g", b"h"]
    assert store.counts("q") == QueueCounts(ready=0, in_flight=7, delayed=1)
    assert [d.data for d in store.claim("other", 10, lease=BOUND)[0].deliveries()] == [b"x"]
    # The oldest due first: a batch of two can skip the id between them, which must stay ready.
    ids = store.publish("q", [b"i", b"j", b"k"], 0.0)
    other = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    due = zip([1.0, 3.0, 2.0], ids, strict=True)
    other.executemany(f"UPDATE {TABLE} SET available_at = ? WHERE id = ?", due)
    other.close()
    assert [d.data for d in store.claim("q", 2, lease=BOUND)[0].deliveries()] == [b"i", b"k"]
    assert [d.data for d in store.claim("q", 2, lease=BOUND)[0].deliveries()] == [b"j"]
    store.close()


def test_an_ack_with_a_gap_leaves_the_missing_message_leased(tmp_path: Path) -> None:
    """Acks of a whole run of ids are one range; one missing in the middle (still being handled)
    must stay leased, also when the ack names others twice."""
    store = Store(str(tmp_path / "q.db"), synchronous="NORMAL", busy_timeout=BOUND)
    ids = store.publish("q", [b"a", b"b", b"c", b"d", b"e"], 0.0)
    got = store.claim("q", 5, lease=BOUND)[0].deliveries()
    token = int(got[0].receipt.partition(":")[2], 16)

    store.ack({token: [ids[4], ids[0], ids[1], ids[0], ids[3]]})  # not ids[2]
    assert store.counts("q") == QueueCounts(ready=0, in_flight=1, delayed=0)
    assert [d.data for d in store.browse("q", 10, 0, None)] == [b"c"]

    store.ack({token + 1: [ids[2]]})  # another lease's token: refused
    assert store.counts("q").in_flight == 1
    store.ack({token: [ids[1], ids[2]]})  # a whole range again, one of them gone already
    assert store.counts("q") == QueueCounts(ready=0, in_flight=0, delayed=0)
    store.close()


@pytest.mark.skipif(
    sys.version_info < (3, 11), reason="lowering the length limit needs sqlite3 setlimit (Python 3.11+)"
)
def test_a_batch_too_big_for_one_value_is_claimed_row_by_row(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "q.db"), synchronous="NORMAL", busy_timeout=BOUND)
    bodies = [bytes([i]) * 400 for i in range(5)]
    store.publish("q", bodies, 0.0)
    # 2,000 bytes of bodies in one value is over this connection's limit: the packed read fails.
    store._connection().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1000)

    got = store.claim("q", 10, lease=BOUND)[0].deliveries()

    assert [d.data for d in got] == bodies
    assert store.counts("q") == QueueCounts(ready=0, in_flight=5, delayed=0)
    store.close()


async def test_close_ends_the_connection_thread(tmp_path: Path) -> None:
    transport = open_transport(f"sqlite:///{tmp_path / 'q.db'}?queue=threadcheck")
    await transport.publish([b"m"])
    [thread] = [t for t in threading.enumerate() if t.name.startswith("asyncsup-sqlite-threadcheck")]

    await transport.close()

    thread.join(timeout=BOUND)  # blocks the loop for a moment: nothing else runs in this test
    assert not thread.is_alive()


async def test_a_missing_folder_is_created(tmp_path: Path) -> None:
    """`sqlite:///var/queue.db` must work on a fresh checkout, where var/ does not exist yet."""
    transport = open_transport(f"sqlite:///{tmp_path / 'var' / 'spool' / 'q.db'}")
    assert (await transport.counts()).ready == 0
    assert (tmp_path / "var" / "spool" / "q.db").exists()
    await transport.close()


async def test_a_folder_that_cannot_exist_is_a_transport_error_naming_the_url(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    url = f"sqlite:///{tmp_path / 'a-file' / 'q.db'}"
    transport = open_transport(url)

    with pytest.raises(TransportError, match="unable to open database file") as caught:
        await transport.counts()

    assert str(caught.value).startswith(url)
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    await transport.close()


async def test_a_file_that_is_not_a_database_is_a_transport_error(tmp_path: Path) -> None:
    (tmp_path / "q.db").write_bytes(b"this is not an SQLite file, just some text" * 100)
    transport = open_transport(f"sqlite:///{tmp_path / 'q.db'}")

    with pytest.raises(TransportError, match="not a database") as caught:
        await transport.publish([b"m"])

    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    await transport.close()


async def test_full_synchronous_mode_works_the_same(tmp_path: Path) -> None:
    transport = open_transport(f"sqlite:///{tmp_path / 'q.db'}?synchronous=FULL")
    assert isinstance(transport, SqliteTransport)
    await transport.publish([b"durable"])

    got = await transport.receive(1, lease=BOUND, wait=0)
    await transport.ack(got)

    assert [d.data for d in got] == [b"durable"]
    await transport.close()


async def test_connections_racing_to_create_a_file_all_succeed(tmp_path: Path) -> None:
    """SQLite fails at once, without waiting, when connections race to switch a new file to WAL;
    the transport must retry that instead of surfacing "database is locked"."""
    for attempt in range(60):
        url = f"sqlite:///{tmp_path / f'race{attempt}.db'}"
        transports = [open_transport(url) for _ in range(8)]
        async with anyio.create_task_group() as tg:
            for transport in transports:
                tg.start_soon(transport.publish, [b"m"])
        assert (await transports[0].counts()).ready == 8
        for transport in transports:
            await transport.close()
