"""The SQLite queue's SQL, run synchronously on the one thread that owns the connection.

What a commit survives (journal_mode=WAL always):

- ``synchronous=NORMAL`` (the default): a transaction is written to the WAL file before COMMIT
  returns, so it survives the *process* dying at any moment (kill -9, OOM killer, a crash). A power
  loss or a kernel crash can lose the transactions committed since the last checkpoint (SQLite syncs
  the WAL only at checkpoints), but never corrupts the file.
- ``synchronous=FULL`` (``?synchronous=full``): the WAL is fsynced at every commit, so a commit
  also survives a power loss, at the price of one fsync per transaction (every call is a batch).

"Acked" means the DELETE committed; "received" means the lease UPDATE committed. So a message is
always either ready, leased in the file (and back when the lease runs out), or gone because acked.

The schema is one table for every queue of a file. Leasing moves ``available_at`` to the lease's end,
so an expired lease brings its message back through the very index that finds ready messages:
ready means ``available_at <= now`` whatever the row's history, and a receive is one index range
scan, O(log n) with a million messages queued. ``lease_token`` tells an in-flight message (token,
time in the future) from a delayed one (no token), and makes settling match only the current lease.
Times are unix time (``time.time()``), the one clock every process on the machine shares; a step of
the system clock moves due times and lease ends with it.
"""

from __future__ import annotations

import random
import secrets
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from itertools import accumulate, repeat
from pathlib import Path

from asyncsup.errors import TransportError
from asyncsup.transports.base import Delivery, QueueCounts, lease_receipt

TABLE = "asyncsup_messages"

SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS {TABLE} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a receipt names one message
        queue TEXT NOT NULL,
        body BLOB NOT NULL,
        available_at REAL NOT NULL,  -- unix time it is receivable from; the lease end while leased
        lease_token INTEGER,         -- the current (maybe expired) lease; NULL when not leased
        deliveries INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL
    )""",
    # The rowid is implicitly the last column, so "ORDER BY available_at, id" needs no sort.
    f"CREATE INDEX IF NOT EXISTS {TABLE}_due ON {TABLE} (queue, available_at)",
)

# A claim is a SELECT of the oldest ready rows then an UPDATE of the same rows, in one BEGIN
# IMMEDIATE transaction (nobody else can write in between, so both see the same rows). Not UPDATE ...
# RETURNING: it needs SQLite 3.35, returns rows in no defined order, and measured no faster here.
INSERT = f"INSERT INTO {TABLE} (queue, body, available_at, created_at) VALUES (?, ?, ?, ?)"
FIRST_DUE = f"SELECT available_at FROM {TABLE} WHERE queue = ? ORDER BY available_at LIMIT 1"
READY = (
    f"SELECT id, body, deliveries FROM {TABLE}"
    " WHERE queue = ? AND available_at <= ? ORDER BY available_at, id LIMIT ?"
)
# The claim's SELECT packs the whole batch into one row (receipts, delivery counts and body sizes as
# comma-separated text, the bodies end to end in one blob), and its UPDATE finds the rows by the same
# query: each statement is one step of SQLite with the GIL released. Row by row, the thread needs the
# GIL back after every row, and waits for it as long as the event loop is busy with a batch: with
# the whole batch in one step, the claim runs while the loop works (see consumer/worker.py).
# group_concat keeps the order of the subquery's rows. A batch too big for one value (SQLite's length
# limit, 1 GB by default) is read row by row instead.
READY_PACKED = (
    "SELECT group_concat(id || ?), group_concat(deliveries + 1), group_concat(length(CAST(body AS BLOB))),"
    f" CAST(group_concat(body, '') AS BLOB) FROM ({READY})"
)
LEASE_READY = (
    f"UPDATE {TABLE} SET available_at = ?, lease_token = ?, deliveries = deliveries + 1"
    f" WHERE id IN (SELECT id FROM {TABLE} WHERE queue = ? AND available_at <= ?"
    " ORDER BY available_at, id LIMIT ?)"
)
# Batches name their rows in one IN list (a statement per batch, not per row: twice as fast as
# executemany); a list holds at most CHUNK ids, well under SQLite's limit on parameters.
CHUNK = 500
# (Claims lease with LEASE_READY; the raw loops of benchmarks/ lease a batch by ids with this.)
LEASE = f"UPDATE {TABLE} SET available_at = ?, lease_token = ?, deliveries = deliveries + 1 WHERE id IN "
ACK = f"DELETE FROM {TABLE} WHERE lease_token = ? AND id IN "
# When a lease's acked ids are every id from the first to the last (the usual case: a batch handled
# in order), one range says the same: a primary key range scan, no list to bind or look up.
ACK_RANGE = f"DELETE FROM {TABLE} WHERE lease_token = ? AND id BETWEEN ? AND ?"
REQUEUE = (
    f"UPDATE {TABLE} SET body = ?, available_at = ?, lease_token = NULL"
    " WHERE id = ? AND lease_token = ?"
)
# Back where it was (its publish time) and the delivery uncounted, as if never received.
RELEASE = (
    f"UPDATE {TABLE} SET available_at = MIN(created_at, ?), lease_token = NULL,"
    " deliveries = deliveries - 1 WHERE id = ? AND lease_token = ?"
)
EXTEND = f"UPDATE {TABLE} SET available_at = ? WHERE id = ? AND lease_token = ?"
COUNT_READY = f"SELECT COUNT(*) FROM {TABLE} WHERE queue = ? AND available_at <= ?"
COUNT_LATER = (
    f"SELECT lease_token IS NOT NULL, COUNT(*) FROM {TABLE}"
    " WHERE queue = ? AND available_at > ? GROUP BY 1"
)
BROWSE = f"SELECT id, body, deliveries FROM {TABLE} WHERE queue = ? ORDER BY id LIMIT ? OFFSET ?"
# "+queue": walk the primary key from the last id seen; on the queue's index SQLite would sort all of
# the queue's rows for every page.
BROWSE_AFTER = f"SELECT id, body, deliveries FROM {TABLE} WHERE +queue = ? AND id > ? ORDER BY id LIMIT ?"
REMOVE = f"DELETE FROM {TABLE} WHERE id = ? AND queue = ?"

Packed = tuple[str, str, str, bytes]  # receipts, delivery counts, body sizes (comma-separated), bodies


class Batch:
    """What a claim took, handed from the connection's thread to the loop as SQLite packed it.

    ``deliveries()`` unpacks it on the loop: on the thread, the Python that makes a Delivery per
    message would wait for the GIL at every switch interval while the loop handles the batch before
    (and make the loop wait in turn); on the loop it runs in one go. Measured: 8-10 % faster.
    A batch too big to pack comes as deliveries already.
    """

    __slots__ = ("_packed", "_queue", "_unpacked", "size")

    def __init__(self, queue: str, packed: Packed | None = None, unpacked: Sequence[Delivery] = ()):
        self._queue = queue
        self._packed = packed
        self._unpacked = unpacked
        self.size = len(unpacked) if packed is None else packed[0].count(",") + 1

    def __repr__(self) -> str:
        return f"<Batch of {self.size} from {self._queue!r}>"

    def deliveries(self) -> list[Delivery]:
        if self._packed is None:
            return list(self._unpacked)
        receipts, counts, sizes, data = self._packed
        ends = list(accumulate(map(int, sizes.split(","))))
        bodies = map(data.__getitem__, map(slice, [0, *ends[:-1]], ends))
        count = map(int, counts.split(","))
        return list(map(Delivery, receipts.split(","), bodies, count, repeat(self._queue)))


Claimed = tuple[Batch, float | None]


class Store:
    """One connection to one database file. Every method runs on the connection's own thread."""

    def __init__(self, path: str, *, synchronous: str, busy_timeout: float) -> None:
        self.path = path
        self.synchronous = synchronous
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            if self._closed:
                raise TransportError(f"the SQLite connection to {self.path} is closed")
            self._conn = self._connect()
        return self._conn

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the write
        # lock up front and waits busy_timeout for it, instead of failing on a lock upgrade.
        if self.path != ":memory:":  # a fresh deployment has no var/ yet: make the folder
            with suppress(OSError):  # if we may not, sqlite3 says so below, mapped to TransportError
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
        try:
            self._switch_to_wal(conn)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            with _write(conn):
                for statement in SCHEMA:
                    conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def _switch_to_wal(self, conn: sqlite3.Connection) -> None:
        """WAL mode is stored in the file; the first connection to a new file switches it.

        Connections racing to switch a new file fail with "database is locked" at once: SQLite
        does not call the busy handler there. So retry, briefly and with jitter, up to the busy
        timeout. This runs once per connection, on its own thread, never on the event loop.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.001, 0.02))
        if str(mode).lower() != "wal":
            raise TransportError(f"{self.path}: cannot use WAL journaling (got {mode!r})")

    def publish(self, queue: str, bodies: Sequence[bytes], delay: float) -> list[int]:
        if not bodies:
            return []
        conn = self._connection()
        with _write(conn):
            now = time.time()
            at = now + max(delay, 0.0)
            conn.executemany(INSERT, [(queue, body, at, now) for body in bodies])
            # We hold the write lock and ids are AUTOINCREMENT: ours are consecutive.
            last = conn.execute("SELECT last_insert_rowid()").fetchall()[0][0]
        return list(range(last - len(bodies) + 1, last + 1))

    def claim(self, queue: str, max_count: int, lease: float) -> Claimed:
        """Lease up to max_count ready messages, oldest first; else ([], when the next is due)."""
        conn = self._connection()
        # A plain read first: an idle queue costs no write lock, which other processes would feel.
        first = conn.execute(FIRST_DUE, (queue,)).fetchall()
        if not first or first[0][0] > time.time():
            return Batch(queue), (first[0][0] if first else None)
        token = secrets.randbits(63)
        suffix = lease_receipt(0, token)[1:]  # ":<token>", formatted once per batch
        with _write(conn):
            now = time.time()
            got = _ready(conn, queue, now, max_count, suffix)
            leased = conn.execute(LEASE_READY, (now + lease, token, queue, now, max_count)).rowcount
            if leased != got.size:  # cannot happen while we hold the write lock; never hand out
                raise TransportError(f"claimed {got.size} messages but leased {leased}")  # unleased
        return got, None

    def ack(self, by_token: Mapping[int, list[int]]) -> None:
        """Delete leased messages: ids by the token of the lease they must still hold."""
        if not by_token:
            return
        conn = self._connection()
        with _write(conn):
            for token, all_ids in by_token.items():
                ids = sorted(set(all_ids))
                if ids and ids[-1] - ids[0] + 1 == len(ids):  # no id of the range missing
                    conn.execute(ACK_RANGE, (token, ids[0], ids[-1]))
                    continue
                for chunk in _chunks(ids):
                    conn.execute(ACK + _marks(len(chunk)), (token, *chunk))

    def requeue(self, message_id: int, token: int, body: bytes, delay: float) -> None:
        at = time.time() + max(delay, 0.0)
        self._write_many(REQUEUE, [(body, at, message_id, token)])

    def release(self, pairs: Sequence[tuple[int, int]]) -> None:
        now = time.time()
        self._write_many(RELEASE, [(now, i, token) for i, token in pairs])

    def extend(self, pairs: Sequence[tuple[int, int]], lease: float) -> None:
        until = time.time() + lease
        self._write_many(EXTEND, [(until, i, token) for i, token in pairs])

    def remove(self, queue: str, ids: Sequence[int]) -> int:
        return self._write_many(REMOVE, [(i, queue) for i in ids])

    def _write_many(self, sql: str, params: Sequence[tuple[object, ...]]) -> int:
        """One statement over a batch, in one transaction; how many rows it changed."""
        if not params:
            return 0
        conn = self._connection()
        with _write(conn):
            return conn.executemany(sql, params).rowcount

    def counts(self, queue: str) -> QueueCounts:
        conn = self._connection()
        with _read(conn):
            now = time.time()
            ready = conn.execute(COUNT_READY, (queue, now)).fetchall()[0][0]
            later = dict(conn.execute(COUNT_LATER, (queue, now)).fetchall())
        return QueueCounts(ready=ready, in_flight=later.get(1, 0), delayed=later.get(0, 0))

    def browse(self, queue: str, limit: int, offset: int, after: int | None) -> list[Delivery]:
        if after is None:
            rows = self._connection().execute(BROWSE, (queue, limit, offset)).fetchall()
        else:  # the primary key's order: a range seek, whatever the depth
            rows = self._connection().execute(BROWSE_AFTER, (queue, after, limit)).fetchall()
        return [Delivery(str(i), body, n, queue) for i, body, n in rows]

    def close(self) -> None:
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


def _ready(conn: sqlite3.Connection, queue: str, now: float, limit: int, suffix: str) -> Batch:
    """The oldest ready messages, read in one step (READY_PACKED), leased with receipts ending in
    `suffix`; read row by row when the batch is too big for one value."""
    try:
        row = conn.execute(READY_PACKED, (suffix, queue, now, limit)).fetchone()
    except sqlite3.DataError:  # "string or blob too big"
        rows = conn.execute(READY, (queue, now, limit)).fetchall()
        return Batch(queue, unpacked=[Delivery(f"{i}{suffix}", body, n + 1, queue) for i, body, n in rows])
    return Batch(queue) if row[0] is None else Batch(queue, packed=row)


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def _marks(count: int) -> str:
    return "(" + ",".join("?" * count) + ")"


@contextmanager
def _write(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction that holds the write lock from its start (waits busy_timeout for it)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def _read(conn: sqlite3.Connection) -> Iterator[None]:
    """A read transaction: several SELECTs see one snapshot."""
    conn.execute("BEGIN")
    try:
        yield
    finally:
        conn.execute("COMMIT")
